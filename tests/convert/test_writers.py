"""The one-tensor-at-a-time safetensors and torch.save writers."""
import errno

import ml_dtypes
import numpy as np
import pytest
import torch
from safetensors.numpy import save
from safetensors.torch import load_file

from bertconvert.convert import writers
from bertconvert.convert.writers import (SafetensorsStreamWriter, TensorSpec, TorchSaveWriter,
                                         TorchZipStreamWriter, safetensors_order, torch_zip_writer)

SPECS = [TensorSpec("a.weight", "float32", (3, 5)), TensorSpec("b", "bfloat16", (7,)),
         TensorSpec("empty", "float16", (0, 4)), TensorSpec("scalar", "float32", ())]


def arrays():
    rng = np.random.default_rng(0)
    bf16 = torch.randn(7, generator=torch.Generator().manual_seed(0)).bfloat16()
    return {"a.weight": rng.standard_normal((3, 5)).astype(np.float32),
            "b": bf16.view(torch.int16).numpy(), "empty": np.zeros((0, 4), np.float16),
            "scalar": np.array(2.5, np.float32)}, bf16


def write_all(writer, values):
    for spec in SPECS:
        writer.write(spec.name, values[spec.name])
    writer.close()


def test_safetensors_stream_is_a_valid_file(tmp_path):
    values, bf16 = arrays()
    with open(tmp_path / "m.safetensors", "wb") as f:
        write_all(SafetensorsStreamWriter(f, SPECS, metadata={"format": "pt"}), values)
    loaded = load_file(tmp_path / "m.safetensors")
    assert torch.equal(loaded["a.weight"], torch.from_numpy(values["a.weight"]))
    assert torch.equal(loaded["b"], bf16) and loaded["empty"].shape == (0, 4)
    assert loaded["scalar"].item() == 2.5
    header_len = int.from_bytes(open(tmp_path / "m.safetensors", "rb").read(8), "little")
    assert header_len % 8 == 0


@pytest.mark.parametrize("cls", [TorchZipStreamWriter, TorchSaveWriter])
def test_torch_zip_loads_with_weights_only_and_keeps_ties(tmp_path, cls):
    values, bf16 = arrays()
    with open(tmp_path / "m.bin", "wb") as f:
        writer = cls(f, SPECS, aliases={"tied": "a.weight"})
        for spec in SPECS:
            scratch = values[spec.name].copy()
            writer.write(spec.name, scratch)
            scratch.reshape(-1).view(np.uint8)[:] = 0  # the converter reuses its buffers
        writer.close()
    for mmap in (False, True):
        loaded = torch.load(tmp_path / "m.bin", weights_only=True, mmap=mmap)
        assert list(loaded) == ["a.weight", "b", "empty", "scalar", "tied"]
        assert torch.equal(loaded["a.weight"], torch.from_numpy(values["a.weight"]))
        assert torch.equal(loaded["b"], bf16) and loaded["scalar"].shape == ()
        assert loaded["tied"].data_ptr() == loaded["a.weight"].data_ptr()


def test_torch_zip_writer_streams_unless_switched_to_the_plain_fallback(tmp_path, monkeypatch):
    with open(tmp_path / "m.bin", "wb") as f:
        writer = torch_zip_writer(f, SPECS)
        assert isinstance(writer, TorchZipStreamWriter)
        writer.abort()
        monkeypatch.setattr(writers, "STREAM_TORCH_ZIP", False)
        assert isinstance(torch_zip_writer(f, SPECS), TorchSaveWriter)


@pytest.mark.parametrize("cls", [SafetensorsStreamWriter, TorchZipStreamWriter, TorchSaveWriter])
def test_order_dtype_shape_and_completeness_are_enforced(tmp_path, cls):
    values, _ = arrays()
    with open(tmp_path / "x", "wb") as f:
        writer = cls(f, SPECS)
        with pytest.raises(ValueError, match="expected tensor a.weight next"):
            writer.write("b", values["b"])
        with pytest.raises(ValueError, match="declared float32"):
            writer.write("a.weight", values["a.weight"].astype(np.float64))
        writer.write("a.weight", values["a.weight"])
        with pytest.raises(ValueError, match="never written"):
            writer.close()
        if hasattr(writer, "abort"):
            writer.abort()
    with pytest.raises(ValueError, match="duplicate"):
        cls(open(tmp_path / "y", "wb"), SPECS + SPECS[:1])


def test_torch_writer_survives_a_failing_stream():
    """A write error must surface as the OSError, not abort the process in a destructor."""
    class Full:
        def __init__(self):
            self.left = 300

        def write(self, data):
            self.left -= memoryview(data).nbytes
            if self.left < 0:
                raise OSError(errno.ENOSPC, "No space left on device")
            return memoryview(data).nbytes

        def flush(self):
            pass

    values, _ = arrays()
    with pytest.raises(OSError) as info:
        write_all(TorchZipStreamWriter(Full(), SPECS), values)
    assert info.value.errno == errno.ENOSPC
    import gc
    gc.collect()  # the C++ writer's destructor runs here; it must have nothing left to do


def test_safetensors_order_makes_the_file_identical_to_safetensors_output(tmp_path):
    """Mixed dtypes and names: declared in safetensors_order, the stream is safetensors' own file."""
    rng = np.random.default_rng(1)
    values = {"z.bias": rng.standard_normal(5).astype(np.float32),
              "a.weight": rng.standard_normal((3, 4)).astype(np.float16),
              "m": rng.standard_normal((2, 2)).astype(ml_dtypes.bfloat16),
              "b": rng.standard_normal(3),  # float64
              "ids": np.arange(4, dtype=np.int64), "e": np.zeros((0, 2), np.float32)}
    specs = safetensors_order([TensorSpec(k, v.dtype.name, v.shape) for k, v in values.items()])
    with open(tmp_path / "m.safetensors", "wb") as f:
        writer = SafetensorsStreamWriter(f, specs, metadata={"format": "pt"})
        for spec in specs:
            raw = values[spec.name].reshape(-1).view(np.uint8)
            writer.write_chunks(spec.name, [raw[:3], raw[3:]])  # pieces of any size
        writer.close()
    assert (tmp_path / "m.safetensors").read_bytes() == save(values, metadata={"format": "pt"})


def test_write_chunks_checks_order_and_size(tmp_path):
    with open(tmp_path / "x", "wb") as f:
        writer = SafetensorsStreamWriter(f, SPECS)
        with pytest.raises(ValueError, match="expected tensor a.weight next"):
            writer.write_chunks("b", [b"\0" * 14])
        with pytest.raises(ValueError, match="got 59 bytes"):
            writer.write_chunks("a.weight", [b"\0" * 59])
        with pytest.raises(ValueError, match="got more"):
            writer.write_chunks("a.weight", [b"\0" * 60, b"\0"])
