"""bertconvert.hashing: hashes kept beside other work, and the plain fallback on the caller's
thread when no thread can be started -- the digests must be the same either way."""
import hashlib
import os
import threading

import pytest

from bertconvert.hashing import HashWorker, feed_file

BLOCKS = [os.urandom(n) for n in (1, 70_000, 3, 1 << 20, 1 << 20, 5)]
WHOLE = b"".join(BLOCKS)


@pytest.mark.parametrize("threaded", [True, False])
def test_hash_worker_digest_equals_hashlibs(threaded):
    worker = HashWorker(hashlib.sha256(), "test-sha256", threaded=threaded)
    assert worker.threaded is threaded
    for block in BLOCKS * 4:  # more blocks than the queue holds
        worker.feed(block)
    h = worker.close()
    assert h.hexdigest() == hashlib.sha256(WHOLE * 4).hexdigest()
    assert worker.close() is h  # closing again is harmless


def test_hash_worker_falls_back_to_the_callers_thread(no_threads):
    worker = HashWorker(hashlib.md5(), "test-md5")
    assert not worker.threaded
    for block in BLOCKS:
        worker.feed(block)
    assert worker.close().hexdigest() == hashlib.md5(WHOLE).hexdigest()


def test_feed_file_reads_to_the_end_or_stops_when_asked(tmp_path):
    path = tmp_path / "blob"
    path.write_bytes(WHOLE)
    digest = hashlib.sha256()
    with open(path, "rb", buffering=0) as f:
        assert feed_file(f, digest.update, bytearray(4096)) == len(WHOLE)
    assert digest.hexdigest() == hashlib.sha256(WHOLE).hexdigest()
    stop = threading.Event()
    stop.set()
    with open(path, "rb", buffering=0) as f:
        assert feed_file(f, hashlib.sha256().update, bytearray(4096), stop) is None


def test_source_hashing_without_threads_gives_the_same_entries(tmp_path, no_threads):
    """conversion.json's hashes do not depend on a hashing thread being available."""
    from bertconvert.convert.provenance import SourceHasher

    (tmp_path / "a").write_bytes(WHOLE)
    hasher = SourceHasher([tmp_path / "a"])
    hasher.start()  # hashes here and now
    assert not hasher.is_alive()
    assert hasher.wait() == [{"path": str(tmp_path / "a"), "size": len(WHOLE),
                              "sha256": hashlib.sha256(WHOLE).hexdigest()}]
