"""save_checkpoint: round trips, layout, input handling, and refusing bad input cleanly.

(TensorFlow reading our output is checked in test_checkpoint_tf.py.)
"""
import os

import ml_dtypes
import numpy as np
import pytest
import torch

from bertconvert.checkpoint import load_checkpoint, save_checkpoint
from bertconvert.checkpoint.crc import masked_crc32c
from bertconvert.checkpoint.table import build_table, read_table
from bertconvert.errors import CheckpointWriteError, UnsupportedDtypeError

NUMPY_DTYPES = ["float32", "float16", "float64", "int8", "int16", "int32", "int64", "uint8",
                "uint16", "uint32", "uint64", "bool", "complex64", "complex128"]


def _sample(rng, dtype, shape):
    if dtype == "bool":
        return rng.integers(0, 2, size=shape).astype(bool)
    if dtype.startswith("complex"):
        return (rng.standard_normal(shape) + 1j * rng.standard_normal(shape)).astype(dtype)
    return (rng.standard_normal(shape) * 50).astype(dtype)


def test_round_trip_every_dtype_scalar_and_empty(tmp_path):
    rng = np.random.default_rng(0)
    tensors = {}
    for dtype in NUMPY_DTYPES:
        tensors[f"{dtype}/matrix"] = _sample(rng, dtype, (5, 7))
        tensors[f"{dtype}/scalar"] = np.asarray(_sample(rng, dtype, ()))
        tensors[f"{dtype}/empty"] = np.zeros((0, 3), dtype)
    tensors["bfloat16/matrix"] = rng.standard_normal((4, 4)).astype(ml_dtypes.bfloat16)
    prefix = str(tmp_path / "out" / "model.ckpt")
    written = save_checkpoint(prefix, tensors)
    assert written == [prefix + ".data-00000-of-00001", prefix + ".index"]
    assert sorted(os.listdir(tmp_path / "out")) == ["model.ckpt.data-00000-of-00001",
                                                    "model.ckpt.index"]
    reader = load_checkpoint(prefix)
    assert list(reader) == sorted(tensors)  # bytewise key order, as the table requires
    for name, array in tensors.items():
        value = reader.get_tensor(name)
        assert value.dtype == array.dtype and value.shape == array.shape, name
        assert value.tobytes() == array.tobytes(), name


def test_layout_alignment_and_checksums(tmp_path):
    tensors = {"a": np.arange(3, dtype=np.int8), "b": np.arange(5, dtype=np.float64),
               "c": np.ones((2, 2), np.float16)}
    prefix = str(tmp_path / "m")
    save_checkpoint(prefix, tensors)
    reader = load_checkpoint(prefix)
    with open(prefix + ".data-00000-of-00001", "rb") as f:
        data = f.read()
    for name, array in tensors.items():
        entry = reader.entry(name)
        assert entry.offset % 64 == 0
        assert data[entry.offset:entry.offset + entry.size] == array.tobytes()
        assert entry.crc32c == masked_crc32c(array.tobytes())
    with open(prefix + ".index", "rb") as f:
        items = read_table(f.read())
    assert [key for key, _ in items] == [b"", b"a", b"b", b"c"]


def test_accepts_views_big_endian_fortran_order_and_torch(tmp_path):
    base = np.arange(24, dtype=np.float32).reshape(4, 6)
    tensors = {
        "strided": base[:, ::2],
        "fortran": np.asfortranarray(base),
        "big_endian": base.astype(">f4"),
        "python_float": 2.5,
        "torch/float": torch.arange(6, dtype=torch.float32, requires_grad=True).reshape(2, 3),
        "torch/bfloat16": torch.tensor([1.5, -2.0, 3.25], dtype=torch.bfloat16),
    }
    prefix = str(tmp_path / "m")
    save_checkpoint(prefix, tensors)
    reader = load_checkpoint(prefix)
    assert np.array_equal(reader.get_tensor("strided"), base[:, ::2])
    assert np.array_equal(reader.get_tensor("fortran"), base)
    big = reader.get_tensor("big_endian")
    assert big.dtype == np.dtype("<f4") and np.array_equal(big, base)
    assert reader.get_tensor("python_float") == 2.5
    assert np.array_equal(reader.get_tensor("torch/float"), np.arange(6, dtype=np.float32).reshape(2, 3))
    bf16 = reader.get_tensor("torch/bfloat16")
    assert bf16.dtype == np.dtype(ml_dtypes.bfloat16)
    assert bf16.astype(np.float32).tolist() == [1.5, -2.0, 3.25]


