"""Planned tensors out of a checkpoint, in PyTorch layout and the output dtype, with numpy only.

The converter's inner loop. For each :class:`~bertconvert.convert.plan.PlannedTensor` the bytes
are read from the data shard in small pieces (``preadv`` into one reused, cache-sized
buffer), checked against the entry's crc32c as they stream past, then

* copied as they are (no transform, same dtype: most bytes of a checkpoint), or cast
  element-wise (float16 natively, bfloat16 through ``ml_dtypes``), piece by piece; or
* transposed (``kernel`` [in, out] -> ``weight`` [out, in], after the TF2 reshapes) strip by
  strip into one reused output buffer: a strip of 64 source rows is a few hundred KB, so the
  column writes stay in cache, which makes this several times faster than a plain
  ``a.T.copy()`` and about as fast as torch's blocked copy.

Nothing here imports torch, and nothing is held longer than one tensor: peak memory is the
largest transposed tensor plus a 1 MiB read buffer, whatever the checkpoint size. Values are
exactly the checkpoint's (float32 out of float32: the same bytes); reduced precision rounds
to nearest-even like torch's ``Tensor.to``, but a value beyond the output dtype's range (1e6
as float16) is :class:`~bertconvert.errors.DtypeRangeError` naming the tensor, never a silent
infinity. NaN or infinity already in the checkpoint is converted as it is, with a warning
naming the tensor (a cheap min/max per cached piece finds them).

Example::

    copier = TensorCopier(reader, "float16")
    for t in plan.tensors:
        for piece in copier.chunks(t):      # uint8 arrays, valid until the next step
            f.write(piece)
"""
import logging
import os
from math import prod

import numpy as np

from ..checkpoint import dtypes as _dtypes
from ..checkpoint.crc import crc32c, mask
from ..checkpoint.shards import pread_into
from ..errors import (CheckpointError, CheckpointFormatError, ChecksumMismatchError,
                      ConversionError, DtypeRangeError, option)
from .rules import NONE, RESHAPE, RESHAPE_IN_TRANSPOSE, RESHAPE_OUT_TRANSPOSE, TRANSPOSE

#: Bytes read (and checksummed) per step: fits in L2 with room for the transpose's writes.
CHUNK_BYTES = 1 << 20
#: Source rows per transpose strip (fewer when rows are wide): measured best on x86 L2 sizes.
STRIP_ROWS = 64
OUTPUT_DTYPES = ("float32", "float16", "bfloat16")

log = logging.getLogger(__name__)


def storage_dtype(name):
    """The numpy dtype holding output dtype ``name`` (bfloat16: ``ml_dtypes.bfloat16``)."""
    if name == "bfloat16":
        return _dtypes.bfloat16_dtype()
    if name in ("float32", "float16"):
        return np.dtype(name)
    raise ConversionError(f"unknown dtype {name!r}; expected one of {', '.join(OUTPUT_DTYPES)}")


def source_grid(transform, shape):
    """``(rows, cols)`` of the 2-D source matrix a transposing ``transform`` flips, or None
    when the transform only reshapes (the bytes stay in order)."""
    shape = tuple(int(d) for d in shape)
    if transform in (NONE, RESHAPE):
        return None
    if transform == TRANSPOSE and len(shape) == 2:
        return shape
    if transform == RESHAPE_OUT_TRANSPOSE and len(shape) == 3:  # [in, heads, hd] -> [in, H]
        return shape[0], shape[1] * shape[2]
    if transform == RESHAPE_IN_TRANSPOSE and len(shape) == 3:   # [heads, hd, out] -> [H, out]
        return shape[0] * shape[1], shape[2]
    raise ConversionError(f"transform {transform} does not fit shape {list(shape)}")


def _largest(dtype):
    return float(np.finfo(dtype).max)


