"""Partitioned (sliced) variables: where their pieces are stored and how they fit together.

A variable saved in pieces (``tf.compat.v1`` partitioners) has one entry under its own
name that lists its slices but holds no bytes; each slice is stored under a binary key
that TensorFlow builds with its "OrderedCode" encoding::

    NumIncreasing(0) · String(name) · NumIncreasing(rank) · per dim: SignedNumIncreasing(start),
    SignedNumIncreasing(length)            (a whole dimension is start 0, length -1)

Those keys start with byte 0, so they sort before every ordinary name; the reader hides
them and serves the assembled variable under its real name.
"""
from ..errors import CheckpointFormatError

# SignedNumIncreasing: header bits that mark an encoding of n bytes (index n).
_HEADER_BITS = [(0, 0), (0x80, 0), (0xC0, 0), (0xE0, 0), (0xF0, 0), (0xF8, 0), (0xFC, 0),
                (0xFE, 0), (0xFF, 0), (0xFF, 0x80), (0xFF, 0xC0)]


def _num_increasing(value):
    """OrderedCode unsigned encoding: one length byte, then big-endian bytes without zeros."""
    body = value.to_bytes((value.bit_length() + 7) // 8, "big") if value else b""
    return bytes([len(body)]) + body


def _string(value):
    """OrderedCode string encoding: 0x00 -> 00 ff, 0xff -> ff 00, terminated by 00 01."""
    return value.replace(b"\x00", b"\x00\xff").replace(b"\xff", b"\xff\x00") + b"\x00\x01"


def _signed_num_increasing(value):
    """OrderedCode signed encoding: the length is unary-coded in the leading bits."""
    magnitude = ~value if value < 0 else value
    if magnitude < 64:
        return bytes([(0x80 ^ value) & 0xFF])
    # n bytes carry 7n - 1 bits of magnitude (n header bits and one sign bit).
    length = (magnitude.bit_length() + 1 + 6) // 7
    if length > 10:
        raise ValueError(f"{value} does not fit in a signed 64-bit slice bound")
    raw = bytearray((value & ((1 << 80) - 1)).to_bytes(10, "big"))[10 - length:]
    raw[0] ^= _HEADER_BITS[length][0]
    raw[1] ^= _HEADER_BITS[length][1]
    return bytes(raw)


def slice_key(name, extents):
    """The table key of one stored slice of variable ``name`` (bytes).

    ``extents`` is one ``(start, length or None)`` per dimension; None means the whole dim.
    """
    key = _num_increasing(0) + _string(name) + _num_increasing(len(extents))
    for start, length in extents:
        key += _signed_num_increasing(start) + _signed_num_increasing(-1 if length is None else length)
    return key


def slice_bounds(extents, full_shape, name):
    """Turn extents into ``[(start, stop)]`` per dim of ``full_shape``, checking they fit."""
    if len(extents) != len(full_shape):
        raise CheckpointFormatError(
            f"partitioned variable {name!r}: a slice has {len(extents)} dimensions but the "
            f"variable has shape {list(full_shape)}")
    bounds = []
    for (start, length), dim in zip(extents, full_shape):
        stop = dim if length is None else start + length
        if length is None and start != 0 or stop > dim:
            raise CheckpointFormatError(
                f"partitioned variable {name!r}: slice {extents} lies outside shape "
                f"{list(full_shape)}")
        bounds.append((start, stop))
    return bounds


def check_coverage(name, full_shape, all_bounds):
    """Raise unless the slices tile the variable exactly (no gaps, no overlaps).

    Overlaps are found with a sweep along the axis whose slices start at the most distinct
    places (the partitioned axis): a slice is compared only with those still open there, so
    the usual partitioning costs O(n log n) however many slices a hostile index lists.
    """
    total = 1
    for dim in full_shape:
        total *= dim
    boxes = [b for b in all_bounds if all(stop > start for start, stop in b)]
    covered = sum(_volume(b) for b in all_bounds)
    if boxes and full_shape:
        axis = max(range(len(full_shape)), key=lambda d: len({b[d][0] for b in boxes}))
        open_boxes = []
        for bounds in sorted(boxes, key=lambda b: b[axis][0]):
            start = bounds[axis][0]
            open_boxes = [o for o in open_boxes if o[axis][1] > start]
            for other in open_boxes:
                if all(max(a0, b0) < min(a1, b1) for (a0, a1), (b0, b1) in zip(bounds, other)):
                    raise CheckpointFormatError(
                        f"partitioned variable {name!r}: slices {bounds} and {other} overlap")
            open_boxes.append(bounds)
    if covered != total:
        raise CheckpointFormatError(
            f"partitioned variable {name!r}: its slices cover {covered} of {total} elements; "
            "the checkpoint is incomplete (was it saved from only some partitions?)")


def _volume(bounds):
    volume = 1
    for start, stop in bounds:
        volume *= stop - start
    return volume
