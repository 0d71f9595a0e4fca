"""Weight-file writers that take one tensor at a time, so peak memory stays at one tensor.

``safetensors.torch.save_file`` and ``torch.save`` both want the whole state dict in memory;
for a 440 MB model that alone is 440 MB of resident memory. Both formats only need the list
of names, dtypes and shapes up front, so the converter declares them first (a
:class:`TensorSpec` list) and then hands over the bytes tensor by tensor, in that order.

* safetensors: 8-byte little-endian header length, a JSON header (name -> dtype, shape,
  data_offsets), padded with spaces to a multiple of 8, then the raw little-endian bytes.
* ``torch.save`` zip (what ``pytorch_model.bin`` is since torch 1.6): ``data.pkl`` (the pickled
  dict; every tensor is ``_rebuild_tensor_v2(storage, 0, shape, stride, ...)`` and every
  storage a persistent id ``("storage", FloatStorage, key, "cpu", numel)``), then one
  ``data/<key>`` record per storage, written through torch's own ``PyTorchFileWriter`` so
  alignment and the central directory are exactly what ``torch.load`` expects. A tied alias
  shares its target's storage, as it would in ``torch.save(model.state_dict())``.

Declared in :func:`safetensors_order`, a safetensors file is byte for byte what
``safetensors.numpy.save_file`` writes for the same tensors. The converter hands the writers
a :class:`~bertconvert.directio.DirectFile` (or what a custom ``opener`` gives).
:func:`torch_zip_writer` falls back to a plain ``torch.save`` of the whole dict
(:class:`TorchSaveWriter`) where torch lacks the private writer the streaming one needs.

Example::

    specs = [TensorSpec("a.weight", "float32", (2, 3))]
    with open(path, "wb") as f:
        w = SafetensorsStreamWriter(f, specs)
        w.write("a.weight", np.zeros((2, 3), np.float32))
        w.close()
"""
import collections
import contextlib
import io
import json
import pickle
import struct
import sys
from dataclasses import dataclass
from math import prod

import numpy as np

#: Our dtype names -> safetensors dtype codes.
SAFETENSORS_DTYPES = {"float32": "F32", "float16": "F16", "bfloat16": "BF16", "float64": "F64",
                      "int64": "I64", "int32": "I32"}
_ITEMSIZE = {"float32": 4, "float16": 2, "bfloat16": 2, "float64": 8, "int64": 8, "int32": 4}
#: safetensors' Dtype enum in declaration order; its writer stores the highest first.
_SAFETENSORS_RANK = {code: i for i, code in enumerate(
    ("BOOL", "F4", "F6_E2M3", "F6_E3M2", "U8", "I8", "F8_E5M2", "F8_E4M3", "F8_E8M0", "I16",
     "U16", "F16", "BF16", "I32", "U32", "F32", "C64", "F64", "I64", "U64"))}


@dataclass(frozen=True)
class TensorSpec:
    """Name, dtype name (``float32``/``float16``/``bfloat16``...) and shape of one output tensor.

    A bfloat16 tensor may be written from an ml_dtypes bfloat16 array or from its raw 16-bit
    patterns (an int16/uint16 array of the same shape).
    """

    name: str
    dtype: str
    shape: tuple

    @property
    def nbytes(self):
        return prod(self.shape) * _ITEMSIZE[self.dtype]


def _raw_bytes(array):
    """A flat uint8 view of a C-contiguous array (works for ml_dtypes' bfloat16 too)."""
    if not array.flags.c_contiguous:
        raise ValueError("stream writers need C-contiguous arrays")
    return array.reshape(-1).view(np.uint8)


def _dtype_fits(spec, array):
    if array.dtype.name == spec.dtype:
        return True
    # bfloat16 may also come as its raw 16-bit patterns (numpy has no bfloat16 of its own).
    return spec.dtype == "bfloat16" and array.dtype in (np.dtype(np.int16), np.dtype(np.uint16))


def _check(spec, array):
    if not _dtype_fits(spec, array) or tuple(array.shape) != tuple(spec.shape):
        raise ValueError(f"{spec.name}: declared {spec.dtype} {list(spec.shape)}, "
                         f"got {array.dtype.name} {list(array.shape)}")
    if sys.byteorder != "little" and array.dtype.itemsize > 1:  # pragma: no cover - big-endian hosts
        array = array.byteswap()
    return _raw_bytes(array)


