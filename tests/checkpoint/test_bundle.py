"""The TF-free reader against checkpoints TensorFlow wrote (fixtures/tf_checkpoints/).

Each fixture directory records what ``tf.train.load_checkpoint`` read back from it, so these
tests compare bit for bit without TensorFlow installed.
"""
import json
import os
import shutil
import subprocess
import sys
import textwrap

import ml_dtypes
import numpy as np
import pytest

from bertconvert.checkpoint import (CheckpointReader, TensorEntry, list_variables, load_checkpoint,
                                    load_variable)
from bertconvert.checkpoint.crc import crc32c, mask, masked_crc32c, unmask
from bertconvert.errors import CheckpointNotFoundError, TensorNotFoundError

FIXTURES = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", "fixtures",
                                        "tf_checkpoints"))
CASES = sorted(os.listdir(FIXTURES))


def _expected(case):
    with open(os.path.join(FIXTURES, case, "expected.json"), encoding="utf-8") as f:
        manifest = json.load(f)
    arrays = np.load(os.path.join(FIXTURES, case, "expected.npz"))
    return manifest, arrays


def test_all_fixture_cases_present():
    assert set(CASES) >= {"savev2_dtypes", "saver_v1", "saver_sharded", "partitioned",
                          "object_based", "object_sharded"}


@pytest.mark.parametrize("mmap", [True, False], ids=["mmap", "read"])
@pytest.mark.parametrize("case", CASES)
def test_reads_exactly_what_tensorflow_reads(case, mmap):
    manifest, arrays = _expected(case)
    reader = load_checkpoint(os.path.join(FIXTURES, case), mmap=mmap)
    assert reader.mmap is mmap
    # relative: a SavedModel's checkpoint is variables/variables inside its directory
    assert os.path.relpath(reader.prefix, os.path.join(FIXTURES, case)) == manifest["prefix"]
    expected = manifest["tensors"]
    assert reader.get_variable_to_shape_map() == {n: info["shape"] for n, info in expected.items()}
    for name, info in expected.items():
        if info["dtype"] == "string":
            assert reader.entry(name).dtype_name == "DT_STRING"
            value = np.asarray(reader.get_tensor(name), dtype=object)
            assert list(value.shape) == info["shape"], name
            assert [v.hex() for v in value.reshape(-1)] == info["hex_values"], name
            continue
        value = reader.get_tensor(name)
        assert value.dtype.name == info["dtype"], name
        assert list(value.shape) == info["shape"], name
        assert value.tobytes() == arrays[info["key"]].tobytes(), name
        assert value.flags.writeable and value.flags.c_contiguous and value.flags.aligned


def test_every_dtype_scalar_and_empty_tensor():
    reader = load_checkpoint(os.path.join(FIXTURES, "savev2_dtypes"))
    dtypes = reader.get_variable_to_dtype_map()
    for name in ("float32", "float16", "bfloat16", "float64", "int8", "int16", "int32",
                 "int64", "uint8", "uint16", "uint32", "uint64", "bool", "complex64",
                 "complex128"):
        expected = np.dtype(ml_dtypes.bfloat16) if name == "bfloat16" else np.dtype(name)
        assert dtypes[f"matrix/{name}"] == expected
        assert reader.get_tensor(f"matrix/{name}").dtype.name == name
        scalar = reader.get_tensor(f"scalar/{name}")
        assert scalar.shape == () and scalar.dtype.name == name
        assert reader.get_tensor(f"empty/{name}").shape == (0, 4)
    assert dtypes["strings"] == np.dtype(object)
    assert reader.get_tensor("zero_dim/empty").shape == (3, 0, 2)
    floats = reader.get_tensor("matrix/float32").reshape(-1)
    assert np.isnan(floats[0]) and floats[1] == np.inf and floats[2] == -np.inf
    assert floats[3] == 0 and np.signbit(floats[3])
    assert reader.get_tensor("ünïcode/wéight").shape == (2,)


def test_partitioned_variables_are_assembled():
    reader = load_checkpoint(os.path.join(FIXTURES, "partitioned"))
    assert sorted(reader) == ["cols", "plain", "rows"]  # slice keys stay hidden
    rows = reader.entry("rows")
    assert len(rows.slices) == 3 and rows.shape == (7, 4)
    assert [extents[0] for extents in rows.slices] == [(0, 3), (3, 2), (5, 2)]
    assert reader.get_tensor("cols").shape == (2, 9)


def test_sharded_checkpoints_read_every_shard():
    reader = load_checkpoint(os.path.join(FIXTURES, "saver_sharded"))
    assert {reader.entry(n).shard_id for n in reader} == {0, 1}
    assert [os.path.basename(p) for p in reader.files] == [
        "model.ckpt.index", "model.ckpt.data-00000-of-00002", "model.ckpt.data-00001-of-00002"]
    tf2 = load_checkpoint(os.path.join(FIXTURES, "object_sharded"))
    assert len(tf2.files) == 5


