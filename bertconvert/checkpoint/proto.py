"""Just enough protobuf wire format for the messages inside a tensor-bundle index.

We decode and encode by hand instead of depending on TensorFlow's generated classes:

* ``BundleHeaderProto``  1 num_shards int32, 2 endianness enum (0 little, 1 big),
  3 version VersionDef {1 producer, 2 min_consumer, 3 bad_consumers (repeated)}.
* ``BundleEntryProto``   1 dtype enum, 2 shape TensorShapeProto, 3 shard_id int32,
  4 offset int64, 5 size int64, 6 crc32c fixed32 (masked), 7 slices TensorSliceProto (repeated).
* ``TensorShapeProto``   2 dim {1 size int64, 2 name string} (repeated), 3 unknown_rank bool.
* ``TensorSliceProto``   1 extent {1 start int64, 2 length int64; no length = whole dim}.

Unknown fields are skipped, as protobuf requires. Every read is bounds-checked and every
loop advances, so arbitrary bytes give a parsed value or CheckpointFormatError, nothing else.
"""
from dataclasses import dataclass, field
from typing import Optional, Tuple

from ..errors import CheckpointFormatError

_VARINT, _FIXED64, _BYTES, _FIXED32 = 0, 1, 2, 5
_U64 = 1 << 64


class ProtoError(CheckpointFormatError):
    """A protobuf message inside the .index file is malformed."""


def decode_varint(buf, pos, end):
    """Read a base-128 varint from ``buf[pos:end]``; return ``(value, new_pos)``."""
    result = shift = 0
    while True:
        if pos >= end:
            raise ProtoError("varint runs past the end of its message")
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result & (_U64 - 1), pos
        shift += 7
        if shift >= 70:
            raise ProtoError("varint longer than 10 bytes")


def encode_varint(value):
    """Base-128 varint bytes of a non-negative int (negatives as 64-bit two's complement)."""
    if value < 0:
        value += _U64
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _signed(value, bits=64):
    """Reinterpret a decoded varint as a signed intN (int32 negatives are sign-extended)."""
    value &= _U64 - 1
    if value >= 1 << 63:
        value -= _U64
    if bits == 32 and not -(1 << 31) <= value < (1 << 31):
        raise ProtoError(f"int32 field holds out-of-range value {value}")
    return value


def iter_fields(buf, start=0, end=None):
    """Yield ``(field_number, wire_type, value)``; value is an int, or ``(start, end)`` for bytes."""
    end = len(buf) if end is None else end
    pos = start
    while pos < end:
        key, pos = decode_varint(buf, pos, end)
        number, wire = key >> 3, key & 7
        if number == 0:
            raise ProtoError("field number 0 is invalid")
        if wire == _VARINT:
            value, pos = decode_varint(buf, pos, end)
        elif wire == _FIXED64 or wire == _FIXED32:
            width = 8 if wire == _FIXED64 else 4
            if pos + width > end:
                raise ProtoError("fixed-width field runs past the end of its message")
            value = int.from_bytes(buf[pos:pos + width], "little")
            pos += width
        elif wire == _BYTES:
            length, pos = decode_varint(buf, pos, end)
            if length > end - pos:
                raise ProtoError("length-delimited field runs past the end of its message")
            value = (pos, pos + length)
            pos += length
        else:
            raise ProtoError(f"unsupported wire type {wire} (field {number})")
        yield number, wire, value


def _expect(number, wire, want, message):
    if wire != want:
        raise ProtoError(f"{message} field {number} has wire type {wire}, expected {want}")


@dataclass(frozen=True)
class BundleHeader:
    """Decoded ``BundleHeaderProto``."""
    num_shards: int = 0
    endianness: int = 0  # 0 little, 1 big
    producer: int = 0
    min_consumer: int = 0
    bad_consumers: Tuple[int, ...] = ()


@dataclass(frozen=True)
class TensorEntry:
    """Where and how one tensor is stored (decoded ``BundleEntryProto``).

    ``crc32c`` is the *masked* checksum exactly as stored. ``slices`` is non-empty only for
    a partitioned variable: one tuple of ``(start, length or None)`` per stored slice; its
    own offset/size are then unused. ``dtype`` is the numpy dtype (None when there is none),
    ``file`` the shard path (filled in by the reader).
    """
    name: str
    tf_dtype: int
    dtype_name: str
    dtype: object
    shape: Tuple[int, ...]
    shard_id: int = 0
    offset: int = 0
    size: int = 0
    crc32c: int = 0
    slices: Tuple[Tuple[Tuple[int, Optional[int]], ...], ...] = field(default=())
    file: Optional[str] = None


