"""CRC-32C (Castagnoli) as TensorFlow checkpoints use it, computed in C without copies.

``google-crc32c``'s Python functions only accept ``bytes``, which would force a copy of
every tensor. Its C library exports ``crc32c_extend(crc, ptr, len)``, so we call that
through ctypes with the numpy array's own pointer (ctypes also releases the GIL). If the
symbol cannot be found we fall back to the Python binding over 4 MiB chunks (one small,
cache-resident copy at a time), and only as a last resort to its pure-Python code.
"""
import ctypes
import logging

import numpy as np

from ..errors import MissingDependencyError

log = logging.getLogger(__name__)

_MASK_DELTA = 0xA282EAD8
_CHUNK = 4 << 20
_CHECK_INPUT, _CHECK_VALUE = b"123456789", 0xE3069283  # the standard CRC-32C check value

_impl = None


def mask(crc):
    """TensorFlow/LevelDB masking: rotate right by 15 bits and add a constant.

    Stored checksums are masked so that a crc of data that itself contains crcs stays
    well distributed.
    """
    return (((crc >> 15) | (crc << 17)) + _MASK_DELTA) & 0xFFFFFFFF


def unmask(masked):
    """Inverse of :func:`mask`."""
    rot = (masked - _MASK_DELTA) & 0xFFFFFFFF
    return ((rot >> 17) | (rot << 15)) & 0xFFFFFFFF


def _load_ctypes_impl():
    from google_crc32c import _crc32c  # the compiled extension, linked to libcrc32c

    lib = ctypes.CDLL(_crc32c.__file__)
    extend = lib.crc32c_extend  # resolved through the extension's own dependencies
    extend.restype = ctypes.c_uint32
    extend.argtypes = [ctypes.c_uint32, ctypes.c_void_p, ctypes.c_size_t]

    def crc(view, value):
        return extend(value, view.ctypes.data, view.nbytes)

    return crc


def _load_chunked_impl():
    import google_crc32c

    if google_crc32c.implementation != "c":
        log.warning("google-crc32c has no C extension here; checksums will be very slow "
                    "(reinstall google-crc32c from a binary wheel, or pass "
                    "verify_checksums=False)")

    def crc(view, value):
        for start in range(0, view.nbytes, _CHUNK):
            value = google_crc32c.extend(value, view[start:start + _CHUNK].tobytes())
        return value

    return crc


def _implementation():
    global _impl
    if _impl is None:
        for loader in (_load_ctypes_impl, _load_chunked_impl):
            try:
                candidate = loader()
            except (ImportError, OSError, AttributeError) as e:  # no extension/library/symbol
                log.debug("crc32c loader %s unavailable: %s", loader.__name__, e)
                continue
            if candidate(np.frombuffer(_CHECK_INPUT, np.uint8), 0) == _CHECK_VALUE:
                _impl = candidate
                break
        else:
            raise MissingDependencyError(
                "checksums of TensorFlow checkpoints need a working google-crc32c; install "
                "it with: pip install --force-reinstall google-crc32c")
    return _impl


def crc32c(data, crc=0):
    """Unmasked CRC-32C of a bytes-like object or C-contiguous numpy array, without copying.

    Pass the crc of the preceding bytes as ``crc`` to continue a running checksum.

    Example::

        >>> hex(crc32c(b"123456789"))
        '0xe3069283'
        >>> crc32c(b"6789", crc32c(b"12345")) == crc32c(b"123456789")
        True
    """
    if isinstance(data, np.ndarray):
        if not data.flags.c_contiguous:
            raise ValueError("crc32c needs a C-contiguous array (use np.ascontiguousarray)")
        view = data.reshape(-1).view(np.uint8)
    else:
        view = np.frombuffer(data, dtype=np.uint8)
    if view.nbytes == 0:
        return crc
    return _implementation()(view, crc)


def masked_crc32c(data):
    """The masked CRC-32C that checkpoint files store."""
    return mask(crc32c(data))
