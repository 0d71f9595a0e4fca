"""The weights stage of ``verify PRESET_DIR MODEL_DIR``: every tensor the preset holds must be
in MODEL_DIR (a missing one is named, not silently skipped), a ``pytorch_model.bin`` that keeps
the tied MLM decoder passes, and a directory without weights is an input error (exit 2)."""
import os
import shutil

import pytest
from safetensors.numpy import load_file, save_file

from bertconvert import layout
from bertconvert.cli import main
from bertconvert.convert.run import convert_checkpoint
from bertconvert.errors import WeightsError
from bertconvert.verify import verify

pytest.importorskip("h5py")

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
KH = os.path.join(ROOT, "fixtures", "keras_hub")


def golden(name):
    return os.path.join(KH, name + ".outputs.npz")


def test_a_tensor_missing_from_the_model_directory_fails_the_weights_stage(tmp_path):
    model = tmp_path / "m"
    convert_checkpoint(os.path.join(KH, "classifier"), model, progress=False)
    state = load_file(str(model / layout.SAFETENSORS_NAME))
    gone = "bert.encoder.layer.0.output.dense.bias"
    del state[gone]
    save_file(state, str(model / layout.SAFETENSORS_NAME), metadata={"format": "pt"})
    report = verify(os.path.join(KH, "classifier"), str(model), reference=golden("classifier"))
    assert not report.weights.passed
    assert report.first_differing_tensor == gone
    assert report.weights.differing[0]["reason"] == "missing in the model directory"


def test_a_masked_lm_pytorch_bin_with_its_tied_decoder_passes(tmp_path):
    model = tmp_path / "m"
    convert_checkpoint(os.path.join(KH, "masked_lm"), model, progress=False, format="pytorch")
    assert (model / layout.PYTORCH_NAME).is_file()
    report = verify(os.path.join(KH, "masked_lm"), str(model), reference=golden("masked_lm"))
    assert report.weights.passed, report.weights.note
    assert report.passed


def test_a_model_directory_without_weights_is_an_input_error(tmp_path, capsys):
    model = tmp_path / "m"
    convert_checkpoint(os.path.join(KH, "classifier"), model, progress=False)
    os.remove(model / layout.SAFETENSORS_NAME)
    with pytest.raises(WeightsError):
        verify(os.path.join(KH, "classifier"), str(model), reference=golden("classifier"))
    assert main(["verify", os.path.join(KH, "classifier"), str(model),
                 "--reference", golden("classifier")]) == 2
    err = capsys.readouterr().err
    assert "no weights file" in err and "Traceback" not in err
