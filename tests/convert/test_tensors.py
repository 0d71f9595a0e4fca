"""TensorCopier: the numpy-only read / check / transpose / cast loop of the converter.

References are independent of the code under test: the test's own table of Google's names and
layouts (tests/convert/google_names.py) for layout, and torch's ``Tensor.to`` for rounding.
"""
import os
import shutil

import numpy as np
import pytest
import torch

from bertconvert.convert import rules as mapping
from bertconvert.checkpoint import load_checkpoint, save_checkpoint
from bertconvert.errors import ChecksumMismatchError, ConversionError
from bertconvert.convert.plan import PlannedTensor
from bertconvert.convert.tensors import TensorCopier, source_grid, storage_dtype
from . import google_names

FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, os.pardir, "fixtures")
TORCH_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def planned(reader, name, rule_name=None, shape=None):
    """A PlannedTensor for ``name``, using the rule that ``rule_name`` (default ``name``) resolves to."""
    rule = mapping.resolve(rule_name or name).rule
    entry = reader.entry(name)
    source_shape = tuple(shape or entry.shape)
    return PlannedTensor(name, "key", rule, source_shape,
                         mapping.transformed_shape(rule.transform, source_shape), entry.dtype.name)


def torch_reference(name, value, dtype):
    """The test table's layout of ``name``, then torch's Tensor.to(dtype)."""
    _, layout = google_names.expected_entry(name, value, "pretraining")
    expected = torch.from_numpy(layout).to(TORCH_DTYPES[dtype])
    if dtype == "bfloat16":
        return expected.view(torch.int16).numpy().view(storage_dtype("bfloat16"))
    return expected.numpy()


def assert_same_bits(actual, expected):
    assert actual.shape == expected.shape and actual.dtype == expected.dtype
    assert actual.tobytes() == expected.tobytes()


@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16"])
@pytest.mark.parametrize("chunk_bytes", [64, 1000, 1 << 20])
def test_every_tf2_and_tf1_layout_matches_the_reference(dtype, chunk_bytes):
    """Tiny pieces exercise multi-piece reads, strips of one row and ragged last strips."""
    for fixture in ("tf2-pretraining", "question-answering"):
        reader = load_checkpoint(os.path.join(FIXTURES, "checkpoints", fixture))
        names = [n for n in reader if not mapping.skip_reason(n)]
        transforms = set()
        with TensorCopier(reader, dtype, chunk_bytes=chunk_bytes) as copier:
            for name in names:
                t = planned(reader, name)
                transforms.add(t.rule.transform)
                expected = torch_reference(name, reader.get_tensor(name), dtype)
                assert_same_bits(copier.array(t), expected)
                assert_same_bits(copier.array(t, fresh=True), expected)
                streamed = b"".join(bytes(piece) for piece in copier.chunks(t))
                assert streamed == expected.tobytes(), name
        assert len(transforms) >= 2


def test_rounding_matches_torch_on_special_values(tmp_path):
    """Ties, overflow, subnormals, infinities: bit-identical to torch; NaN stays NaN."""
    rng = np.random.default_rng(0)
    bits = np.concatenate([
        rng.integers(0, 2**32, 20000, dtype=np.uint64).astype(np.uint32),
        np.array([0x3F808000, 0x3F818000, 0x3F800001, 0x477FF000, 0x477FEFFF, 0x7F7FFFFF,
                  0x00000001, 0x80000001, 0x33800000, 0x33000000, 0x38800000, 0x387FC000,
                  0x7F800000, 0xFF800000, 0x00000000, 0x80000000], np.uint32)])
    values = bits.view(np.float32).reshape(-1, 8)
    name = "bert/pooler/dense/kernel"
    prefix = str(tmp_path / "bert_model.ckpt")
    save_checkpoint(prefix, {name: values})
    reader = load_checkpoint(prefix)
    nan = np.isnan(values.T)
    assert nan.any()
    for dtype in ("float16", "bfloat16"):
        expected = torch.from_numpy(values.T.copy()).to(TORCH_DTYPES[dtype]).view(torch.int16).numpy()
        # The unchecked cast (verify's digests use it): conversion refuses the overflow
        # (tests/convert/test_dtype_range.py), everything else rounds the same.
        with TensorCopier(reader, dtype, check_values=False) as copier:
            got = copier.array(planned(reader, name), fresh=True)
        np.testing.assert_array_equal(got.view(np.int16)[~nan], expected[~nan])
        assert np.isnan(got.astype(np.float32)[nan]).all()


