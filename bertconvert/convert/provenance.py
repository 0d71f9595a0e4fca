"""Provenance for ``conversion.json``: sha256 of the source files, computed on a thread.

Each digest covers a whole file, so it matches ``sha256sum``; which files are hashed is the
converter's choice (``convert.SOURCE_HASHES``: by default, not data shards that are mostly
optimizer slots). SHA-256 runs at about 1.6 GB/s per core and cannot be split, so for big
checkpoints it is the longest single job of a conversion; it runs beside the conversion
(hashlib releases the GIL on big chunks) and only its result is waited for.

With ``--source-hash full`` the convert command starts that job first of all, before the
heavy imports (:func:`prefetch_checkpoint`); the conversion then adopts the running hasher
(:func:`start_hashing`) if it covers exactly the checkpoint's files.

Example::

    hasher = start_hashing([index_path, shard_path])
    ...                                   # convert meanwhile
    entries = hasher.wait() + hash_files([config_path])   # [{"path", "size", "sha256"}, ...]
"""
import glob
import hashlib
import logging
import os
import threading

from ..errors import ConversionError

log = logging.getLogger(__name__)

#: Cache-sized: the copy out of the page cache stays cheap.
_HASH_CHUNK = 1 << 20

_prefetched = {}
_prefetched_lock = threading.Lock()


class SourceHasher(threading.Thread):
    """Hash the source files beside the conversion. hashlib releases the GIL on big chunks,
    so on a second core this costs little wall time; reading into one reused, cache-sized
    buffer keeps the copy out of the page cache cheap. (A separate read-ahead thread was
    measured slower: three busy threads on two cores.) ``cancel()`` stops it early."""

    def __init__(self, paths):
        super().__init__(daemon=True, name="bertconvert-sha256")
        self.paths, self.result, self.error = list(paths), [], None
        self._cancelled = threading.Event()

    def run(self):
        buf = bytearray(_HASH_CHUNK)
        view = memoryview(buf)
        try:
            for path in self.paths:
                digest, size = hashlib.sha256(), 0
                with open(path, "rb", buffering=0) as f:
                    while True:
                        if self._cancelled.is_set():
                            return  # no entry for a file that was not read to the end
                        n = f.readinto(buf)
                        if not n:
                            break
                        digest.update(view[:n])
                        size += n
                self.result.append({"path": os.path.abspath(path), "size": size,
                                    "sha256": digest.hexdigest()})
        except OSError as e:
            self.error = e

    def cancel(self):
        """Stop early (after a failure elsewhere) and wait for the thread to end."""
        self._cancelled.set()
        if self.is_alive():
            self.join()

    def wait(self):
        """The ``{"path", "size", "sha256"}`` entries, once every file is hashed."""
        self.join()
        if self.error is not None:
            raise ConversionError(f"cannot hash source file for conversion.json: {self.error}") from self.error
        return self.result


def _key(paths):
    return tuple(os.path.abspath(p) for p in paths)


def hash_files(paths):
    """``{"path", "size", "sha256"}`` entries for small files, hashed on this thread."""
    hasher = SourceHasher(paths)
    hasher.run()
    if hasher.error is not None:
        raise ConversionError(f"cannot hash source file for conversion.json: {hasher.error}") from hasher.error
    return hasher.result


def start_hashing(paths):
    """A started :class:`SourceHasher` for ``paths``: the one :func:`prefetch_checkpoint`
    started for exactly these files, else a new one."""
    with _prefetched_lock:
        hasher = _prefetched.pop(_key(paths), None)
        stale = list(_prefetched.values())
        _prefetched.clear()
    for other in stale:  # a guess that did not match: stop reading for nothing
        other.cancel()
    if hasher is None:
        hasher = SourceHasher(paths)
        hasher.start()
    return hasher


def prefetch_checkpoint(path):
    """Start hashing the checkpoint at ``path`` (prefix, .index, shard or directory) right away.

    Cheap to call (no numpy): the convert command calls it before importing the converter,
    so the longest job of a conversion starts some 0.1 s earlier. Best effort: any problem
    is left for the conversion itself to report.
    """
    from ..checkpoint.paths import resolve_prefix

    try:
        prefix = resolve_prefix(path)
        shards = sorted(glob.glob(glob.escape(prefix) + ".data-*-of-*"))
    except Exception as e:  # noqa: BLE001 - the conversion reports it properly
        log.debug("not prefetching the source hash of %s: %s", path, e)
        return None
    if not shards:
        return None
    hasher = SourceHasher([prefix + ".index"] + shards)
    with _prefetched_lock:
        _prefetched[_key(hasher.paths)] = hasher
    hasher.start()
    return hasher
