"""Damaged and unusual checkpoints give named errors, never a wrong array or a hang."""
import os
import shutil

import numpy as np
import pytest

from bertconvert.checkpoint import load_checkpoint, load_variable, parse_index, save_checkpoint
from bertconvert.checkpoint.proto import encode_entry, encode_header
from bertconvert.checkpoint.table import FOOTER_SIZE, build_table, read_table
from bertconvert.errors import (CheckpointError, CheckpointFormatError, ChecksumMismatchError,
                                MissingShardError, UnsupportedDtypeError)

FIXTURES = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", "fixtures",
                                        "tf_checkpoints"))


@pytest.fixture
def ckpt(tmp_path):
    """A fresh copy of a TensorFlow-written fixture: ``ckpt(case) -> prefix``."""
    def copy(case):
        shutil.copytree(os.path.join(FIXTURES, case), tmp_path / case)
        return load_checkpoint(str(tmp_path / case)).prefix
    return copy


def _rewrite_index(prefix, edit):
    with open(prefix + ".index", "rb") as f:
        items = read_table(f.read())
    with open(prefix + ".index", "wb") as f:
        f.write(build_table(edit(items)))


# --- the .data shards ----------------------------------------------------------------
@pytest.mark.parametrize("mmap", [True, False])
def test_byte_flip_in_data_names_tensor_and_file(ckpt, mmap):
    prefix = ckpt("saver_v1")
    entry = load_checkpoint(prefix).entry("dense/kernel")
    with open(entry.file, "r+b") as f:
        f.seek(entry.offset + 5)
        byte = f.read(1)
        f.seek(entry.offset + 5)
        f.write(bytes([byte[0] ^ 0x10]))
    reader = load_checkpoint(prefix, mmap=mmap)
    with pytest.raises(ChecksumMismatchError) as info:
        reader.get_tensor("dense/kernel")
    message = str(info.value)
    assert "'dense/kernel'" in message and entry.file in message and "crc32c" in message
    assert reader.get_tensor("dense/bias").shape == (3,)  # other tensors stay readable


def test_truncated_data_names_tensor_and_file(ckpt):
    prefix = ckpt("savev2_dtypes")
    reader = load_checkpoint(prefix)
    numeric = [n for n in reader if n != "strings"]
    last = max(numeric, key=lambda n: reader.entry(n).offset + reader.entry(n).size)
    entry = reader.entry(last)
    os.truncate(entry.file, entry.offset + entry.size - 1)
    for verify in (True, False):  # never a short array, even unchecked
        for mmap in (True, False):
            with pytest.raises(ChecksumMismatchError, match="truncated") as info:
                load_checkpoint(prefix, verify_checksums=verify, mmap=mmap).get_tensor(last)
        assert repr(last) in str(info.value) and entry.file in str(info.value)


def test_shard_truncated_after_opening(ckpt):
    """Checked before any page is touched: a named error, not a crash (SIGBUS)."""
    prefix = ckpt("saver_v1")
    reader = load_checkpoint(prefix)
    reader.get_tensor("dense/bias")  # the shard is mapped now
    os.truncate(prefix + ".data-00000-of-00001", 8)
    with pytest.raises(ChecksumMismatchError, match="truncated"):
        reader.get_tensor("dense/kernel")


def test_truncated_data_to_nothing(ckpt):
    prefix = ckpt("saver_v1")
    os.truncate(prefix + ".data-00000-of-00001", 0)
    with pytest.raises(ChecksumMismatchError, match="dense/kernel"):
        load_variable(prefix, "dense/kernel")


def test_missing_shard(ckpt):
    prefix = ckpt("saver_sharded")
    missing = prefix + ".data-00001-of-00002"
    os.remove(missing)
    with pytest.raises(MissingShardError) as info:
        load_checkpoint(prefix)
    assert missing in str(info.value) and "data-00000" not in str(info.value)


# --- the .index file -----------------------------------------------------------------
@pytest.mark.parametrize("keep", [0, 1, 20, FOOTER_SIZE - 1, FOOTER_SIZE, 100, -1])
def test_truncated_index(ckpt, keep):
    prefix = ckpt("savev2_dtypes")
    size = os.path.getsize(prefix + ".index")
    os.truncate(prefix + ".index", keep if keep >= 0 else size - 1)
    with pytest.raises(CheckpointFormatError) as info:
        load_checkpoint(prefix)
    assert prefix + ".index" in str(info.value)


