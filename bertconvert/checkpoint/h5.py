"""Keras 3 ``.weights.h5`` files read as a tensor source, with h5py and without Keras.

:class:`H5WeightsReader` offers what the converter's
:class:`~bertconvert.convert.tensors.TensorCopier` asks of a checkpoint reader (``prefix``,
``files``, ``entry(name)``, ``get_tensor(name)``), so a KerasHub preset goes through the same
plan -> tensors -> writer line as a TF bundle. Tensor names are ``FILE/PATH``: the file's
base name and the dataset's path inside it, e.g.
``model.weights.h5/layers/transformer_encoder_3/_feedforward_output_dense/vars/0``.

bfloat16: Keras stores each bfloat16 variable as a 2-byte HDF5 OPAQUE dataset with the
attribute ``dtype="bfloat16"`` (h5py alone returns raw ``V2`` bytes); those bytes are
reinterpreted as ``ml_dtypes.bfloat16``, exactly. h5py is imported on first use; without it a
:class:`~bertconvert.errors.MissingDependencyError` names the extra to install.
"""
import os
from dataclasses import dataclass

import numpy as np

from ..errors import MissingDependencyError, PresetFormatError
from .dtypes import bfloat16_dtype

#: HDF5 files start with this signature (at offset 0 for files h5py/Keras write).
HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
_PLAIN = {"float16", "float32", "float64"}


def import_h5py():
    """h5py, or MissingDependencyError with the way to install it."""
    try:
        import h5py
    except ImportError as e:
        raise MissingDependencyError(
            f"reading a KerasHub preset's .weights.h5 needs h5py, which cannot be imported "
            f"here ({e}); install it with: pip install 'bertconvert[keras]' (or pip install "
            "h5py)") from e
    return h5py


@dataclass(frozen=True)
class H5Entry:
    """What the copier asks of an index entry; ``file=None`` makes it call ``get_tensor``."""

    name: str
    shape: tuple
    dtype_name: str      # float32, bfloat16, ... (the stored dtype)
    file: str = None
    slices: tuple = ()


class H5WeightsReader:
    """Every dataset of one or more ``.weights.h5`` files, by ``FILE/PATH`` name.

    Each file is checked for the HDF5 signature and opened once (read-only) on construction;
    a truncated or foreign file is :class:`~bertconvert.errors.PresetFormatError`.
    """

    verify_checksums = False  # HDF5 datasets carry no checksum of their own here

    def __init__(self, paths, prefix=None):
        h5py = import_h5py()
        self.files = [os.fspath(p) for p in paths]
        self.prefix = prefix or os.path.dirname(self.files[0])
        self._handles, self._entries = {}, {}
        try:
            for path in self.files:
                self._open(h5py, path)
        except BaseException:
            self.close()
            raise

    def _open(self, h5py, path):
        base = os.path.basename(path)
        with open(path, "rb") as f:
            head = f.read(len(HDF5_SIGNATURE))
        if head != HDF5_SIGNATURE:
            raise PresetFormatError(f"{path} is not an HDF5 file (it starts with {head[:8]!r}, "
                                    "not the HDF5 signature); a Keras .weights.h5 is expected")
        try:
            handle = h5py.File(path, "r")
        except OSError as e:  # h5py says "truncated file: eof = ..." and the like
            raise PresetFormatError(f"{path} cannot be read as HDF5 ({e}): the file is "
                                    "truncated or corrupt; copy or download it again") from e
        self._handles[base] = handle
        found = []

        def visit(name, obj):
            if isinstance(obj, h5py.Dataset):
                found.append((name, obj))
        try:
            handle.visititems(visit)
        except (OSError, RuntimeError, KeyError, ValueError, TypeError) as e:
            raise PresetFormatError(f"{path}: the HDF5 structure cannot be read ({e}); the "
                                    "file is truncated or corrupt") from e
        for name, ds in found:
            full = f"{base}/{name}"
            # Data kept in other files (external storage, virtual datasets) would have us read
            # and publish bytes from anywhere on the machine: a weights file never needs it.
            if ds.external or ds.is_virtual:
                raise PresetFormatError(f"dataset {name} of {path} keeps its data in other "
                                        "files (HDF5 external or virtual storage); a Keras "
                                        ".weights.h5 holds its own bytes")
            self._entries[full] = H5Entry(full, tuple(int(d) for d in ds.shape),
                                          self._dtype_name(full, ds))

    @staticmethod
    def _dtype_name(name, ds):
        declared = ds.attrs.get("dtype")
        if isinstance(declared, bytes):
            declared = declared.decode("ascii", "replace")
        if ds.dtype.kind == "V" and ds.dtype.itemsize == 2 and declared == "bfloat16":
            return "bfloat16"
        if ds.dtype.name in _PLAIN or ds.dtype.kind in "iub":
            return ds.dtype.name
        return f"unsupported({ds.dtype}{', ' + declared if declared else ''})"

    # -- the reader protocol ---------------------------------------------------------------
    @property
    def names(self):
        """Every dataset name, in file order then path order."""
        return list(self._entries)

    def entry(self, name):
        try:
            return self._entries[name]
        except KeyError:
            raise PresetFormatError(f"no dataset {name!r} in {', '.join(self.files)}") from None

    def shape(self, name):
        return self.entry(name).shape

    def get_tensor(self, name):
        """The dataset as a numpy array (bfloat16 as ``ml_dtypes.bfloat16``, bit for bit)."""
        entry = self.entry(name)
        base, path = name.split("/", 1)
        try:
            raw = self._handles[base][path][()]
        except (OSError, RuntimeError, KeyError, ValueError, TypeError) as e:
            raise PresetFormatError(f"cannot read dataset {path} of {base} ({e}): the file "
                                    "is truncated or corrupt; copy or download it again") from e
        raw = np.asarray(raw)
        if entry.dtype_name == "bfloat16":
            return raw.view(np.uint16).view(bfloat16_dtype()).reshape(entry.shape)
        if entry.dtype_name.startswith("unsupported"):
            raise PresetFormatError(f"dataset {name} has a dtype bertconvert cannot convert: "
                                    f"{entry.dtype_name}")
        return raw

    def close(self):
        for handle in self._handles.values():
            try:
                handle.close()
            except Exception:  # closing is best effort; the first error is the news
                pass
        self._handles.clear()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