def decode_header(buf):
    """Decode a BundleHeaderProto from bytes."""
    num_shards = endianness = producer = min_consumer = 0
    bad = []
    for number, wire, value in iter_fields(buf):
        if number == 1:
            _expect(number, wire, _VARINT, "BundleHeaderProto")
            num_shards = _signed(value, 32)
        elif number == 2:
            _expect(number, wire, _VARINT, "BundleHeaderProto")
            endianness = _signed(value, 32)
        elif number == 3:
            _expect(number, wire, _BYTES, "BundleHeaderProto")
            for vnum, vwire, vval in iter_fields(buf, *value):
                if vnum in (1, 2) and vwire == _VARINT:
                    if vnum == 1:
                        producer = _signed(vval, 32)
                    else:
                        min_consumer = _signed(vval, 32)
                elif vnum == 3 and vwire == _VARINT:
                    bad.append(_signed(vval, 32))
                elif vnum == 3 and vwire == _BYTES:  # packed repeated int32
                    pos, stop = vval
                    while pos < stop:
                        item, pos = decode_varint(buf, pos, stop)
                        bad.append(_signed(item, 32))
                elif vnum in (1, 2, 3):
                    raise ProtoError(f"VersionDef field {vnum} has wire type {vwire}")
    return BundleHeader(num_shards, endianness, producer, min_consumer, tuple(bad))


def _decode_shape(buf, start, end):
    dims = []
    for number, wire, value in iter_fields(buf, start, end):
        if number == 2:
            _expect(number, wire, _BYTES, "TensorShapeProto")
            size = 0
            for dnum, dwire, dval in iter_fields(buf, *value):
                if dnum == 1:
                    _expect(dnum, dwire, _VARINT, "TensorShapeProto.Dim")
                    size = _signed(dval)
            if size < 0:
                raise ProtoError(f"tensor shape has unknown or negative dimension {size}")
            dims.append(size)
        elif number == 3:
            _expect(number, wire, _VARINT, "TensorShapeProto")
            if value:
                raise ProtoError("tensor shape has unknown rank")
    return tuple(dims)


def _decode_slice(buf, start, end):
    extents = []
    for number, wire, value in iter_fields(buf, start, end):
        if number != 1:
            continue
        _expect(number, wire, _BYTES, "TensorSliceProto")
        begin, length = 0, None
        for enum_, ewire, eval_ in iter_fields(buf, *value):
            if enum_ in (1, 2):
                _expect(enum_, ewire, _VARINT, "TensorSliceProto.Extent")
                if enum_ == 1:
                    begin = _signed(eval_)
                else:
                    length = _signed(eval_)
        if begin < 0 or (length is not None and length < 0):
            raise ProtoError(f"tensor slice has negative extent start={begin} length={length}")
        extents.append((begin, length))
    return tuple(extents)


def decode_entry(name, buf):
    """Decode a BundleEntryProto (for tensor ``name``) into a :class:`TensorEntry`."""
    from .dtypes import numpy_dtype, tf_dtype_name

    tf_dtype = shard_id = offset = size = crc = 0
    shape = ()
    slices = []
    for number, wire, value in iter_fields(buf):
        if number in (1, 3, 4, 5):
            _expect(number, wire, _VARINT, "BundleEntryProto")
            if number == 1:
                tf_dtype = _signed(value, 32)
            elif number == 3:
                shard_id = _signed(value, 32)
            elif number == 4:
                offset = _signed(value)
            else:
                size = _signed(value)
        elif number == 2:
            _expect(number, wire, _BYTES, "BundleEntryProto")
            shape = _decode_shape(buf, *value)
        elif number == 6:
            _expect(number, wire, _FIXED32, "BundleEntryProto")
            crc = value
        elif number == 7:
            _expect(number, wire, _BYTES, "BundleEntryProto")
            slices.append(_decode_slice(buf, *value))
    if shard_id < 0 or offset < 0 or size < 0:
        raise ProtoError(f"entry {name!r} has negative shard_id/offset/size "
                         f"({shard_id}/{offset}/{size})")
    return TensorEntry(name=name, tf_dtype=tf_dtype, dtype_name=tf_dtype_name(tf_dtype),
                       dtype=numpy_dtype(tf_dtype), shape=shape, shard_id=shard_id,
                       offset=offset, size=size, crc32c=crc, slices=tuple(slices))


def _field(number, wire, payload):
    key = encode_varint((number << 3) | wire)
    if wire == _BYTES:
        return key + encode_varint(len(payload)) + payload
    return key + payload


def encode_header(num_shards=1, producer=1):
    """BundleHeaderProto bytes for a little-endian bundle (TensorFlow writes producer 1)."""
    version = _field(1, _VARINT, encode_varint(producer))
    return _field(1, _VARINT, encode_varint(num_shards)) + _field(3, _BYTES, version)


def encode_entry(tf_dtype, shape, shard_id, offset, size, crc32c_masked):
    """BundleEntryProto bytes for an unsliced tensor; zero scalars are omitted like proto3."""
    dims = b"".join(_field(2, _BYTES, _field(1, _VARINT, encode_varint(d)) if d else b"")
                    for d in shape)
    out = [_field(1, _VARINT, encode_varint(tf_dtype)), _field(2, _BYTES, dims)]
    if shard_id:
        out.append(_field(3, _VARINT, encode_varint(shard_id)))
    if offset:
        out.append(_field(4, _VARINT, encode_varint(offset)))
    if size:
        out.append(_field(5, _VARINT, encode_varint(size)))
    out.append(_field(6, _FIXED32, crc32c_masked.to_bytes(4, "little")))
    return b"".join(out)
