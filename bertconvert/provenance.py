"""Provenance for ``conversion.json``: the sha256 of every source file, computed on a thread.

The digests cover whole files (optimizer slots included), so they match ``sha256sum`` and a
checkpoint's published checksums. SHA-256 runs at about 1.6 GB/s per core and cannot be
split, so for big checkpoints it is the longest single job of a conversion; it runs beside
the conversion (hashlib releases the GIL on big chunks) and only its result is waited for.

Example::

    hasher = SourceHasher([index_path, shard_path, config_path])
    hasher.start()
    ...                                   # convert meanwhile
    entries = hasher.wait()               # [{"path", "size", "sha256"}, ...]
"""
import hashlib
import os
import threading

from .errors import ConversionError

#: Cache-sized: the copy out of the page cache stays cheap.
_HASH_CHUNK = 1 << 20


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