def test_replaces_an_existing_checkpoint(tmp_path):
    prefix = str(tmp_path / "m")
    save_checkpoint(prefix, {"old": np.zeros(1000, np.float32)})
    save_checkpoint(prefix, {"new": np.ones(2, np.float32)})
    reader = load_checkpoint(prefix)
    assert list(reader) == ["new"] and reader.get_tensor("new").tolist() == [1.0, 1.0]
    assert sorted(os.listdir(tmp_path)) == ["m.data-00000-of-00001", "m.index"]


@pytest.mark.parametrize("bad", [
    np.array(["a", "b"]),
    np.array([b"x"]),
    np.array([object(), 1], dtype=object),
    np.zeros(2, dtype="datetime64[s]"),
    np.zeros(2, dtype=[("a", "f4")]),
])
def test_unsupported_dtype_writes_nothing(tmp_path, bad):
    prefix = str(tmp_path / "m")
    save_checkpoint(prefix, {"keep": np.ones(3, np.float32)})
    before = {name: (tmp_path / name).read_bytes() for name in os.listdir(tmp_path)}
    with pytest.raises(UnsupportedDtypeError, match="'bad'"):
        save_checkpoint(prefix, {"a_fine_one": np.zeros(3), "bad": bad})
    after = {name: (tmp_path / name).read_bytes() for name in os.listdir(tmp_path)}
    assert after == before  # the old checkpoint is untouched and no temp files remain


def test_unsupported_torch_dtype(tmp_path):
    with pytest.raises(UnsupportedDtypeError, match="'q'"):
        save_checkpoint(str(tmp_path / "m"), {"q": torch.zeros(2, dtype=torch.float8_e4m3fn)})
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("name, fragment", [
    ("", "non-empty"),
    (7, "non-empty strings"),
    ("\x00slice", "NUL"),
    ("lone\ud800surrogate", "UTF-8"),
])
def test_bad_names_are_refused(tmp_path, name, fragment):
    with pytest.raises(CheckpointWriteError, match=fragment):
        save_checkpoint(str(tmp_path / "m"), {name: np.zeros(1)})
    assert os.listdir(tmp_path) == []


def test_bad_prefix_is_refused(tmp_path):
    with pytest.raises(CheckpointWriteError, match="file stem"):
        save_checkpoint(str(tmp_path) + os.sep, {"a": np.zeros(1)})


def test_progress_bar_option(tmp_path, capsys):
    save_checkpoint(str(tmp_path / "m"), {"a": np.zeros(1000)}, progress=True)
    assert "writing m" not in capsys.readouterr().err  # captured stderr is no terminal
    save_checkpoint(str(tmp_path / "n"), {"a": np.zeros(1000)}, progress="always")
    assert "writing n" in capsys.readouterr().err
    assert load_checkpoint(str(tmp_path / "m")).get_tensor("a").shape == (1000,)


def test_table_writer_refuses_unsorted_keys():
    with pytest.raises(ValueError, match="strictly increasing"):
        build_table([(b"b", b""), (b"a", b"")])
    with pytest.raises(ValueError, match="strictly increasing"):
        build_table([(b"a", b""), (b"a", b"")])


def test_multi_block_tables_round_trip():
    items = [(f"key/{i:05d}".encode(), os.urandom(i % 7)) for i in range(2000)]
    for block_size, restart in [(1, 1), (50, 3), (4096, 16), (1 << 20, 1000)]:
        assert read_table(build_table(items, block_size=block_size, restart_interval=restart)) == items
    assert read_table(build_table([])) == []
