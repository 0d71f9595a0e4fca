"""Tensor bytes out of ``.data-NNNNN-of-MMMMM`` shards, checked against their crc32c.

Two ways to get an entry's bytes into an array, neither with an intermediate buffer:

* **memory-mapped** (default): each shard is mapped once, copy-on-write, and a tensor is a
  numpy view of its pages. Nothing is copied; the checksum pass is the only time the bytes
  are touched, so a checked read of a whole checkpoint costs about what ``cat`` costs. The
  arrays are writable (writes stay private to the process). Like every memory-mapped
  loader (safetensors, ``np.load(mmap_mode=...)``), arrays read this way must not outlive
  an *in-place* rewrite of the shard (``cp`` over it, or truncation): they would change, or
  touching them would crash. Replacing the file by rename, as TensorFlow and bertconvert
  do, is safe. Tensors at offsets not aligned for their dtype are copied into aligned memory.
* **read** (``mmap=False``): a fresh array is allocated and filled with ``preadv`` in 1 MiB
  chunks, each checksummed while it is still in the CPU cache.

Before touching any bytes the shard's current size is checked, so a truncated shard is a
named error, never a short array or a crash.
"""
import mmap as _mmap
import os
import stat
import threading

import numpy as np

from ..errors import CheckpointError, ChecksumMismatchError, MissingShardError
from .crc import crc32c, mask

#: Bytes read (and checksummed) at a time when not memory-mapping: fits in L2/L3 cache.
READ_CHUNK = 1 << 20


class ShardFiles:
    """Open shard files and their mappings, shared by one reader (thread-safe)."""

    def __init__(self, use_mmap=True):
        self.use_mmap = use_mmap
        self._files = {}
        self._maps = {}
        self._lock = threading.Lock()

    def close(self):
        """Close files; mappings still referenced by returned arrays live on until those die."""
        with self._lock:
            for m in self._maps.values():
                try:
                    m.close()
                except BufferError:  # arrays still view it; it closes when they are freed
                    pass
            self._maps.clear()
            for f in self._files.values():
                f.close()
            self._files.clear()

    def _file(self, path, owner):
        f = self._files.get(path)
        if f is None:
            try:
                # Non-blocking open, then fstat: a shard swapped for a FIFO since the reader
                # was built must not hang here (O_NONBLOCK changes nothing for regular files).
                fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
                f = os.fdopen(fd, "rb", buffering=0)
                if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
                    f.close()
                    raise CheckpointError(f"data shard {path} (holding {owner!r}) is not a "
                                          "regular file; copy the real shard there")
            except FileNotFoundError as e:
                raise MissingShardError(f"data shard {path} (holding {owner!r}) has "
                                        "disappeared since the checkpoint was opened") from e
            except OSError as e:
                raise CheckpointError(f"cannot open data shard {path}: {e}") from e
            self._files[path] = f
        return f

    def _open(self, entry, label):
        """The shard's file (and mapping), after checking the entry's bytes are all there."""
        end = entry.offset + entry.size
        with self._lock:
            f = self._file(entry.file, entry.name)
            available = os.fstat(f.fileno()).st_size
            if available < end:
                raise ChecksumMismatchError(
                    f"tensor {label} needs {entry.size} bytes at offset {entry.offset} of "
                    f"{entry.file}, but the file is only {available} bytes long: the shard is "
                    "truncated; copy or download it again")
            if not self.use_mmap or entry.size == 0:
                return f, None
            m = self._maps.get(entry.file)
            if m is None or len(m) < end:  # first use, or the file grew since it was mapped
                m = _mmap.mmap(f.fileno(), 0, access=_mmap.ACCESS_COPY)
                self._maps[entry.file] = m
            return f, m

    def read(self, entry, dtype, label, verify):
        """The entry's tensor as an array of ``dtype``; raise on truncation or crc mismatch."""
        f, m = self._open(entry, label)
        if m is not None:
            raw = np.frombuffer(m, dtype=np.uint8, count=entry.size, offset=entry.offset)
            crc = crc32c(raw) if verify else 0
            if entry.offset % dtype.alignment:
                out = np.empty(entry.shape, dtype)
                out.reshape(-1).view(np.uint8)[:] = raw
            else:
                out = raw.view(dtype).reshape(entry.shape)
        else:
            out = np.empty(entry.shape, dtype)
            crc = self._read_chunks(f, entry, out.reshape(-1).view(np.uint8), label, verify)
        if verify and mask(crc) != entry.crc32c:
            raise ChecksumMismatchError(
                f"tensor {label} in {entry.file} (offset {entry.offset}, {entry.size} bytes) "
                f"fails its crc32c check (stored {entry.crc32c:#010x}, computed "
                f"{mask(crc):#010x}): the data shard is corrupt; copy or download it again")
        return out

    def _read_chunks(self, f, entry, buf, label, verify):
        crc = 0
        for start in range(0, entry.size, READ_CHUNK):
            chunk = buf[start:start + READ_CHUNK]
            got = self._pread(f, entry.offset + start, chunk)
            if got != len(chunk):
                raise ChecksumMismatchError(
                    f"tensor {label}: only {start + got} of {entry.size} bytes could be read "
                    f"from {entry.file} at offset {entry.offset}: the shard is truncated")
            if verify:  # while the chunk is still in cache, not in a second pass
                crc = crc32c(chunk, crc)
        return crc

    def _pread(self, f, offset, buf):
        if hasattr(os, "preadv"):
            return pread_into(f, buf, offset)
        with self._lock:  # pragma: no cover - seek+read shares the file offset (Windows)
            return pread_into(f, buf, offset)


def pread_into(f, buf, offset):
    """Fill ``buf`` from byte ``offset`` of raw file ``f``; returns the bytes read (short at EOF).

    Uses positional reads where available, so threads sharing ``f`` need no lock.
    """
    view = memoryview(buf)
    total = 0
    while total < len(view):
        if hasattr(os, "preadv"):
            got = os.preadv(f.fileno(), [view[total:]], offset + total)
        else:  # pragma: no cover - platforms without preadv (Windows): callers serialise
            f.seek(offset + total)
            got = f.readinto(view[total:])
        if not got:
            break
        total += got
    return total
