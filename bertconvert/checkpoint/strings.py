"""``DT_STRING`` tensors in a tensor bundle, decoded (and encoded) without TensorFlow.

TensorFlow's BundleWriter stores the ``n`` strings of a string tensor as::

    varint64 len_0 ... varint64 len_{n-1}      the lengths, protobuf varints
    fixed32  masked crc32c of the lengths      little-endian
    bytes_0 ... bytes_{n-1}                    the strings, back to back

The lengths checksum is *not* taken over the varint bytes: each length is fed to crc32c
as a little-endian uint32 (as a uint64 if it does not fit in 32 bits). The entry's own
crc32c continues that same running checksum over the 4 stored checksum bytes and then the
string bytes. An empty tensor is stored as the checksum of nothing (4 bytes).
"""
import struct

from ..errors import CheckpointFormatError, ChecksumMismatchError
from .crc import crc32c, mask, unmask
from .proto import ProtoError, decode_varint, encode_varint

_UINT32_MAX = 0xFFFFFFFF


def _length_bytes(length):
    # TensorFlow's compatibility rule: 4 bytes unless the length needs 8.
    return struct.pack("<I" if length <= _UINT32_MAX else "<Q", length)


def decode_string_tensor(raw, count, stored_crc32c=None, label="string tensor"):
    """Split the stored bytes of a string tensor into ``count`` ``bytes`` objects.

    ``raw`` is the entry's whole byte range; ``stored_crc32c`` the entry's masked crc32c,
    or None to skip both checksums. Any input gives a list or raises CheckpointFormatError
    (layout) / ChecksumMismatchError (checksums); sizes are checked before anything is
    allocated, so a hostile element count cannot exhaust memory.
    """
    raw = bytes(raw)
    size = len(raw)
    if count == 0 and size == 0:  # TensorFlow's reader accepts this too
        return []
    # Every string costs at least one length byte, plus the 4-byte lengths checksum.
    if count + 4 > size:
        raise CheckpointFormatError(
            f"{label}: {count} strings need at least {count + 4} bytes but the entry holds "
            f"{size}: the index is corrupt")
    lengths = []
    pos = 0
    try:
        for _ in range(count):
            length, pos = decode_varint(raw, pos, size - 4)
            lengths.append(length)
    except ProtoError as e:
        raise CheckpointFormatError(f"{label}: the string lengths run past the lengths "
                                    f"area ({e}): the data is corrupt") from e
    body = pos + 4
    total = sum(lengths)
    if body + total != size:
        raise CheckpointFormatError(
            f"{label}: the string lengths add up to {total} bytes but the entry holds "
            f"{size - body} after the lengths: the data or the index is corrupt")
    if stored_crc32c is not None:
        running = crc32c(b"".join(_length_bytes(n) for n in lengths))
        lengths_crc = int.from_bytes(raw[pos:body], "little")
        if unmask(lengths_crc) != running:
            raise ChecksumMismatchError(
                f"{label}: the checksum of the string lengths does not match (stored "
                f"{lengths_crc:#010x}, computed {mask(running):#010x}): the data is corrupt; "
                "copy or download the checkpoint again")
        running = crc32c(raw[body:], crc32c(raw[pos:body], running))
        if mask(running) != stored_crc32c:
            raise ChecksumMismatchError(
                f"{label} fails its crc32c check (stored {stored_crc32c:#010x}, computed "
                f"{mask(running):#010x}): the data shard is corrupt; copy or download it again")
    out = []
    for length in lengths:
        out.append(raw[body:body + length])
        body += length
    return out


def encode_string_tensor(values):
    """``(payload, masked_crc32c)`` for a sequence of ``bytes``, laid out as TensorFlow does.

    The inverse of :func:`decode_string_tensor`; used to build test checkpoints.
    """
    values = [bytes(v) for v in values]
    lengths = b"".join(encode_varint(len(v)) for v in values)
    running = crc32c(b"".join(_length_bytes(len(v)) for v in values))
    checksum = mask(running).to_bytes(4, "little")
    body = b"".join(values)
    running = crc32c(body, crc32c(checksum, running))
    return lengths + checksum + body, mask(running)