def test_garbage_index_has_bad_magic(ckpt):
    prefix = ckpt("saver_v1")
    with open(prefix + ".index", "wb") as f:
        f.write(np.random.default_rng(0).bytes(500))
    with pytest.raises(CheckpointFormatError, match="bad magic"):
        load_checkpoint(prefix)


def test_flipped_byte_in_index_block_fails_block_crc(ckpt):
    prefix = ckpt("saver_v1")
    with open(prefix + ".index", "r+b") as f:
        f.seek(10)
        byte = f.read(1)
        f.seek(10)
        f.write(bytes([byte[0] ^ 0x01]))
    with pytest.raises(CheckpointFormatError, match="crc32c"):
        load_checkpoint(prefix)


def test_unknown_block_compression(tmp_path):
    table = build_table([(b"", encode_header())], compress=lambda block: (7, block))
    with pytest.raises(CheckpointFormatError, match="compression type 7"):
        parse_index(table)


def test_bad_entry_proto(ckpt):
    prefix = ckpt("saver_v1")
    _rewrite_index(prefix, lambda items: [(k, b"\x0f\x01" if k == b"dense/bias" else v)
                                          for k, v in items])
    with pytest.raises(CheckpointFormatError, match="wire type"):
        load_checkpoint(prefix)


def test_bad_header(ckpt):
    prefix = ckpt("saver_v1")
    _rewrite_index(prefix, lambda items: items[1:])  # header removed
    with pytest.raises(CheckpointFormatError, match="no header"):
        load_checkpoint(prefix)
    for header, fragment in [(encode_header() + b"\x10\x01", "big-endian"),
                             (b"\x08\x01\x1a\x02\x10\x05", "version >= 5"),
                             (b"\x08\x00", "0 data shards")]:
        _rewrite_index(prefix, lambda items, h=header: [(b"", h)] + [i for i in items if i[0]])
        with pytest.raises(CheckpointFormatError, match=fragment):
            load_checkpoint(prefix)


def test_entry_naming_a_shard_beyond_the_header(ckpt):
    prefix = ckpt("saver_v1")
    entry = load_checkpoint(prefix).entry("dense/bias")
    bad = encode_entry(1, (3,), 4, entry.offset, entry.size, entry.crc32c)
    _rewrite_index(prefix, lambda items: [(k, bad if k == b"dense/bias" else v) for k, v in items])
    with pytest.raises(CheckpointFormatError, match="shard 4"):
        load_checkpoint(prefix)


def test_size_disagreeing_with_shape(ckpt):
    prefix = ckpt("saver_v1")
    entry = load_checkpoint(prefix).entry("dense/bias")
    bad = encode_entry(1, (2 ** 40, 2 ** 20), 0, entry.offset, entry.size, entry.crc32c)
    _rewrite_index(prefix, lambda items: [(k, bad if k == b"dense/bias" else v) for k, v in items])
    reader = load_checkpoint(prefix)
    assert reader.get_variable_to_shape_map()["dense/bias"] == [2 ** 40, 2 ** 20]
    with pytest.raises(CheckpointFormatError, match="needs"):
        reader.get_tensor("dense/bias")


# --- dtypes ----------------------------------------------------------------------------
def test_unknown_dtype(tmp_path):
    prefix = str(tmp_path / "m")
    save_checkpoint(prefix, {"fine": np.ones(2, np.float32), "odd": np.ones(2, np.float32)})
    entry = load_checkpoint(prefix).entry("odd")
    odd = encode_entry(999, (2,), 0, entry.offset, entry.size, entry.crc32c)
    _rewrite_index(prefix, lambda items: [(k, odd if k == b"odd" else v) for k, v in items])
    reader = load_checkpoint(prefix)
    assert reader.get_variable_to_shape_map() == {"fine": [2], "odd": [2]}
    assert reader.entry("odd").dtype is None and reader.entry("odd").dtype_name == "DT_UNKNOWN(999)"
    with pytest.raises(UnsupportedDtypeError, match=r"'odd'.*DT_UNKNOWN\(999\)"):
        reader.get_tensor("odd")
    with pytest.raises(UnsupportedDtypeError, match="'odd'"):
        reader.get_variable_to_dtype_map()
    assert reader.get_tensor("fine").tolist() == [1.0, 1.0]