class _Ordered:
    """Shared bookkeeping: tensors must arrive exactly in the declared order."""

    def __init__(self, specs):
        self.specs = list(specs)
        names = [s.name for s in self.specs]
        if len(set(names)) != len(names):
            raise ValueError("duplicate tensor names in the declared specs")
        self._next = 0

    def _take(self, name, array):
        """The spec for ``name`` and the array's raw bytes; advances only if both check out."""
        if self._next >= len(self.specs):
            raise ValueError(f"{name}: every declared tensor has already been written")
        spec = self.specs[self._next]
        if spec.name != name:
            raise ValueError(f"expected tensor {spec.name} next, got {name}")
        raw = _check(spec, array)
        self._next += 1
        return spec, raw

    def _check_complete(self):
        if self._next != len(self.specs):
            missing = [s.name for s in self.specs[self._next:]]
            raise ValueError(f"{len(missing)} declared tensor(s) never written: {missing[:5]}")


def safetensors_order(specs):
    """``specs`` in the order safetensors' own writer lays tensors out (dtype, widest first,
    then name): declaring them so makes the file identical to ``safetensors`` output."""
    return sorted(specs, key=lambda s: (-_SAFETENSORS_RANK[SAFETENSORS_DTYPES[s.dtype]], s.name))


class SafetensorsStreamWriter(_Ordered):
    """Write a safetensors file to an open binary file object, tensor by tensor."""

    def __init__(self, fileobj, specs, metadata=None):
        super().__init__(specs)
        self._f = fileobj
        header, offset = {}, 0
        if metadata:
            header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
        for spec in self.specs:
            end = offset + spec.nbytes
            header[spec.name] = {"dtype": SAFETENSORS_DTYPES[spec.dtype],
                                 "shape": list(spec.shape), "data_offsets": [offset, end]}
            offset = end
        text = json.dumps(header, separators=(",", ":")).encode("utf-8")
        text += b" " * (-len(text) % 8)  # the data section starts 8-byte aligned
        self._f.write(struct.pack("<Q", len(text)))
        self._f.write(text)

    def write(self, name, array):
        """Append ``array`` (numpy, dtype and shape as declared) as tensor ``name``."""
        _, raw = self._take(name, array)
        self._f.write(raw)

    def write_chunks(self, name, pieces):
        """Append tensor ``name`` from ``pieces``: buffers (e.g. uint8 arrays) that hold its
        little-endian bytes in C order, in turn. Their total must be the declared size."""
        if self._next >= len(self.specs) or self.specs[self._next].name != name:
            self._take(name, None)  # raises the "expected ... next" / "already written" error
        spec, total = self.specs[self._next], 0
        for piece in pieces:
            total += memoryview(piece).nbytes
            if total > spec.nbytes:
                break
            self._f.write(piece)
        if total != spec.nbytes:
            raise ValueError(f"{name}: declared {spec.dtype} {list(spec.shape)} ({spec.nbytes} "
                             f"bytes), got {'more' if total > spec.nbytes else total} bytes")
        self._next += 1

    def close(self):
        """Check every declared tensor was written and flush (the caller closes the file)."""
        self._check_complete()
        self._f.flush()


# --- torch.save zip -------------------------------------------------------------------------
class _StorageRef:
    """Stands for one storage while pickling; its persistent id is what torch.save writes."""

    def __init__(self, key, dtype, numel):
        self.key, self.dtype, self.numel = key, dtype, numel


class _TensorRef:
    """Pickles as ``torch._utils._rebuild_tensor_v2(storage, 0, shape, stride, False, {})``."""

    def __init__(self, storage, shape):
        self.storage, self.shape = storage, tuple(shape)

    def __reduce_ex__(self, protocol):
        import torch._utils

        stride, step = [], 1
        for dim in reversed(self.shape):
            stride.append(step)
            step *= dim
        return (torch._utils._rebuild_tensor_v2,
                (self.storage, 0, self.shape, tuple(reversed(stride)), False,
                 collections.OrderedDict()))


def _storage_class(dtype):
    import torch

    return {"float32": torch.FloatStorage, "float16": torch.HalfStorage,
            "bfloat16": torch.BFloat16Storage, "float64": torch.DoubleStorage,
            "int64": torch.LongStorage, "int32": torch.IntStorage}[dtype]