def _cast(out, values, src=None):
    """``out[...] = values``, rounding to ``out.dtype`` like torch's ``Tensor.to``: nearest
    even; NaN stays NaN with its sign; its payload bits are not canonicalised (torch's own
    differ between its scalar and vectorised paths). With ``src`` (a :class:`_Source`) the
    values are checked too (see :func:`_check_values`); without it overflow gives inf."""
    if out.dtype == values.dtype:
        out[...] = values
    else:
        with np.errstate(over="ignore", invalid="ignore"):
            np.copyto(out, values, casting="unsafe")
    if src is not None:
        _check_values(out, values, src)


def _check_values(out, values, src):
    """Raise DtypeRangeError for a finite value that became infinite in ``out``; count NaN
    and infinity already in ``values`` on ``src``. Two vectorised passes over a piece still
    in cache; the precise (slower) look only when min or max is out of range or NaN."""
    if not values.size:
        return
    lo, hi = values.min(), values.max()
    limit = src.limit if out.dtype != values.dtype else np.inf
    if -limit <= lo and hi <= limit and np.isfinite(lo) and np.isfinite(hi):
        return
    finite = np.isfinite(values)
    src.nonfinite += int(finite.size - np.count_nonzero(finite))
    if out.dtype == values.dtype:
        return
    overflow = finite & ~np.isfinite(out)
    if overflow.any():
        worst = float(np.abs(values[overflow].astype(np.float64)).max())
        raise DtypeRangeError(
            f"tensor {src.name!r} (-> {src.key}) holds {worst:.6g}, beyond the largest "
            f"{out.dtype.name} ({_largest(out.dtype):.6g}): it would be written as infinity. "
            f"{wider_dtype_hint(out.dtype.name)}")


def wider_dtype_hint(name):
    """What to do when a value does not fit output dtype ``name``."""
    bf16, fp32 = (option(f"--dtype {d}", f"dtype={d!r}") for d in ("bfloat16", "float32"))
    if name == "float16":
        return f"Convert with {bf16} (float32's range in float16's size) or {fp32}"
    if name == "bfloat16":
        return f"Convert with {fp32}"
    return "No output dtype holds it (float32 is the widest): the checkpoint value is out of range"


class _Buffers:
    """Reused scratch arrays, grown on demand: fresh memory for every tensor would mean
    fresh page faults (zeroing) for every byte, which costs more than the copies."""

    def __init__(self):
        self._bufs = {}

    def get(self, slot, nbytes):
        buf = self._bufs.get(slot)
        if buf is None or buf.nbytes < nbytes:
            buf = self._bufs[slot] = np.empty(max(nbytes, 1), np.uint8)
        return buf[:nbytes]


class _Source:
    """Sequential, crc-checked access to one tensor's bytes (a shard range, or an array the
    reader assembled for partitioned variables)."""

    def __init__(self, name, dtype, size, crc=None, file=None, offset=0, array=None, path=None):
        self.name, self.dtype, self.size = name, dtype, size
        self._crc_expected, self._file, self._offset = crc, file, offset
        self._array = None if array is None else array.reshape(-1).view(np.uint8)
        self._path, self._pos, self._crc = path, 0, 0
        #: the PyTorch key (for messages), the output dtype's largest value (set by the
        #: copier when it checks values), and the NaN/inf count seen so far
        self.key, self.limit, self.nonfinite = None, np.inf, 0

    def read(self, nbytes, buffers, into=None):
        """The next ``nbytes`` bytes: a uint8 view valid until the next read, or ``into``
        (a uint8 array of that size) filled with them."""
        start, self._pos = self._pos, self._pos + nbytes
        if self._array is not None:
            view = self._array[start:start + nbytes]
            if self._crc_expected is not None:  # remote bytes: checked as they are handed on
                self._crc = crc32c(view, self._crc)
            if into is None:
                return view
            into[:] = view
            return into
        view = buffers.get("read", nbytes) if into is None else into
        try:
            got = pread_into(self._file, view, self._offset + start)
        except OSError as e:  # a read error, not to be mistaken for a full output disk
            raise CheckpointError(f"cannot read tensor {self.name!r} from {self._path}: {e}") from e
        if got != nbytes:
            raise ChecksumMismatchError(
                f"tensor {self.name!r}: only {start + got} of {self.size} bytes could be read "
                f"from {self._path} at offset {self._offset}: the shard is truncated; copy or "
                "download it again")
        if self._crc_expected is not None:  # while the piece is in cache, not in a second pass
            self._crc = crc32c(view, self._crc)
        return view

    def finish(self):
        """Check the crc once every byte has been read (then report NaN or infinity: of
        corrupt bytes, the checksum error is the news)."""
        if self._crc_expected is not None and mask(self._crc) != self._crc_expected:
            raise ChecksumMismatchError(
                f"tensor {self.name!r} in {self._path} (offset {self._offset}, {self.size} bytes) "
                f"fails its crc32c check (stored {self._crc_expected:#010x}, computed "
                f"{mask(self._crc):#010x}): the data shard is corrupt; copy or download it again")
        if self.nonfinite:
            log.warning("tensor %r (-> %s) holds %d NaN or infinite value(s) in the "
                        "checkpoint; converted as they are", self.name, self.key, self.nonfinite)
            self.nonfinite = 0


