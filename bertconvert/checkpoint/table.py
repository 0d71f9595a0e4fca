"""The sorted key/value table (LevelDB's SSTable format) that a checkpoint ``.index`` is.

Layout, from the end of the file backwards:

* a 48-byte footer: two block handles (varint offset + varint size) for the metaindex and
  index blocks, zero padding to 40 bytes, then the 8-byte magic ``0xdb4775248b80fb57``
  (little-endian);
* the index block: one entry per data block, key >= every key in that block, value = the
  block's handle;
* data blocks holding the entries in key order.

Every block is followed by a 5-byte trailer: a compression byte (0 none, 1 snappy) and the
masked CRC-32C of block + compression byte. Inside a block, each entry is
``varint shared, varint non_shared, varint value_len, key[shared:], value``: a key repeats
the first ``shared`` bytes of the key before it, except at "restart points" (listed as
uint32 offsets at the block's end, followed by their count) where ``shared`` is 0.

The reader checks every bound, every block crc, key order, and that data blocks do not
overlap, so any byte string yields entries or CheckpointFormatError in linear time.
"""
import struct

from ..errors import CheckpointFormatError
from . import snappy
from .crc import masked_crc32c
from .proto import ProtoError, decode_varint, encode_varint

MAGIC = 0xDB4775248B80FB57
FOOTER_SIZE = 48
TRAILER_SIZE = 5
NO_COMPRESSION, SNAPPY_COMPRESSION = 0, 1

#: TensorFlow's defaults (table_options.h): 256 KiB blocks, a restart every 16 keys.
BLOCK_SIZE = 256 * 1024
RESTART_INTERVAL = 16


class TableFormatError(CheckpointFormatError):
    """The .index file is not a well-formed table."""


def _handle(buf, pos, end, what):
    try:
        offset, pos = decode_varint(buf, pos, end)
        size, pos = decode_varint(buf, pos, end)
    except ProtoError as e:
        raise TableFormatError(f"{what} block handle in the footer is malformed") from e
    return offset, size, pos


def read_block(data, offset, size, verify=True, what="data"):
    """Return the (decompressed) contents of the block at ``offset`` with ``size`` bytes."""
    limit = len(data) - FOOTER_SIZE
    if offset + size + TRAILER_SIZE > limit:
        raise TableFormatError(
            f"{what} block at offset {offset} (+{size} bytes) lies outside the "
            f"{len(data)}-byte file: the .index file is truncated or corrupt")
    contents = data[offset:offset + size]
    kind = data[offset + size]
    if verify:
        stored = int.from_bytes(data[offset + size + 1:offset + size + TRAILER_SIZE], "little")
        actual = masked_crc32c(data[offset:offset + size + 1])
        if stored != actual:
            raise TableFormatError(
                f"{what} block at offset {offset} fails its crc32c check (stored {stored:#010x},"
                f" computed {actual:#010x}): the .index file is corrupt")
    if kind == NO_COMPRESSION:
        return contents
    if kind == SNAPPY_COMPRESSION:
        return snappy.decompress(contents)
    raise TableFormatError(f"{what} block at offset {offset} uses unknown compression "
                           f"type {kind}; expected 0 (none) or 1 (snappy)")


def iter_block(block, what="data"):
    """Yield ``(key, value)`` bytes pairs of one decoded block, in stored order."""
    if len(block) < 4:
        raise TableFormatError(f"{what} block of {len(block)} bytes is too short")
    num_restarts = struct.unpack_from("<I", block, len(block) - 4)[0]
    if num_restarts * 4 > len(block) - 4:
        raise TableFormatError(f"{what} block claims {num_restarts} restart points but "
                               f"has only {len(block)} bytes")
    end = len(block) - 4 - num_restarts * 4
    pos = 0
    key = b""
    try:
        while pos < end:
            shared, pos = decode_varint(block, pos, end)
            non_shared, pos = decode_varint(block, pos, end)
            value_len, pos = decode_varint(block, pos, end)
            if shared > len(key) or non_shared + value_len > end - pos:
                raise TableFormatError(f"{what} block entry at byte {pos} is inconsistent "
                                       "(shares more key than exists or overruns the block)")
            key = key[:shared] + block[pos:pos + non_shared]
            pos += non_shared
            yield key, block[pos:pos + value_len]
            pos += value_len
    except ProtoError as e:
        raise TableFormatError(f"{what} block entry has a malformed length: {e}") from e