class TorchZipStreamWriter(_Ordered):
    """Write a ``torch.save``-compatible zip (a state dict) tensor by tensor.

    ``aliases`` maps extra keys to a declared key whose storage they share (tied weights):
    they appear in the loaded dict as the same tensor, as ``torch.save`` would store them.
    """

    def __init__(self, fileobj, specs, aliases=None):
        import torch

        super().__init__(specs)
        self._f = fileobj
        self._done = False
        self._writer = torch._C.PyTorchFileWriter(fileobj)
        refs = {s.name: _TensorRef(_StorageRef(str(i), s.dtype, prod(s.shape)), s.shape)
                for i, s in enumerate(self.specs)}
        state = collections.OrderedDict(refs)
        for alias, target in (aliases or {}).items():
            state[alias] = refs[target]
        self._keys = {s.name: refs[s.name].storage.key for s in self.specs}

        class Pickler(pickle.Pickler):
            def persistent_id(self, obj):
                if isinstance(obj, _StorageRef):
                    return ("storage", _storage_class(obj.dtype), obj.key, "cpu", obj.numel)
                return None

        buf = io.BytesIO()
        Pickler(buf, protocol=2).dump(state)
        data = buf.getvalue()
        with self._abandon_on_error():
            self._writer.write_record("data.pkl", data, len(data))
            self._writer.write_record("byteorder", sys.byteorder, len(sys.byteorder))

    @contextlib.contextmanager
    def _abandon_on_error(self):
        """After a failed write (disk full...), finalise the C++ writer at once.

        Otherwise its destructor retries the end-of-file records on the broken stream and
        throws from a destructor, which aborts the whole process. Finalising marks it done
        even when that attempt fails too; the half-written file is the caller's to discard.
        """
        try:
            yield
        except BaseException:
            self.abort()
            raise

    def write(self, name, array):
        """Append ``array`` as the storage of ``name`` (declared order, declared dtype/shape)."""
        import torch

        _, raw = self._take(name, array)
        # A storage sharing the array's memory: no copy of the tensor is made.
        storage = torch.from_numpy(raw).untyped_storage()
        with self._abandon_on_error():
            self._writer.write_record(f"data/{self._keys[name]}", storage, raw.nbytes)

    def close(self):
        """Write the zip's central directory and flush (the caller closes the file)."""
        self._check_complete()
        with self._abandon_on_error():
            self._writer.write_end_of_file()
        self._done = True
        self._f.flush()

    def __del__(self):
        # Last line of defence: torch's C++ writer finalises in its destructor and aborts the
        # process if that fails (e.g. the file was closed first); finalise it here instead.
        if hasattr(self, "_writer"):
            self.abort()

    def abort(self):
        """Give up on this file (another writer or the reader failed): finalise the C++
        writer now, ignoring errors, so its destructor has nothing left to write."""
        if not self._done:
            self._done = True
            with contextlib.suppress(Exception):
                self._writer.write_end_of_file()


class TorchSaveWriter(_Ordered):
    """The plain fallback of :class:`TorchZipStreamWriter`, with the same interface: keeps a
    copy of every tensor and hands the whole state dict to ``torch.save`` in :meth:`close`.
    Peak memory is then the whole model; used where torch lacks the private zip writer."""

    def __init__(self, fileobj, specs, aliases=None):
        super().__init__(specs)
        self._f, self._aliases = fileobj, dict(aliases or {})
        self._state = collections.OrderedDict()

    def write(self, name, array):
        """Keep a copy of ``array`` (declared order, dtype and shape) as tensor ``name``."""
        import torch

        spec, raw = self._take(name, array)
        tensor = torch.empty(spec.shape, dtype=getattr(torch, spec.dtype))
        if raw.size:  # a copy: the caller may reuse the array's memory
            tensor.reshape(-1).view(torch.uint8).copy_(torch.from_numpy(raw))
        self._state[name] = tensor

    def close(self):
        """``torch.save`` everything written (tied aliases share their target's storage)."""
        import torch

        self._check_complete()
        for alias, target in self._aliases.items():
            self._state[alias] = self._state[target]
        torch.save(self._state, self._f)
        self._state.clear()
        self._f.flush()

    def abort(self):
        """Drop what was kept; nothing has been written yet."""
        self._state.clear()


#: False: :func:`torch_zip_writer` always gives the plain :class:`TorchSaveWriter`.
STREAM_TORCH_ZIP = True


def torch_zip_writer(fileobj, specs, aliases=None):
    """A writer of a ``torch.save`` zip: :class:`TorchZipStreamWriter` (one tensor in memory
    at a time) where torch has the private ``PyTorchFileWriter`` it needs, else
    :class:`TorchSaveWriter`."""
    import torch

    if STREAM_TORCH_ZIP and hasattr(torch._C, "PyTorchFileWriter"):
        return TorchZipStreamWriter(fileobj, specs, aliases)
    return TorchSaveWriter(fileobj, specs, aliases)