def test_resource_dtype_is_named(tmp_path):
    prefix = str(tmp_path / "m")
    save_checkpoint(prefix, {"r": np.ones(1, np.int64)})
    entry = load_checkpoint(prefix).entry("r")
    _rewrite_index(prefix, lambda items: [items[0], (b"r", encode_entry(
        20, (1,), 0, entry.offset, entry.size, entry.crc32c))])
    with pytest.raises(UnsupportedDtypeError, match="DT_RESOURCE"):
        load_variable(prefix, "r")


def test_string_tensor_is_listed_and_read():
    reader = load_checkpoint(os.path.join(FIXTURES, "savev2_dtypes"))
    assert reader.get_variable_to_shape_map()["strings"] == [3]
    assert reader.get_tensor("strings").tolist() == [b"alpha", b"", b"gamma"]


# --- partitioned variables -------------------------------------------------------------
def test_missing_slice_of_partitioned_variable(ckpt):
    prefix = ckpt("partitioned")
    slice_keys = [k for k, _ in read_table(open(prefix + ".index", "rb").read())
                  if k.startswith(b"\x00") and b"rows" in k]
    assert len(slice_keys) == 3
    _rewrite_index(prefix, lambda items: [(k, v) for k, v in items if k != slice_keys[1]])
    reader = load_checkpoint(prefix)
    with pytest.raises(CheckpointFormatError, match="partitioned variable 'rows'"):
        reader.get_tensor("rows")
    assert reader.get_tensor("cols").shape == (2, 9)


def test_partitioned_slices_that_do_not_tile(ckpt):
    prefix = ckpt("partitioned")

    def drop_slice(items):  # "rows" keeps its entry but lists only two of its three slices
        return [(k, _entry_without_third_slice(v) if k == b"rows" else v) for k, v in items]

    _rewrite_index(prefix, drop_slice)
    with pytest.raises(CheckpointFormatError, match="cover"):
        load_checkpoint(prefix).get_tensor("rows")


def _entry_without_third_slice(value):
    """Re-serialise a BundleEntryProto keeping only its first two slices (field 7)."""
    from bertconvert.checkpoint.proto import decode_varint
    out, pos, seen = bytearray(), 0, 0
    while pos < len(value):
        start = pos
        key, pos = decode_varint(value, pos, len(value))
        wire = key & 7
        if wire == 0:
            _, pos = decode_varint(value, pos, len(value))
        elif wire == 5:
            pos += 4
        elif wire == 2:
            length, pos = decode_varint(value, pos, len(value))
            pos += length
        if key >> 3 == 7:
            seen += 1
            if seen > 2:
                continue
        out += value[start:pos]
    return bytes(out)


def test_every_error_is_a_checkpoint_error():
    for cls in (CheckpointFormatError, ChecksumMismatchError, MissingShardError,
                UnsupportedDtypeError):
        assert issubclass(cls, CheckpointError)


# --- hostile inputs: nothing unbounded, nothing allocated from a declared shape alone ------
def _with_extra_entries(tmp_path, extra):
    """A one-tensor checkpoint whose index also holds the ``(key, entry bytes)`` in ``extra``."""
    prefix = str(tmp_path / "m")
    save_checkpoint(prefix, {"fine": np.ones(4, np.float32)})
    _rewrite_index(prefix, lambda items: sorted(items + extra))
    return prefix


def _field(number, payload):
    from bertconvert.checkpoint.proto import encode_varint
    return encode_varint((number << 3) | 2) + encode_varint(len(payload)) + payload


def test_partitioned_variable_declaring_terabytes_is_refused_before_allocating(tmp_path):
    from bertconvert.checkpoint.slices import slice_key
    shape = (2 ** 36, 32)  # 8 TiB of float32: the index alone must not make us allocate it
    whole = ((0, None), (0, None))
    full = encode_entry(1, shape, 0, 0, 0, 0) + _field(7, _field(1, b"") * 2)
    part = encode_entry(1, shape, 0, 0, 2 ** 36 * 32 * 4, 0)
    prefix = _with_extra_entries(tmp_path, [(b"big", full), (slice_key(b"big", whole), part)])
    reader = load_checkpoint(prefix)
    assert reader.get_variable_to_shape_map()["big"] == list(shape)
    with pytest.raises(ChecksumMismatchError, match="truncated"):
        reader.get_tensor("big")
    with pytest.raises(ChecksumMismatchError, match="truncated"):
        reader.check_stored("big")
    assert reader.get_tensor("fine").tolist() == [1.0] * 4


