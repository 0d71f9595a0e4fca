"""``verify PRESET_DIR MODEL_DIR`` for KerasHub presets: the weights stage against the h5,
outputs against KerasHub's forward pass when keras-hub is installed, else a golden file
(``--reference``, or the ``PRESET_DIR.outputs.npz`` KerasHub's fixture script recorded)."""
import json
import os
import shutil

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

from bertconvert import layout
from bertconvert.cli import main
from bertconvert.convert.run import convert_checkpoint
from bertconvert.errors import MissingDependencyError
from bertconvert.verify import verify
from bertconvert.verify.keras_side import keras_hub_available

pytest.importorskip("h5py")

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
KH = os.path.join(ROOT, "fixtures", "keras_hub")
no_keras_hub = pytest.mark.skipif(keras_hub_available(), reason="keras-hub is installed: it "
                                  "is the reference then, not the golden file")


def read_layers(name):
    with open(os.path.join(KH, name, "config.json")) as f:
        return json.load(f)["config"]["num_layers"]


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    root = tmp_path_factory.mktemp("kh-verify")
    done = {}

    def get(name):
        if name not in done:
            done[name] = root / name
            convert_checkpoint(os.path.join(KH, name), done[name], progress=False)
        return done[name]
    return get


@no_keras_hub
@pytest.mark.parametrize("name", ["backbone_uncased", "backbone_cased", "classifier",
                                  "masked_lm", "text_embedder", "backbone_bf16"])
def test_converted_presets_verify(converted, name, tmp_path, capsys):
    report_path = tmp_path / "r.json"
    assert main(["verify", os.path.join(KH, name), str(converted(name)),
                 "--json", str(report_path)]) == 0
    assert "PASS" in capsys.readouterr().out
    report = json.loads(report_path.read_text())
    assert report["weights"]["passed"] and report["weights"]["tensors"] > 0
    assert "golden file" in report["reference"]
    names = [s["name"] for s in report["stages"]]
    assert "full sequence_output" in names and "full embeddings" in names
    layers = read_layers(name)
    assert [f"single layer {i}" for i in range(layers)] == [n for n in names if n.startswith("single layer")]
    head_output = {"classifier": "logits", "masked_lm": "mlm_logits",
                   "text_embedder": "embedding"}.get(name)
    if head_output:
        assert f"pairs {head_output}" in names


def test_a_changed_tensor_fails_the_weights_stage(converted, tmp_path, capsys):
    model = tmp_path / "m"
    shutil.copytree(converted("classifier"), model)
    state = load_file(str(model / layout.SAFETENSORS_NAME))
    state["classifier.bias"] = state["classifier.bias"].copy()
    state["classifier.bias"][0] = np.nextafter(state["classifier.bias"][0], np.float32(1))
    save_file(state, str(model / layout.SAFETENSORS_NAME), metadata={"format": "pt"})
    report = verify(os.path.join(KH, "classifier"), str(model),
                    reference=os.path.join(KH, "classifier.outputs.npz"))
    assert not report.passed and report.first_differing_tensor == "classifier.bias"
    assert main(["verify", os.path.join(KH, "classifier"), str(model), "--reference",
                 os.path.join(KH, "classifier.outputs.npz")]) == 1


def test_the_mlm_head_without_its_own_gelu_fails_on_the_logits(converted, tmp_path):
    """A config.json without mlm_head_act/eps (the head computing what transformers does)
    passes the weights and the sequence output but not KerasHub's MLM logits."""
    model = tmp_path / "m"
    shutil.copytree(converted("masked_lm"), model)
    config = json.loads((model / layout.CONFIG_NAME).read_text())
    del config["mlm_head_act"], config["mlm_head_layer_norm_eps"]
    (model / layout.CONFIG_NAME).write_text(json.dumps(config))
    report = verify(os.path.join(KH, "masked_lm"), str(model),
                    reference=os.path.join(KH, "masked_lm.outputs.npz"), atol=1e-5, rtol=0)
    assert report.weights.passed
    assert report.first_failure == "single mlm_logits"


def test_explicit_reference_file(converted, tmp_path):
    golden = tmp_path / "g.npz"
    shutil.copyfile(os.path.join(KH, "text_embedder.outputs.npz"), golden)
    report = verify(os.path.join(KH, "text_embedder"), str(converted("text_embedder")),
                    reference=str(golden))
    assert report.passed and str(golden) in report.reference


@no_keras_hub
def test_no_reference_at_all_is_a_named_error(converted, tmp_path, capsys):
    preset = tmp_path / "backbone_uncased"
    shutil.copytree(os.path.join(KH, "backbone_uncased"), preset)  # no golden file beside it
    with pytest.raises(MissingDependencyError, match="keras-hub"):
        verify(str(preset), str(converted("backbone_uncased")))
    assert main(["verify", str(preset), str(converted("backbone_uncased"))]) == 2


def test_a_model_directory_of_another_head_is_refused(converted, capsys):
    assert main(["verify", os.path.join(KH, "classifier"), str(converted("backbone_uncased"))]) == 2
    assert "sequence-classification" in capsys.readouterr().err


def test_keras_hub_is_the_reference_when_installed(converted):
    pytest.importorskip("keras_hub")
    report = verify(os.path.join(KH, "masked_lm"), str(converted("masked_lm")))
    assert report.passed and "KerasHub" in report.reference


def test_a_wrong_layer_is_named_by_its_stage(converted, tmp_path):
    model = tmp_path / "m"
    shutil.copytree(converted("classifier"), model)
    state = load_file(str(model / layout.SAFETENSORS_NAME))
    key = "bert.encoder.layer.5.intermediate.dense.weight"
    state[key] = state[key] + np.float32(0.5)
    save_file(state, str(model / layout.SAFETENSORS_NAME), metadata={"format": "pt"})
    report = verify(os.path.join(KH, "classifier"), str(model),
                    reference=os.path.join(KH, "classifier.outputs.npz"))
    assert report.first_differing_tensor == key
    assert report.first_output_failure == "single layer 5"


def test_tf_only_flags_are_refused_for_a_preset(converted, capsys):
    assert main(["verify", os.path.join(KH, "classifier"), str(converted("classifier")),
                 "--gelu", "exact"]) == 2
    assert "--gelu" in capsys.readouterr().err
