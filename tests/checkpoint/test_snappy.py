"""The Snappy block decoder, and snappy-compressed .index tables end to end.

The tests carry their own small Snappy *encoder* (the library only needs to decode) that
can be told which copy element to prefer, so every element kind is exercised; TensorFlow
reading the same compressed tables cross-checks both sides.
"""
import os
import shutil

import numpy as np
import pytest

from bertconvert.checkpoint import load_checkpoint
from bertconvert.checkpoint import snappy
from bertconvert.checkpoint.table import SNAPPY_COMPRESSION, build_table, read_table
from bertconvert.errors import CheckpointFormatError

FIXTURES = os.path.join(os.path.dirname(__file__), "..", "..", "fixtures", "tf_checkpoints")


# --- a test-only encoder ---------------------------------------------------------------
def _varint(n):
    out = bytearray()
    while n >= 0x80:
        out.append(n & 0x7F | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _literal(chunk):
    n = len(chunk) - 1
    if n < 60:
        return bytes([n << 2]) + chunk
    width = (n.bit_length() + 7) // 8
    return bytes([(59 + width) << 2]) + n.to_bytes(width, "little") + chunk


def _copy(offset, length, prefer):
    out = bytearray()
    while length:
        if prefer == "copy1" and 4 <= length <= 11 and offset < 2048:
            out += bytes([((offset >> 8) << 5) | ((length - 4) << 2) | 1, offset & 0xFF])
            return bytes(out)
        # keep a remainder of >= 4 available for a 1-byte-offset copy when preferred
        step = min(length, 64) if length - 64 >= 4 or length <= 64 else 60
        if prefer != "copy4" and offset < 65536:
            out += bytes([((step - 1) << 2) | 2]) + offset.to_bytes(2, "little")
        else:
            out += bytes([((step - 1) << 2) | 3]) + offset.to_bytes(4, "little")
        length -= step
    return bytes(out)


def snappy_compress(data, prefer="copy1"):
    """Greedy Snappy encoder: 4-byte hash matches, overlapping copies allowed."""
    data = bytes(data)
    out = bytearray(_varint(len(data)))
    table, i, literal_start = {}, 0, 0
    while i + 4 <= len(data):
        key = data[i:i + 4]
        j = table.get(key)
        table[key] = i
        if j is None:
            i += 1
            continue
        length = 4
        while i + length < len(data) and data[j + length] == data[i + length]:
            length += 1
        if literal_start < i:
            out += _literal(data[literal_start:i])
        out += _copy(i - j, length, prefer)
        i += length
        literal_start = i
    if literal_start < len(data):
        out += _literal(data[literal_start:])
    return bytes(out)


# --- decoder ---------------------------------------------------------------------------
def test_known_blocks():
    assert snappy.decompress(b"\x05\x10hello") == b"hello"
    # literal "abc" then an overlapping 1-byte-offset copy (offset 3, length 9)
    assert snappy.decompress(b"\x0c\x08abc\x15\x03") == b"abc" * 4
    assert snappy.decompress(b"\x00") == b""


@pytest.mark.parametrize("prefer", ["copy1", "copy2", "copy4"])
@pytest.mark.parametrize("data", [
    b"",
    b"x",
    b"a" * 1000,                                              # long overlapping runs
    bytes(range(256)) * 3,                                   # distant copies
    b"bert/encoder/layer_%d/attention/self/query/kernel" * 40,
    np.random.default_rng(0).integers(0, 4, 5000, dtype=np.uint8).tobytes(),
    np.random.default_rng(1).bytes(300),                     # incompressible: long literals
    b"abcd" * 20000,                                         # offsets > 2048 when preferred
])
def test_roundtrip(data, prefer):
    compressed = snappy_compress(data, prefer)
    assert snappy.decompress(compressed) == data


def test_long_literal_length_bytes():
    data = np.random.default_rng(2).bytes(70000)  # needs a 3-byte literal length
    assert snappy.decompress(snappy_compress(data)) == data


@pytest.mark.parametrize("block, fragment", [
    (b"", "preamble"),
    (b"\xff\xff\xff\xff\xff\x01", "preamble"),
    (b"\x05\x10hel", "runs past"),                # literal longer than the input
    (b"\x03\x10hello", "exceeds the declared"),   # more output than declared
    (b"\x08\x10hello", "declares"),               # less output than declared
    (b"\x05\x15\x03", "offset"),                  # copy before any output
    (b"\x09\x08abc\x15\x09", "offset"),           # copy reaching before the start
    (b"\x09\x08abc\x02\x03", "truncated"),        # 2-byte-offset copy cut short
    (b"\x09\x08abc\x15", "truncated"),
    (b"\x09\xf0", "literal length"),              # literal length bytes missing
])
def test_corrupt_blocks_raise(block, fragment):
    with pytest.raises(CheckpointFormatError, match=fragment):
        snappy.decompress(block)


# --- snappy-compressed index tables ----------------------------------------------------
def _compressed_copy(tmp_path, case, prefer, block_size=256):
    src = os.path.join(FIXTURES, case)
    dst = tmp_path / case
    shutil.copytree(src, dst)
    prefix = load_checkpoint(str(dst)).prefix
    with open(prefix + ".index", "rb") as f:
        items = read_table(f.read())
    blocks = []

    def compress(block):
        blocks.append(block)
        return SNAPPY_COMPRESSION, snappy_compress(block, prefer)

    table = build_table(items, block_size=block_size, restart_interval=4, compress=compress)
    with open(prefix + ".index", "wb") as f:
        f.write(table)
    # several data blocks + index + metaindex, and no block stored verbatim
    assert len(blocks) > 3 and all(block not in table for block in blocks if len(block) > 64)
    return prefix


@pytest.mark.parametrize("prefer", ["copy1", "copy2", "copy4"])
def test_snappy_index_reads_like_the_original(tmp_path, prefer):
    original = load_checkpoint(os.path.join(FIXTURES, "savev2_dtypes"))
    prefix = _compressed_copy(tmp_path, "savev2_dtypes", prefer)
    reader = load_checkpoint(prefix)
    assert reader.get_variable_to_shape_map() == original.get_variable_to_shape_map()
    for name in original:
        if original.entry(name).dtype_name != "DT_STRING":
            assert reader.get_tensor(name).tobytes() == original.get_tensor(name).tobytes()


@pytest.mark.tf
def test_tensorflow_reads_our_snappy_tables(tmp_path):
    tf = pytest.importorskip("tensorflow")
    prefix = _compressed_copy(tmp_path, "partitioned", "copy1", block_size=64)
    ours = load_checkpoint(prefix)
    theirs = tf.train.load_checkpoint(prefix)
    assert theirs.get_variable_to_shape_map() == ours.get_variable_to_shape_map()
    for name in ours:
        assert theirs.get_tensor(name).tobytes() == ours.get_tensor(name).tobytes()