def test_slices_sharing_bytes_cannot_add_up_past_the_shard(tmp_path):
    from bertconvert.checkpoint.slices import slice_key
    prefix = str(tmp_path / "m")
    save_checkpoint(prefix, {"fine": np.ones(4, np.float32)})
    halves = [((0, 2), (0, None)), ((2, 2), (0, None))]
    slices = b"".join(_field(7, _field(1, b"\x08" + bytes([s]) + b"\x10\x02") + _field(1, b""))
                      for s in (0, 2))
    full = encode_entry(1, (4, 2), 0, 0, 0, 0) + slices
    # Both halves claim the same 16 bytes (every byte of the shard): 32 bytes from 16.
    size = os.path.getsize(prefix + ".data-00000-of-00001")
    half = encode_entry(1, (2, 2), 0, 0, 16, 0)
    assert size < 32
    _rewrite_index(prefix, lambda items: sorted(
        items + [(b"v", full)] + [(slice_key(b"v", h), half) for h in halves]))
    with pytest.raises(CheckpointFormatError, match="add up to 32 bytes"):
        load_checkpoint(prefix).get_tensor("v")


@pytest.mark.parametrize("shape, fragment", [((0, 2 ** 62), "larger than any array"),
                                             ((1,) * 5000, "5000 dimensions")])
def test_shapes_numpy_cannot_hold_are_format_errors(tmp_path, shape, fragment):
    size = 0 if 0 in shape else 4
    prefix = _with_extra_entries(tmp_path, [(b"odd", encode_entry(1, shape, 0, 0, size, 0))])
    for mmap in (True, False):
        with pytest.raises(CheckpointFormatError, match=fragment):
            load_checkpoint(prefix, verify_checksums=False, mmap=mmap).get_tensor("odd")


def test_index_that_is_a_fifo_or_a_device(ckpt):
    prefix = ckpt("saver_v1")
    os.remove(prefix + ".index")
    os.mkfifo(prefix + ".index")  # reading it would wait forever for a writer
    with pytest.raises(CheckpointFormatError, match="FIFO"):
        load_checkpoint(os.path.dirname(prefix))
    os.remove(prefix + ".index")
    os.symlink("/dev/zero", prefix + ".index")  # reading it would never end
    with pytest.raises(CheckpointFormatError, match="character device"):
        load_checkpoint(os.path.dirname(prefix))


def test_oversized_index_is_refused_unread(ckpt, monkeypatch):
    from bertconvert.checkpoint import bundle
    prefix = ckpt("saver_v1")
    monkeypatch.setattr(bundle, "MAX_INDEX_BYTES", os.path.getsize(prefix + ".index") - 1)
    with pytest.raises(CheckpointFormatError, match="more than"):
        load_checkpoint(prefix)


def test_data_shard_that_is_a_fifo(ckpt):
    prefix = ckpt("saver_v1")
    shard = prefix + ".data-00000-of-00001"
    os.remove(shard)
    os.mkfifo(shard)
    with pytest.raises(CheckpointError, match="FIFO"):
        load_checkpoint(prefix)


# --- how slices must tile a partitioned variable (checkpoint/slices.py) -----------------------
def test_many_slices_are_checked_without_comparing_every_pair():
    from bertconvert.checkpoint.slices import check_coverage

    n = 200_000  # all pairs would be 2e10 comparisons: this only finishes with the sweep
    check_coverage("v", (n, 4), [((i, i + 1), (0, 4)) for i in range(n)])
    grid = [((r, r + 2), (c, c + 2)) for r in range(0, 400, 2) for c in range(0, 8, 2)]
    check_coverage("g", (400, 8), grid)


@pytest.mark.parametrize("bounds, message", [
    ([((0, 3), (0, 4)), ((2, 4), (0, 4))], "overlap"),                # overlap on the sweep axis
    ([((0, 2), (0, 3)), ((2, 4), (0, 4)), ((0, 2), (2, 4))], "overlap"),  # on the other axis
    ([((0, 1), (0, 4)), ((2, 4), (0, 4))], "cover 12 of 16"),         # a gap
])
def test_slices_that_do_not_tile_are_refused(bounds, message):
    from bertconvert.checkpoint.slices import check_coverage

    with pytest.raises(CheckpointFormatError, match=message):
        check_coverage("v", (4, 4), bounds)