class TensorCopier:
    """Produce planned tensors of ``reader``'s checkpoint in PyTorch layout as ``dtype``.

    crc32c checks follow ``reader.verify_checksums``. Use :meth:`chunks` to stream a
    tensor's output bytes or :meth:`array` to get it whole; ``close()`` (or ``with``)
    releases the shard files. With ``check_values`` (the default) a value the output dtype
    cannot hold is DtypeRangeError and NaN/inf in the checkpoint a warning.
    """

    def __init__(self, reader, dtype, chunk_bytes=CHUNK_BYTES, check_values=True):
        self.reader, self.dtype = reader, storage_dtype(dtype)
        self.chunk_bytes = max(int(chunk_bytes), 64)
        # Off for verify's digests, which describe what any cast gives, overflow included.
        self.check_values = check_values
        self._buffers = _Buffers()
        self._files = {}

    def close(self):
        for f in self._files.values():
            f.close()
        self._files.clear()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # -- sources -------------------------------------------------------------------------
    def _shard(self, path, name):
        f = self._files.get(path)
        if f is None:
            try:
                f = self._files[path] = open(path, "rb", buffering=0)
            except OSError as e:
                raise CheckpointError(f"cannot open data shard {path} (holding {name!r}): {e}") from e
        return f

    def _source(self, tensor):
        src = self._open(tensor.name)
        src.key = tensor.key
        return src

    def _check(self, src):
        """``src`` when values are checked (what :func:`_cast` takes), else None."""
        if not self.check_values:
            return None
        src.limit = _largest(self.dtype)
        return src

    def _open(self, name):
        entry = self.reader.entry(name)
        path = getattr(entry, "file", None)
        if entry.slices or path is None or entry.dtype is None or not _dtypes.is_readable(entry.tf_dtype):
            # Partitioned variables (and anything unusual) go through the reader, which
            # assembles and checks them, or raises its named error.
            array = self.reader.get_tensor(name)
            return _Source(name, array.dtype, array.nbytes, array=array)
        expected = prod(entry.shape) * entry.dtype.itemsize
        if entry.size != expected:
            raise CheckpointFormatError(
                f"tensor {name!r} has {entry.size} bytes recorded but {entry.dtype_name} "
                f"{list(entry.shape)} needs {expected}: the checkpoint index is corrupt")
        crc = entry.crc32c if self.reader.verify_checksums else None
        store = getattr(self.reader, "store", None)
        if store is not None:  # a remote checkpoint: the bytes come as a fetched range
            self.reader.check_stored(name)  # the object is long enough
            return _Source(name, entry.dtype, entry.size, crc=crc, offset=entry.offset,
                           array=store.tensor_bytes(entry), path=path)
        f = self._shard(path, name)
        available = os.fstat(f.fileno()).st_size
        if available < entry.offset + entry.size:
            raise ChecksumMismatchError(
                f"tensor {name!r} needs {entry.size} bytes at offset {entry.offset} of {path}, "
                f"but the file is only {available} bytes long: the shard is truncated; copy or "
                "download it again")
        return _Source(name, entry.dtype, entry.size, crc=crc, file=f, offset=entry.offset, path=path)

    def nbytes(self, tensor):
        """Output size of ``tensor`` in bytes."""
        return prod(tensor.shape) * self.dtype.itemsize

    # -- producing -----------------------------------------------------------------------
    def _pieces(self, src):
        """``(first element, byte count)`` of each read step over ``src``."""
        step = self.chunk_bytes - self.chunk_bytes % src.dtype.itemsize
        return [(done // src.dtype.itemsize, min(step, src.size - done))
                for done in range(0, src.size, step)]

    def _elementwise_chunks(self, src):
        """Yield an untransposed tensor's output bytes piece by piece; the crc is checked
        before the last piece is handed out."""
        pieces = self._pieces(src)
        check = self._check(src)
        if not pieces:
            src.finish()
        for i, (_, n) in enumerate(pieces):
            piece = src.read(n, self._buffers)
            if src.dtype != self.dtype:
                cast = self._buffers.get("cast", n // src.dtype.itemsize * self.dtype.itemsize)
                _cast(cast.view(self.dtype), piece.view(src.dtype), check)
                piece = cast
            elif check is not None:
                _check_values(piece.view(src.dtype), piece.view(src.dtype), check)
            if i == len(pieces) - 1:
                src.finish()
            yield piece

    def _elementwise_into(self, src, out_flat):
        check = self._check(src)
        for first, n in self._pieces(src):
            target = out_flat[first:first + n // src.dtype.itemsize]
            if src.dtype == self.dtype:  # straight into place: one copy, out of the page cache
                src.read(n, self._buffers, into=target.view(np.uint8))
                if check is not None:
                    _check_values(target, target, check)
            else:
                _cast(target, src.read(n, self._buffers).view(src.dtype), check)
        src.finish()

    def _transposed(self, src, grid, out):
        rows, cols = grid
        out2d = out.reshape(cols, rows)
        row_bytes = cols * src.dtype.itemsize
        strip = max(1, min(STRIP_ROWS, self.chunk_bytes // max(row_bytes, 1))) if row_bytes else rows
        check = self._check(src)
        for i in range(0, rows, max(strip, 1)):
            n = min(strip, rows - i)
            piece = src.read(n * row_bytes, self._buffers).view(src.dtype).reshape(n, cols)
            _cast(out2d[:, i:i + n], piece.T, check)  # transpose and cast in one pass
        src.finish()

    def chunks(self, tensor):
        """Yield ``tensor``'s output bytes (C order, output dtype) as uint8 arrays.

        Each array is only valid until the next one is requested (the buffers are reused).
        A crc mismatch raises ChecksumMismatchError before the tensor's last piece is
        yielded, so a writer never completes a tensor from corrupt bytes.
        """
        src = self._source(tensor)
        grid = source_grid(tensor.rule.transform, tensor.source_shape)
        if grid is None:
            yield from self._elementwise_chunks(src)
            return
        out = self._buffers.get("out", self.nbytes(tensor)).view(self.dtype)
        self._transposed(src, grid, out)
        yield out.view(np.uint8)

    def array(self, tensor, fresh=False):
        """``tensor`` as one C-contiguous array (PyTorch shape, output dtype).

        Unless ``fresh``, it lives in a reused buffer and is only valid until the next call.
        """
        if fresh:
            out = np.empty(tuple(tensor.shape), self.dtype)
        else:
            out = self._buffers.get("whole", self.nbytes(tensor)).view(self.dtype).reshape(tuple(tensor.shape))
        src = self._source(tensor)
        grid = source_grid(tensor.rule.transform, tensor.source_shape)
        if grid is None:
            self._elementwise_into(src, out.reshape(-1))
        else:
            self._transposed(src, grid, out.reshape(-1))
        return out