def test_partitioned_and_sharded_variables(tmp_path):
    """Sliced variables come assembled through the reader; multi-shard reads pick the file."""
    parts = load_checkpoint(os.path.join(FIXTURES, "tf_checkpoints", "partitioned"))
    with TensorCopier(parts, "float32", chunk_bytes=64) as copier:
        for name in ("rows", "cols"):  # float32 and float64 (cast) sources, both sliced
            t = planned(parts, name, rule_name="bert/pooler/dense/kernel")
            assert parts.entry(name).slices
            expected = parts.get_tensor(name).T.astype(np.float32)
            assert_same_bits(copier.array(t), expected)
            assert b"".join(bytes(p) for p in copier.chunks(t)) == expected.tobytes()
    sharded = load_checkpoint(os.path.join(FIXTURES, "tf_checkpoints", "saver_sharded"))
    with TensorCopier(sharded, "float32") as copier:
        for name in ("cpu0/kernel", "cpu1/kernel"):
            t = planned(sharded, name, rule_name="bert/pooler/dense/kernel")
            assert_same_bits(copier.array(t), sharded.get_tensor(name).T.copy())


def _corrupt_copy(tmp_path, name, flip_at):
    src = os.path.join(FIXTURES, "checkpoints", "base")
    shutil.copytree(src, tmp_path / "c")
    reader = load_checkpoint(str(tmp_path / "c"))
    entry = reader.entry(name)
    with open(entry.file, "r+b") as f:
        f.seek(entry.offset + flip_at)
        byte = f.read(1)[0]
        f.seek(entry.offset + flip_at)
        f.write(bytes([byte ^ 0x01]))
    return load_checkpoint(str(tmp_path / "c"))


@pytest.mark.parametrize("name", ["bert/embeddings/word_embeddings",            # piecewise copy
                                  "bert/encoder/layer_0/intermediate/dense/kernel"])  # transpose
def test_crc_mismatch_is_raised_before_the_last_piece_leaves(tmp_path, name):
    reader = _corrupt_copy(tmp_path, name, flip_at=100)
    t = planned(reader, name)
    with TensorCopier(reader, "float32", chunk_bytes=256) as copier:
        pieces, out = copier.chunks(t), 0
        with pytest.raises(ChecksumMismatchError, match="crc32c"):
            for piece in pieces:
                out += piece.nbytes
        assert out < t.nbytes  # the writer never received the whole corrupt tensor
        with pytest.raises(ChecksumMismatchError):
            copier.array(t)
    unchecked = load_checkpoint(reader.prefix, verify_checksums=False)
    with TensorCopier(unchecked, "float32") as copier:
        copier.array(planned(unchecked, name))  # no check asked for, none made


def test_truncated_shard_is_a_named_error(tmp_path):
    shutil.copytree(os.path.join(FIXTURES, "checkpoints", "base"), tmp_path / "c")
    reader = load_checkpoint(str(tmp_path / "c"))
    last = max(reader, key=lambda n: reader.entry(n).offset + reader.entry(n).size)
    entry = reader.entry(last)
    os.truncate(entry.file, entry.offset + entry.size - 1)
    with TensorCopier(reader, "float32") as copier, pytest.raises(ChecksumMismatchError, match="truncated"):
        copier.array(planned(reader, last))


def test_source_grid_and_dtype_names():
    assert source_grid(mapping.TRANSPOSE, (3, 5)) == (3, 5)
    assert source_grid(mapping.RESHAPE_OUT_TRANSPOSE, (32, 4, 8)) == (32, 32)
    assert source_grid(mapping.RESHAPE_IN_TRANSPOSE, (4, 8, 32)) == (32, 32)
    assert source_grid(mapping.RESHAPE, (4, 8)) is None and source_grid(mapping.NONE, (7,)) is None
    with pytest.raises(ConversionError):
        source_grid(mapping.TRANSPOSE, (3,))
    with pytest.raises(ConversionError, match="unknown dtype"):
        storage_dtype("int8")
    assert storage_dtype("bfloat16").name == "bfloat16"
