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


def _hash_reused_buffers(hasher, data):
    """Feed ``data`` as views of buffers that are scribbled over once released, as reused
    receive buffers are: a release that came before some algorithm had hashed its buffer
    would show in that algorithm's digest. Returns (digests, buffers released in order)."""
    buffers = [bytearray(block) for block in data]
    released = []

    def release(i):
        buffers[i][:] = bytes(len(buffers[i]))
        released.append(i)

    for i, buf in enumerate(buffers):
        hasher.update(memoryview(buf).toreadonly(), release=lambda i=i: release(i))
    return hasher.hexdigests(), released


def _reference(data):
    whole = b"".join(data)
    out = {name: hashlib.new(name, whole).hexdigest() for name in ("sha256", "md5", "sha1")}
    out["crc32"] = f"{zlib.crc32(whole):08x}"
    return out


@pytest.mark.parametrize("workers", [0, 1, 2, 8])
def test_digests_are_right_and_buffers_released_once_whatever_the_workers(workers):
    # Many MiB-sized blocks: a worker finishing a block while the caller still hashes it
    # inline is a race, so give it many chances to show.
    data = [os.urandom(n) for n in (1, 70_000, 3) + (1 << 20,) * 24]
    hasher = StreamHasher(ALGORITHMS, workers=workers)
    # The costliest get the threads: md5, then sha256/sha1 (ties keep their order); crc32 last.
    assert set(hasher.threaded) == set(["md5", "sha256", "sha1", "crc32"][:workers])
    digests, released = _hash_reused_buffers(hasher, data)
    assert digests == _reference(data)
    assert sorted(released) == list(range(len(data)))


def test_the_costliest_algorithms_get_the_threads():
    assert threaded_algorithms(ALGORITHMS, 0) == ()
    assert threaded_algorithms(ALGORITHMS, 1) == ("md5",)
    assert threaded_algorithms(ALGORITHMS, 2) == ("md5", "sha256")
    assert threaded_algorithms(ALGORITHMS, 9) == ("md5", "sha256", "sha1", "crc32")
    assert StreamHasher(ALGORITHMS, threaded=False).threaded == ()


def test_without_threads_everything_is_hashed_by_the_caller_alike(no_threads):
    """A process at its thread limit still downloads and verifies: the plain fallback gives
    the same digests, and releases each buffer once."""
    data = [os.urandom(n) for n in (1, 70_000, 3) + (1 << 20,) * 3]
    hasher = StreamHasher(ALGORITHMS, workers=8)
    assert hasher.threaded == ()
    digests, released = _hash_reused_buffers(hasher, data)
    assert digests == _reference(data)
    assert released == list(range(len(data)))


def test_hash_file_matches_the_stream(tmp_path):
    data = [os.urandom(n) for n in (1, 70_000, 3) + (1 << 20,) * 3]
    path = tmp_path / "blob"
    path.write_bytes(b"".join(data))
    assert hash_file(path, ALGORITHMS) == _reference(data)


def test_reset_forgets_what_was_hashed():
    hasher = StreamHasher(ALGORITHMS, workers=2)
    hasher.update(b"a prefix that a restarted download throws away")
    hasher.reset()
    hasher.update(b"abc")
    assert hasher.hexdigests() == _reference([b"abc"])
