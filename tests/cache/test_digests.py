"""Checksums computed while bytes arrive (bertconvert.cache.digests): right values for every
algorithm, whichever algorithms get threads and whether any thread can start at all."""
import hashlib
import os
import zlib

import pytest

from bertconvert.cache.digests import StreamHasher, hash_file, threaded_algorithms

ALGORITHMS = ["sha256", "crc32", "md5", "sha1"]


def test_checksum_implementations_match_the_catalogue_check_values():
    """Each algorithm's published check value for b"123456789" (CRC RevEng catalogue; the
    hash functions' own test vectors), independent of the libraries we call."""
    expected = {"crc32": "cbf43926", "crc32c": "e3069283", "crc64nvme": "ae8b14860a799888",
                "md5": "25f9e794323b453885f5181f1b624d0b",
                "sha1": "f7c3bc1d808e04732adf679965ccc34ca7ae3441",
                "sha256": "15e2b0d3c33891ebb0f1ef609ec419420c20e320ce94c65fbc8c3312448eb225"}
    hasher = StreamHasher(list(expected))
    hasher.update(b"1234")
    hasher.update(b"56789")
    assert hasher.hexdigests() == expected


def _hash_blocks(hasher, data):
    for block in data:
        hasher.update(block)
    return hasher.hexdigests()


def _reference(data):
    whole = b"".join(data)
    out = {name: hashlib.new(name, whole).hexdigest() for name in ("sha256", "md5", "sha1")}
    out["crc32"] = f"{zlib.crc32(whole):08x}"
    return out


#: Block sizes a download's blocks come in: single bytes, odd sizes, exactly a MiB, one
#: socket read's worth, a file-hashing chunk.
BLOCK_SIZES = [1, 3, 4095, 70_000, 1 << 20, (1 << 20) + 1, 8 << 20]


@pytest.mark.parametrize("workers", [0, 1, 2, 8])
@pytest.mark.parametrize("size", BLOCK_SIZES)
def test_digests_equal_hashlibs_whatever_the_block_size_and_workers(workers, size):
    whole = os.urandom(max(3 * size, 100_000) + 7)
    data = [whole[i:i + size] for i in range(0, len(whole), size)]
    hasher = StreamHasher(ALGORITHMS, workers=workers)
    # The costliest get the threads: md5, then sha256/sha1 (ties keep their order); crc32 last.
    assert set(hasher.threaded) == set(["md5", "sha256", "sha1", "crc32"][:workers])
    assert _hash_blocks(hasher, data) == _reference([whole])


def test_many_blocks_queued_behind_the_workers_are_all_hashed_in_order():
    """More MiB blocks than the workers' queues hold: the caller waits, none is lost or
    reordered."""
    data = [os.urandom(n) for n in (1, 70_000, 3) + (1 << 20,) * 24]
    assert _hash_blocks(StreamHasher(ALGORITHMS, workers=2), data) == _reference(data)


def test_the_costliest_algorithms_get_the_threads():
    assert threaded_algorithms(ALGORITHMS, 0) == ()
    assert threaded_algorithms(ALGORITHMS, 1) == ("md5",)
    assert threaded_algorithms(ALGORITHMS, 2) == ("md5", "sha256")
    assert threaded_algorithms(ALGORITHMS, 9) == ("md5", "sha256", "sha1", "crc32")
    assert StreamHasher(ALGORITHMS, threaded=False).threaded == ()


def test_without_threads_everything_is_hashed_by_the_caller_alike(no_threads):
    """A process at its thread limit still downloads and verifies: the plain fallback gives
    the same digests."""
    data = [os.urandom(n) for n in (1, 70_000, 3) + (1 << 20,) * 3]
    hasher = StreamHasher(ALGORITHMS, workers=8)
    assert hasher.threaded == ()
    assert _hash_blocks(hasher, data) == _reference(data)


@pytest.mark.parametrize("size", [0, 1, 70_003, (8 << 20) * 2 + 5])
def test_hash_file_equals_hashlib(tmp_path, size):
    """Empty, tiny, and past two of hash_file's 8 MiB reads."""
    whole = os.urandom(size)
    path = tmp_path / "blob"
    path.write_bytes(whole)
    assert hash_file(path, ALGORITHMS) == _reference([whole])


def test_reset_forgets_what_was_hashed():
    hasher = StreamHasher(ALGORITHMS, workers=2)
    hasher.update(b"a prefix that a restarted download throws away")
    hasher.reset()
    hasher.update(b"abc")
    assert hasher.hexdigests() == _reference([b"abc"])
