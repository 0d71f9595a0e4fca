"""export_model_dir: PyTorch model directory -> Google TF1 checkpoint; TF -> PT -> TF is bit-exact."""
import json
import os

import numpy as np
import pytest
import torch

from bertconvert.checkpoint import load_checkpoint
from bertconvert.convert.run import convert_checkpoint
from bertconvert.errors import MappingError, OutputExistsError
from bertconvert.convert.export import export_model_dir, plan_export
from bertconvert.models.weightfiles import save_state_dict

FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, os.pardir, "fixtures")

TF1_FIXTURES = {"base": "base", "pretraining": "pretraining", "masked-lm": "masked-lm",
                "next-sentence": "next-sentence",
                "sequence-classification": "sequence-classification",
                "token-classification": "token-classification",
                "multiple-choice": "multiple-choice", "question-answering": "question-answering",
                "pretraining-lamb": "pretraining"}


def ckpt(name):
    return os.path.join(FIXTURES, "checkpoints", name)


def npz(name):
    with np.load(os.path.join(FIXTURES, "variables", f"{name}.npz")) as z:
        return {k: z[k] for k in z.files}


def assert_same_variables(prefix, expected):
    reader = load_checkpoint(prefix)
    assert sorted(reader.get_variable_to_shape_map()) == sorted(expected)
    for name, value in expected.items():
        got = reader.get_tensor(name)
        assert got.dtype == value.dtype and got.shape == value.shape, name
        assert got.tobytes() == value.tobytes(), name  # bit-exact, not just numerically equal


#: Heads whose transformers class has no pooler (add_pooling_layer=False): converted without
#: --keep-pooler, their directories hold none, so the exported checkpoint has no bert/pooler.
POOLERLESS = {"masked-lm", "token-classification", "question-answering"}


def without_pooler(variables):
    return {k: v for k, v in variables.items() if not k.startswith("bert/pooler/")}


@pytest.mark.parametrize("fixture", sorted(TF1_FIXTURES))
@pytest.mark.parametrize("format", ["safetensors", "pytorch"])
def test_round_trip_tf_pt_tf_is_bit_exact(tmp_path, fixture, format, caplog):
    convert_checkpoint(ckpt(fixture), tmp_path / "pt", head=TF1_FIXTURES[fixture], format=format,
                       progress=False)
    written = export_model_dir(tmp_path / "pt", tmp_path / "tf" / "bert_model.ckpt", progress=False)
    assert sorted(os.path.basename(p) for p in written) == [
        "bert_config.json", "bert_model.ckpt.data-00000-of-00001", "bert_model.ckpt.index", "vocab.txt"]
    # Optimizer slots do not survive (they were never converted); every weight does, exactly
    # (the pooler only where the head keeps it; a warning says when the checkpoint lacks it).
    expected = npz(fixture)
    pooler_left_out = TF1_FIXTURES[fixture] in POOLERLESS
    if pooler_left_out:
        expected = without_pooler(expected)
    assert_same_variables(str(tmp_path / "tf" / "bert_model.ckpt"), expected)
    warned = [r.getMessage() for r in caplog.records if "holds no pooler" in r.getMessage()]
    assert bool(warned) == pooler_left_out
    if warned:
        assert "--keep-pooler" in warned[0] and "bert/pooler/dense" in warned[0]
    config = json.load(open(tmp_path / "tf" / "bert_config.json"))
    assert config == json.load(open(os.path.join(ckpt(fixture), "bert_config.json")))
    assert open(tmp_path / "tf" / "vocab.txt").read() == open(os.path.join(ckpt(fixture), "vocab.txt")).read()


@pytest.mark.parametrize("head", sorted(POOLERLESS))
def test_keep_pooler_gives_a_complete_tf_checkpoint(tmp_path, head, caplog):
    fixture = head
    convert_checkpoint(ckpt(fixture), tmp_path / "pt", head=head, keep_pooler=True, progress=False)
    export_model_dir(tmp_path / "pt", tmp_path / "tf" / "bert_model.ckpt", progress=False)
    assert_same_variables(str(tmp_path / "tf" / "bert_model.ckpt"), npz(fixture))
    assert not [r for r in caplog.records if "holds no pooler" in r.getMessage()]


def test_a_checkpoint_exported_without_pooler_converts_again(tmp_path):
    convert_checkpoint(ckpt("question-answering"), tmp_path / "pt", progress=False)
    export_model_dir(tmp_path / "pt", tmp_path / "tf" / "bert_model.ckpt", progress=False)
    report = convert_checkpoint(tmp_path / "tf", tmp_path / "again", progress=False)
    assert report.head == "question-answering" and not report.new_keys and not report.dropped
    assert_same_variables(str(tmp_path / "tf" / "bert_model.ckpt"),
                          without_pooler(npz("question-answering")))


def test_tf2_checkpoint_exports_with_google_tf1_names(tmp_path):
    convert_checkpoint(ckpt("tf2-pretraining"), tmp_path / "pt", progress=False)
    export_model_dir(tmp_path / "pt", tmp_path / "tf" / "bert_model.ckpt", progress=False)
    reader = load_checkpoint(str(tmp_path / "tf"))
    tf2 = npz("tf2-pretraining")
    key = "encoder/_transformer_layers/2/_attention_layer/_value_dense/kernel/.ATTRIBUTES/VARIABLE_VALUE"
    np.testing.assert_array_equal(reader.get_tensor("bert/encoder/layer_2/attention/self/value/kernel"),
                                  tf2[key].reshape(32, 32))
    assert "cls/seq_relationship/output_weights" in reader