def test_path_forms(tmp_path):
    case_dir = os.path.join(FIXTURES, "saver_v1")
    prefix = os.path.join(case_dir, "model.ckpt")
    for path in (prefix, prefix + ".index", prefix + ".data-00000-of-00001", case_dir,
                 case_dir + os.sep):
        assert load_checkpoint(path).prefix == prefix, path
    from pathlib import Path
    assert load_checkpoint(Path(prefix)).prefix == prefix
    # A directory without a state file but with exactly one index.
    lone = tmp_path / "lone"
    shutil.copytree(case_dir, lone)
    os.remove(lone / "checkpoint")
    assert load_checkpoint(str(lone)).prefix == str(lone / "model.ckpt")
    # A state file with an absolute path from another machine: fall back to the base name.
    (lone / "checkpoint").write_text('model_checkpoint_path: "/elsewhere/run7/model.ckpt"\n')
    assert load_checkpoint(str(lone)).prefix == str(lone / "model.ckpt")


def test_directory_with_two_checkpoints_and_no_state_needs_a_prefix(tmp_path):
    for case in ("saver_v1", "object_based"):
        for name in os.listdir(os.path.join(FIXTURES, case)):
            if name != "checkpoint":
                shutil.copy(os.path.join(FIXTURES, case, name), tmp_path / name)
    with pytest.raises(CheckpointNotFoundError, match="several checkpoints"):
        load_checkpoint(str(tmp_path))
    # ...and with a state file, it picks the named one.
    (tmp_path / "checkpoint").write_text('model_checkpoint_path: "ckpt-1"\n')
    assert load_checkpoint(str(tmp_path)).prefix == str(tmp_path / "ckpt-1")


def test_not_found(tmp_path):
    with pytest.raises(CheckpointNotFoundError, match="no TensorFlow checkpoint"):
        load_checkpoint(str(tmp_path / "nothing" / "model.ckpt"))
    with pytest.raises(CheckpointNotFoundError, match="holds no TensorFlow checkpoint"):
        load_checkpoint(str(tmp_path))
    single = tmp_path / "v1.ckpt"
    single.write_bytes(b"x" * 100)
    with pytest.raises(CheckpointNotFoundError, match="V1"):
        load_checkpoint(str(single))


def test_unknown_tensor_name_suggests_close_names():
    reader = load_checkpoint(os.path.join(FIXTURES, "saver_v1"))
    with pytest.raises(TensorNotFoundError, match="dense/kernel") as info:
        reader.get_tensor("dense/kernal")
    assert isinstance(info.value, KeyError)
    assert not reader.has_tensor("dense/kernal") and reader.has_tensor("dense/kernel")
    with pytest.raises(TensorNotFoundError):
        reader.entry("nope")


def test_list_and_load_variable_like_tf_train():
    case_dir = os.path.join(FIXTURES, "saver_v1")
    listed = list_variables(case_dir)
    assert listed == sorted(listed)
    assert dict(listed) == {"dense/bias": [3], "dense/kernel": [4, 3], "embeddings": [5, 2],
                            "global_step": []}
    kernel = load_variable(case_dir, "dense/kernel")
    assert kernel.shape == (4, 3) and kernel.dtype == np.float32
    assert load_variable(case_dir, "dense/kernel:0").tobytes() == kernel.tobytes()
    assert load_variable(case_dir, "global_step").dtype == np.int64


def test_entry_metadata_and_files():
    reader = load_checkpoint(os.path.join(FIXTURES, "saver_v1"))
    entry = reader.entry("dense/kernel")
    assert isinstance(entry, TensorEntry)
    assert (entry.dtype, entry.shape, entry.shard_id, entry.size) == (np.dtype("float32"), (4, 3), 0, 48)
    assert entry.dtype_name == "DT_FLOAT" and entry.tf_dtype == 1
    assert entry.file == reader.prefix + ".data-00000-of-00001"
    with open(entry.file, "rb") as f:
        f.seek(entry.offset)
        raw = f.read(entry.size)
    assert masked_crc32c(raw) == entry.crc32c
    assert raw == reader.get_tensor("dense/kernel").tobytes()
    assert reader.files == [reader.prefix + ".index", entry.file]
    assert isinstance(reader, CheckpointReader) and len(reader) == 4 and "embeddings" in reader


def test_metadata_never_reads_tensor_bytes(tmp_path):
    """Names, shapes, dtypes and entries come from the index alone."""
    shutil.copytree(os.path.join(FIXTURES, "saver_v1"), tmp_path / "c")
    data = tmp_path / "c" / "model.ckpt.data-00000-of-00001"
    data.write_bytes(b"")  # emptied: any read of tensor bytes would now fail
    reader = load_checkpoint(str(tmp_path / "c"))
    assert reader.get_variable_to_shape_map()["dense/kernel"] == [4, 3]
    assert reader.get_variable_to_dtype_map()["embeddings"] == np.float16
    assert reader.entry("dense/bias").size == 12


