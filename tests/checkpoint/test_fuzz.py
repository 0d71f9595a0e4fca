"""Fuzz the index parser, Snappy decoder and tensor reads for a bounded number of examples.

Contract: any input yields a parsed result or a CheckpointError; never another exception,
never a hang (pytest-timeout enforces the bound), never an array that is silently wrong.
Inputs range from raw bytes (mostly rejected at the footer) to well-framed tables with
valid block checksums around random contents, so the deeper layers get exercised too.
"""
import os

import numpy as np
import pytest
from hypothesis import example, HealthCheck, given, settings
from hypothesis import strategies as st

from bertconvert.checkpoint import load_checkpoint, parse_index, snappy
from bertconvert.checkpoint.crc import masked_crc32c
from bertconvert.checkpoint.dtypes import DT_STRING, numpy_dtype
from bertconvert.checkpoint.proto import encode_entry, encode_header, encode_varint
from bertconvert.checkpoint.strings import encode_string_tensor
from bertconvert.checkpoint.table import FOOTER_SIZE, MAGIC, build_table
from bertconvert.errors import CheckpointError

FIXTURES = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", "fixtures",
                                        "tf_checkpoints"))
FUZZ = settings(max_examples=300, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                       HealthCheck.function_scoped_fixture])
pytestmark = pytest.mark.timeout(120)  # a hang fails the test

with open(os.path.join(FIXTURES, "partitioned", "model.ckpt.index"), "rb") as _f:
    VALID_INDEX = _f.read()


def _parse(data):
    try:
        result = parse_index(data)
    except CheckpointError:
        return None
    assert isinstance(result.entries, dict)
    return result


def _framed(block, kind=0):
    """A table whose single index entry points at ``block``, all checksums valid."""
    out = bytearray(block) + bytes([kind])
    out += masked_crc32c(bytes(out)).to_bytes(4, "little")
    handle = encode_varint(0) + encode_varint(len(block))
    index_block = encode_varint(0) + encode_varint(1) + encode_varint(len(handle)) + b"\xff" + handle
    index_block += (0).to_bytes(4, "little") + (1).to_bytes(4, "little")
    index_offset = len(out)
    out += index_block + b"\0"
    out += masked_crc32c(index_block + b"\0").to_bytes(4, "little")
    footer = (encode_varint(0) + encode_varint(0) + encode_varint(index_offset)
              + encode_varint(len(index_block)))
    out += footer.ljust(FOOTER_SIZE - 8, b"\0") + MAGIC.to_bytes(8, "little")
    return bytes(out)


@FUZZ
@given(st.binary(max_size=2048))
def test_arbitrary_bytes(data):
    _parse(data)
    _parse(data + VALID_INDEX[-FOOTER_SIZE:])  # get past the magic check


@FUZZ
@given(st.data())
def test_mutated_valid_index(data):
    raw = bytearray(VALID_INDEX)
    for _ in range(data.draw(st.integers(1, 8))):
        pos = data.draw(st.integers(0, len(raw) - 1))
        raw[pos] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(raw)))
    _parse(bytes(raw))
    _parse(bytes(raw[:cut]))
    _parse(bytes(raw[cut:]))


@FUZZ
@given(st.binary(max_size=1024), st.sampled_from([0, 1, 2]))
def test_random_block_contents_with_valid_checksums(block, kind):
    _parse(_framed(block, kind))


@FUZZ
@given(header=st.binary(max_size=40),
       entries=st.lists(st.tuples(st.binary(min_size=1, max_size=12), st.binary(max_size=64)),
                        max_size=12))
def test_random_protos_in_a_valid_table(header, entries):
    items = [(b"", header)] + sorted(dict(entries).items())
    _parse(build_table(items, block_size=64, restart_interval=3))
    items[0] = (b"", encode_header())
    _parse(build_table(items, block_size=64, restart_interval=3))


@FUZZ
@given(st.binary(max_size=512))
def test_snappy_decoder(block):
    try:
        out = snappy.decompress(block)
    except CheckpointError:
        return
    assert len(out) <= 64 * len(block)


@FUZZ
@given(dtype=st.integers(-2, 40),
       shape=st.lists(st.integers(0, 2 ** 62), max_size=4),
       offset=st.integers(0, 2 ** 40),
       size=st.integers(0, 2 ** 40),
       crc=st.integers(0, 2 ** 32 - 1),
       small=st.booleans(), true_crc=st.booleans(), mmap=st.booleans())
# Entries that must read successfully, so the guard below never depends on luck: float32,
# uint8, int16, float64, bool and bfloat16 views of the shard, mmap'ed and copied.
@example(dtype=1, shape=[4], offset=0, size=16, crc=0, small=False, true_crc=True, mmap=True)
@example(dtype=4, shape=[2, 3], offset=5, size=6, crc=0, small=False, true_crc=True, mmap=False)
@example(dtype=5, shape=[3], offset=2, size=6, crc=0, small=False, true_crc=True, mmap=True)
@example(dtype=2, shape=[1, 2], offset=8, size=16, crc=0, small=False, true_crc=True, mmap=False)
@example(dtype=10, shape=[], offset=63, size=1, crc=0, small=False, true_crc=True, mmap=True)
@example(dtype=14, shape=[0], offset=7, size=0, crc=0, small=False, true_crc=True, mmap=False)
# An empty string tensor stored as no bytes at all (TensorFlow reads that too).
@example(dtype=7, shape=[0], offset=0, size=0, crc=0, small=False, true_crc=False, mmap=False)
def test_random_entries_read_from_a_real_shard(tmp_path_factory, dtype, shape, offset, size,
                                                crc, small, true_crc, mmap):
    """Reading a tensor through a random entry gives a verified array or a CheckpointError."""
    directory = tmp_path_factory.mktemp("fuzz")
    prefix = str(directory / "m")
    payload = np.arange(64, dtype=np.uint8)
    with open(prefix + ".data-00000-of-00001", "wb") as f:
        f.write(payload.tobytes())
    if small:  # plausible values: the read path itself is exercised
        shape, offset, size = [s % 5 for s in shape], offset % 80, size % 80
        np_dtype = numpy_dtype(dtype)
        if np_dtype is not None and size % 2:  # half the time, a size that fits the shape
            size = int(np.prod(shape)) * np_dtype.itemsize
    if true_crc:
        crc = masked_crc32c(payload.tobytes()[offset:offset + size])
    try:
        entry = encode_entry(dtype, shape, 0, offset, size, crc)
    except (ValueError, OverflowError):
        return
    with open(prefix + ".index", "wb") as f:
        f.write(build_table([(b"", encode_header()), (b"t", entry)]))
    try:
        value = load_checkpoint(prefix, mmap=mmap).get_tensor("t")
    except CheckpointError:
        return
    READS.append(value.dtype)
    if dtype == DT_STRING:  # a string tensor: its elements re-encode to exactly the stored bytes
        stored = payload.tobytes()[offset:offset + size]
        strings = list(value.reshape(-1))
        assert stored == encode_string_tensor(strings)[0] or (not strings and stored == b"")
        return
    assert value.nbytes == size
    assert masked_crc32c(value) == crc
    assert value.tobytes() == payload.tobytes()[offset:offset + size]


READS = []


def test_fuzzed_entries_did_reach_successful_reads():
    """Guards the fuzzer itself: the read path above must sometimes succeed."""
    if not READS:
        pytest.skip("run together with test_random_entries_read_from_a_real_shard")
    assert len(READS) > 5