def test_transformers_save_pretrained_directory_exports(tmp_path):
    transformers = pytest.importorskip("transformers")
    transformers.logging.set_verbosity_error()
    convert_checkpoint(ckpt("question-answering"), tmp_path / "pt", progress=False)
    hf = transformers.BertForQuestionAnswering.from_pretrained(str(tmp_path / "pt"))
    hf.save_pretrained(str(tmp_path / "hf"))
    export_model_dir(tmp_path / "hf", tmp_path / "tf" / "model.ckpt", progress=False)
    # transformers' QA model has no pooler: everything else comes back bit-exact.
    expected = without_pooler(npz("question-answering"))
    assert_same_variables(str(tmp_path / "tf" / "model.ckpt"), expected)


@pytest.mark.tf
def test_tensorflow_restores_the_exported_checkpoint(tmp_path):
    tf = pytest.importorskip("tensorflow")
    convert_checkpoint(ckpt("sequence-classification"), tmp_path / "pt", progress=False)
    export_model_dir(tmp_path / "pt", tmp_path / "tf" / "bert_model.ckpt", progress=False)
    reader = tf.train.load_checkpoint(str(tmp_path / "tf" / "bert_model.ckpt"))
    expected = npz("sequence-classification")
    assert sorted(reader.get_variable_to_shape_map()) == sorted(expected)
    for name, value in expected.items():
        np.testing.assert_array_equal(reader.get_tensor(name), value)


def test_reduced_precision_models_export_as_float32(tmp_path):
    convert_checkpoint(ckpt("base"), tmp_path / "pt", dtype="bfloat16", progress=False)
    export_model_dir(tmp_path / "pt", tmp_path / "tf" / "m.ckpt", progress=False)
    reader = load_checkpoint(str(tmp_path / "tf"))
    emb = reader.get_tensor("bert/embeddings/word_embeddings")
    assert emb.dtype == np.float32
    expected = torch.from_numpy(npz("base")["bert/embeddings/word_embeddings"]).bfloat16().float()
    np.testing.assert_array_equal(emb, expected.numpy())


def test_unmappable_keys_are_all_listed_before_anything_is_written(tmp_path):
    convert_checkpoint(ckpt("pretraining"), tmp_path / "pt", format="pytorch", progress=False)
    state = torch.load(tmp_path / "pt" / "pytorch_model.bin", weights_only=True)
    state["bert.encoder.layer.0.adapter.weight"] = torch.zeros(2)
    state["cls.predictions.decoder.weight"] = state["cls.predictions.decoder.weight"].clone() + 1
    state["bert.embeddings.position_ids"] = torch.arange(64)  # a buffer: silently not a variable
    bad = tmp_path / "bad"
    bad.mkdir()
    torch.save(state, bad / "pytorch_model.bin")
    (bad / "config.json").write_text(open(tmp_path / "pt" / "config.json").read())
    with pytest.raises(MappingError) as info:
        export_model_dir(bad, tmp_path / "tf" / "m.ckpt", progress=False)
    text = str(info.value)
    assert "2 problem(s)" in text
    assert "bert.encoder.layer.0.adapter.weight [2]: no TF1 variable name" in text
    assert "untied decoder cannot be exported" in text
    assert not (tmp_path / "tf").exists()


def test_existing_outputs_are_refused_unless_overwrite(tmp_path):
    convert_checkpoint(ckpt("base"), tmp_path / "pt", progress=False)
    prefix = tmp_path / "tf" / "bert_model.ckpt"
    export_model_dir(tmp_path / "pt", prefix, progress=False)
    with pytest.raises(OutputExistsError, match="overwrite=True"):  # Python callers: keywords
        export_model_dir(tmp_path / "pt", prefix, progress=False)
    # A different bert_config.json beside a new prefix is not clobbered either.
    (tmp_path / "tf" / "bert_config.json").write_text("{}")
    with pytest.raises(OutputExistsError, match="bert_config.json"):
        export_model_dir(tmp_path / "pt", tmp_path / "tf" / "other.ckpt", progress=False)
    assert not (tmp_path / "tf" / "other.ckpt.index").exists()
    export_model_dir(tmp_path / "pt", prefix, overwrite=True, progress=False)
    assert json.load(open(tmp_path / "tf" / "bert_config.json"))["hidden_size"] == 32


def test_plan_export_accepts_legacy_layer_norm_names_and_unprefixed_trunk():
    state = {"embeddings.LayerNorm.gamma": torch.ones(4), "encoder.layer.1.output.dense.weight": torch.zeros(3, 5)}
    out = plan_export(state)
    assert set(out) == {"bert/embeddings/LayerNorm/gamma", "bert/encoder/layer_1/output/dense/kernel"}
    assert out["bert/encoder/layer_1/output/dense/kernel"].shape == (5, 3)


def test_save_state_dict_output_exports_too(tmp_path):
    """A model directory written by bertconvert.models.weightfiles (another producer) exports."""
    convert_checkpoint(ckpt("next-sentence"), tmp_path / "pt", progress=False)
    from bertconvert.models.heads import HEADS

    model = HEADS["next-sentence"].from_pretrained(str(tmp_path / "pt"))
    out = tmp_path / "saved"
    save_state_dict(model.state_dict(), out, format="both")
    (out / "config.json").write_text(open(tmp_path / "pt" / "config.json").read())
    export_model_dir(out, tmp_path / "tf" / "m.ckpt", progress=False)
    assert_same_variables(str(tmp_path / "tf" / "m.ckpt"), npz("next-sentence"))