@pytest.mark.parametrize("mmap", [True, False])
def test_checksums_can_be_switched_off(tmp_path, mmap):
    shutil.copytree(os.path.join(FIXTURES, "saver_v1"), tmp_path / "c")
    reader = load_checkpoint(str(tmp_path / "c"))
    entry = reader.entry("dense/bias")
    with open(entry.file, "r+b") as f:
        f.seek(entry.offset)
        f.write(b"\x00\x00\x80\x7f")  # first element becomes +inf
    unchecked = load_checkpoint(str(tmp_path / "c"), verify_checksums=False, mmap=mmap)
    assert not unchecked.verify_checksums
    assert unchecked.get_tensor("dense/bias")[0] == np.inf


def test_mapped_arrays_are_private_and_outlive_the_reader(tmp_path):
    shutil.copytree(os.path.join(FIXTURES, "saver_v1"), tmp_path / "c")
    data_file = tmp_path / "c" / "model.ckpt.data-00000-of-00001"
    before = data_file.read_bytes()
    reader = load_checkpoint(str(tmp_path / "c"))
    kernel = reader.get_tensor("dense/kernel")
    expected = kernel.copy()
    reader.close()  # the mapping stays valid while arrays use it
    assert kernel.tobytes() == expected.tobytes()
    kernel[:] = 42.0  # copy-on-write: the process sees its change, the file does not
    assert (kernel == 42.0).all()
    assert data_file.read_bytes() == before
    again = load_checkpoint(str(tmp_path / "c")).get_tensor("dense/kernel")
    assert again.tobytes() == expected.tobytes()


def test_unaligned_tensors_come_back_aligned():
    reader = load_checkpoint(os.path.join(FIXTURES, "savev2_dtypes"))
    unaligned = [n for n in reader if reader.entry(n).dtype_name != "DT_STRING"
                 and reader.entry(n).size and reader.entry(n).offset % reader.entry(n).dtype.alignment]
    assert unaligned  # TensorFlow packs tensors without padding
    for name in unaligned:
        assert reader.get_tensor(name).flags.aligned


def test_reader_is_a_context_manager_and_reopens():
    with load_checkpoint(os.path.join(FIXTURES, "saver_sharded")) as reader:
        first = reader.get_tensor("cpu0/kernel")
    assert reader.get_tensor("cpu0/kernel").tobytes() == first.tobytes()  # reopened lazily
    reader.close()


def test_strings_come_back_like_tensorflow_returns_them():
    reader = load_checkpoint(os.path.join(FIXTURES, "object_based"))
    graph = reader.get_tensor("_CHECKPOINTABLE_OBJECT_GRAPH")  # a scalar: plain bytes
    assert type(graph) is bytes and b"model" in graph
    assert reader.get_tensor("step/.ATTRIBUTES/VARIABLE_VALUE") == 7
    strings = load_checkpoint(os.path.join(FIXTURES, "savev2_dtypes")).get_tensor("strings")
    assert strings.dtype == object and strings.shape == (3,)
    assert strings.tolist() == [b"alpha", b"", b"gamma"]


def test_crc_helpers():
    assert crc32c(b"123456789") == 0xE3069283
    assert crc32c(b"") == 0
    for value in (0, 1, 0xE3069283, 0xFFFFFFFF):
        assert unmask(mask(value)) == value
    array = np.arange(1000, dtype=np.float32)
    assert crc32c(array) == crc32c(array.tobytes()) == crc32c(memoryview(array.tobytes()))
    with pytest.raises(ValueError, match="contiguous"):
        crc32c(array[::2])


def test_package_never_imports_tensorflow(tmp_path):
    """The reader and writer work in a process where importing TensorFlow fails."""
    script = textwrap.dedent(f"""
        import sys
        sys.modules["tensorflow"] = None  # any 'import tensorflow' now raises ImportError
        import numpy as np
        from bertconvert.checkpoint import load_checkpoint, save_checkpoint, list_variables
        reader = load_checkpoint({os.path.join(FIXTURES, "savev2_dtypes")!r})
        total = sum(reader.get_tensor(n).size for n in reader if n != "strings")
        save_checkpoint({str(tmp_path / "out" / "m.ckpt")!r}, {{"w": np.ones(3, np.float32)}})
        assert list_variables({str(tmp_path / "out")!r}) == [("w", [3])]
        loaded = [m for m in sys.modules if m.startswith(("tensorflow", "keras"))]
        assert loaded == ["tensorflow"], loaded
        print("ok", total)
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("ok ")