def read_table(data, verify_checksums=True):
    """Parse a whole table held in ``data`` (bytes); return its ``[(key, value)]`` in order.

    Example::

        >>> read_table(build_table([(b"a", b"1"), (b"b", b"2")]))
        [(b'a', b'1'), (b'b', b'2')]
    """
    data = bytes(data)
    if len(data) < FOOTER_SIZE:
        raise TableFormatError(f"file is {len(data)} bytes, shorter than the {FOOTER_SIZE}-byte "
                               "table footer: it is truncated or not a checkpoint index")
    magic = int.from_bytes(data[-8:], "little")
    if magic != MAGIC:
        raise TableFormatError(f"bad magic number {magic:#018x} (expected {MAGIC:#018x}): "
                               "not a TensorFlow checkpoint .index file, or truncated")
    footer_start = len(data) - FOOTER_SIZE
    _, _, pos = _handle(data, footer_start, len(data) - 8, "metaindex")
    index_offset, index_size, _ = _handle(data, pos, len(data) - 8, "index")
    index = read_block(data, index_offset, index_size, verify_checksums, "index")
    entries = []
    next_free = 0  # data blocks are written back to back; overlap means corruption
    for _, handle in iter_block(index, "index"):
        offset, size, used = _handle(handle, 0, len(handle), "data")
        if offset < next_free:
            raise TableFormatError(f"data block at offset {offset} overlaps the previous block")
        next_free = offset + size + TRAILER_SIZE
        block = read_block(data, offset, size, verify_checksums, "data")
        for key, value in iter_block(block):
            if entries and key <= entries[-1][0]:
                raise TableFormatError(f"keys out of order at {key[:80]!r}: the table is corrupt")
            entries.append((key, value))
    return entries


def _block_bytes(entries, restart_interval):
    out = bytearray()
    restarts = []
    previous = b""
    for i, (key, value) in enumerate(entries):
        shared = 0
        if i % restart_interval == 0:  # a restart point stores its key in full
            restarts.append(len(out))
        else:
            limit = min(len(previous), len(key))
            while shared < limit and previous[shared] == key[shared]:
                shared += 1
        out += encode_varint(shared) + encode_varint(len(key) - shared) + encode_varint(len(value))
        out += key[shared:] + value
        previous = key
    if not restarts:
        restarts.append(0)
    out += b"".join(struct.pack("<I", r) for r in restarts) + struct.pack("<I", len(restarts))
    return bytes(out)


def build_table(items, block_size=BLOCK_SIZE, restart_interval=RESTART_INTERVAL, compress=None):
    """Serialise sorted ``(key, value)`` bytes pairs as a table; return the file's bytes.

    Blocks are stored uncompressed unless ``compress(block) -> (type_byte, payload)`` is
    given (tests use it to produce snappy blocks). Keys must be strictly increasing.
    """
    out = bytearray()

    def emit(block):
        kind, payload = compress(block) if compress else (NO_COMPRESSION, block)
        offset = len(out)
        trailer_head = payload + bytes([kind])
        out.extend(trailer_head)
        out.extend(struct.pack("<I", masked_crc32c(trailer_head)))
        return encode_varint(offset) + encode_varint(len(payload))

    index_entries = []
    pending, pending_bytes = [], 0
    previous = None
    for key, value in items:
        if previous is not None and key <= previous:
            raise ValueError(f"table keys must be strictly increasing: {key!r} after {previous!r}")
        previous = key
        pending.append((key, value))
        pending_bytes += len(key) + len(value) + 8
        if pending_bytes >= block_size:
            # The last key of a block is a valid index key: >= all keys in it, < the next.
            index_entries.append((pending[-1][0], emit(_block_bytes(pending, restart_interval))))
            pending, pending_bytes = [], 0
    if pending:
        index_entries.append((pending[-1][0], emit(_block_bytes(pending, restart_interval))))
    metaindex = emit(_block_bytes([], restart_interval))
    index = emit(_block_bytes(index_entries, 1))
    footer = (metaindex + index).ljust(FOOTER_SIZE - 8, b"\0") + MAGIC.to_bytes(8, "little")
    out += footer
    return bytes(out)
