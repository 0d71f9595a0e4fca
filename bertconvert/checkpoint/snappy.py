"""A small, strict decoder for raw Snappy blocks (no framing format).

TensorFlow's table writer compresses blocks with Snappy by default (tensor bundles turn it
off, but other writers may not), so the index reader must understand it. A Snappy block is
a varint with the uncompressed length followed by elements: literals, and copies of earlier
output given as (offset back, length). Index blocks are small, so plain Python is fast
enough. We never trust the declared length for allocation: output grows as elements are
decoded and the first byte beyond the declared length is an error, so work and memory are
bounded by the input size (an element of >= 2 bytes yields at most 64 bytes).
"""
from ..errors import CheckpointFormatError

_LITERAL, _COPY1, _COPY2, _COPY4 = 0, 1, 2, 3


class SnappyError(CheckpointFormatError):
    """A Snappy-compressed block is corrupt."""


def _fail(what):
    raise SnappyError(f"snappy-compressed block is corrupt: {what}")


def uncompressed_length(data):
    """The length a Snappy block says it decodes to (its leading varint32)."""
    result = shift = 0
    for pos in range(min(len(data), 5)):
        byte = data[pos]
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            if result > 0xFFFFFFFF:
                _fail("length preamble exceeds 32 bits")
            return result, pos + 1
        shift += 7
    _fail("length preamble is truncated or longer than 5 bytes")


def decompress(data):
    """Decode one raw Snappy block to bytes; raise SnappyError on any inconsistency.

    Example::

        >>> decompress(b"\\x05\\x10hello")
        b'hello'
    """
    data = bytes(data)
    expected, pos = uncompressed_length(data)
    out = bytearray()
    end = len(data)
    while pos < end:
        tag = data[pos]
        pos += 1
        kind = tag & 3
        if kind == _LITERAL:
            length = tag >> 2
            if length >= 60:  # the next (length - 59) bytes hold length - 1, little-endian
                nbytes = length - 59
                if pos + nbytes > end:
                    _fail("literal length runs past the end of the block")
                length = int.from_bytes(data[pos:pos + nbytes], "little")
                pos += nbytes
            length += 1
            if pos + length > end:
                _fail(f"literal of {length} bytes runs past the end of the block")
            if len(out) + length > expected:
                _fail(f"output exceeds the declared {expected} bytes")
            out += data[pos:pos + length]
            pos += length
            continue
        if kind == _COPY1:
            if pos + 1 > end:
                _fail("copy element is truncated")
            length = 4 + ((tag >> 2) & 7)
            offset = ((tag >> 5) << 8) | data[pos]
            pos += 1
        else:
            nbytes = 2 if kind == _COPY2 else 4
            if pos + nbytes > end:
                _fail("copy element is truncated")
            length = 1 + (tag >> 2)
            offset = int.from_bytes(data[pos:pos + nbytes], "little")
            pos += nbytes
        if offset == 0 or offset > len(out):
            _fail(f"copy offset {offset} points outside the {len(out)} bytes decoded so far")
        if len(out) + length > expected:
            _fail(f"output exceeds the declared {expected} bytes")
        start = len(out) - offset
        if offset >= length:
            out += out[start:start + length]
        else:
            # An overlapping copy repeats the last `offset` bytes (run-length style).
            pattern = bytes(out[start:])
            out += (pattern * (length // offset + 1))[:length]
    if len(out) != expected:
        _fail(f"decoded {len(out)} bytes but the block declares {expected}")
    return bytes(out)
