"""TensorFlow ``DataType`` enum values and the numpy dtypes they are stored as.

The numbers come from TensorFlow's ``types.proto``; a tensor bundle stores them in
``BundleEntryProto.dtype``. Tensor bytes on disk are little-endian and laid out exactly like
the matching numpy dtype, so reading is a plain byte copy. ``bfloat16`` has no numpy
builtin; like TensorFlow itself we use the ``ml_dtypes`` extension type, imported lazily so
that a missing ``ml_dtypes`` only affects bfloat16 tensors.
"""
import numpy as np

from ..errors import UnsupportedDtypeError

#: Every DataType name we can recognise (so messages can say "DT_RESOURCE", not "20").
TF_DTYPE_NAMES = {
    0: "DT_INVALID", 1: "DT_FLOAT", 2: "DT_DOUBLE", 3: "DT_INT32", 4: "DT_UINT8",
    5: "DT_INT16", 6: "DT_INT8", 7: "DT_STRING", 8: "DT_COMPLEX64", 9: "DT_INT64",
    10: "DT_BOOL", 11: "DT_QINT8", 12: "DT_QUINT8", 13: "DT_QINT32", 14: "DT_BFLOAT16",
    15: "DT_QINT16", 16: "DT_QUINT16", 17: "DT_UINT16", 18: "DT_COMPLEX128", 19: "DT_HALF",
    20: "DT_RESOURCE", 21: "DT_VARIANT", 22: "DT_UINT32", 23: "DT_UINT64",
    24: "DT_FLOAT8_E5M2", 25: "DT_FLOAT8_E4M3FN", 26: "DT_FLOAT8_E4M3FNUZ",
    27: "DT_FLOAT8_E4M3B11FNUZ", 28: "DT_FLOAT8_E5M2FNUZ", 29: "DT_INT4", 30: "DT_UINT4",
}

DT_STRING = 7
DT_BFLOAT16 = 14

#: DataType -> numpy dtype (little-endian), for every type whose bytes are a plain array.
_NUMPY_BY_TF = {
    1: np.dtype("<f4"), 2: np.dtype("<f8"), 3: np.dtype("<i4"), 4: np.dtype("u1"),
    5: np.dtype("<i2"), 6: np.dtype("i1"), 8: np.dtype("<c8"), 9: np.dtype("<i8"),
    10: np.dtype("?"), 17: np.dtype("<u2"), 18: np.dtype("<c16"), 19: np.dtype("<f2"),
    22: np.dtype("<u4"), 23: np.dtype("<u8"),
}

_bfloat16 = None


def bfloat16_dtype():
    """numpy's view of bfloat16 (``ml_dtypes.bfloat16``), the type TensorFlow returns too."""
    global _bfloat16
    if _bfloat16 is None:
        try:
            import ml_dtypes
        except ImportError as e:
            raise UnsupportedDtypeError(
                "bfloat16 tensors need the 'ml_dtypes' package (numpy has no bfloat16); "
                "install it with: pip install ml_dtypes") from e
        _bfloat16 = np.dtype(ml_dtypes.bfloat16)
    return _bfloat16


def tf_dtype_name(tf_dtype):
    """``"DT_FLOAT"`` for 1; ``"DT_UNKNOWN(999)"`` for numbers TensorFlow does not define."""
    return TF_DTYPE_NAMES.get(tf_dtype, f"DT_UNKNOWN({tf_dtype})")


def numpy_dtype(tf_dtype):
    """The numpy dtype holding a tensor of this DataType, or None when there is none.

    ``DT_STRING`` maps to ``object`` (what TensorFlow's reader reports; the reader decodes
    string values separately, see :mod:`.strings`); quantized, resource, variant and
    unknown types map to None.
    """
    if tf_dtype in _NUMPY_BY_TF:
        return _NUMPY_BY_TF[tf_dtype]
    if tf_dtype == DT_BFLOAT16:
        try:
            return bfloat16_dtype()
        except UnsupportedDtypeError:
            return None
    if tf_dtype == DT_STRING:
        return np.dtype(object)
    return None


def is_readable(tf_dtype):
    """True when a tensor of this DataType is a plain numpy array of its stored bytes.

    False for ``DT_STRING``, whose values the reader decodes separately (:mod:`.strings`).
    """
    return tf_dtype in _NUMPY_BY_TF or tf_dtype == DT_BFLOAT16


def tf_dtype_for(np_dtype):
    """The DataType number for a numpy dtype, or raise UnsupportedDtypeError.

    Byte order is ignored (the writer converts big-endian arrays to little-endian first).
    """
    np_dtype = np.dtype(np_dtype)
    if np_dtype.kind in "biufc" and np_dtype.byteorder not in ("=", "|", "<"):
        np_dtype = np_dtype.newbyteorder("<")
    for tf_dtype, candidate in _NUMPY_BY_TF.items():
        if candidate == np_dtype:
            return tf_dtype
    if np_dtype.name == "bfloat16":
        return DT_BFLOAT16
    raise UnsupportedDtypeError(
        f"numpy dtype {np_dtype} has no TensorFlow checkpoint equivalent that bertconvert "
        "writes; expected one of float16/32/64, bfloat16, int8/16/32/64, uint8/16/32/64, "
        "bool, complex64/128 (convert the array with .astype() first)")
