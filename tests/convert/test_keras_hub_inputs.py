"""KerasHub presets: bad input gets a named error (exit 2) and publishes nothing; inspect lists
every h5 dataset with its target; the tokenizer and transformers agree with KerasHub.

The broken presets are copies of fixtures/keras_hub's with one thing changed each.
"""
import json
import os
import shutil
import sys

import numpy as np
import pytest

from bertconvert import BertTokenizer, layout
from bertconvert.cli import main
from bertconvert.convert.run import convert_checkpoint
from bertconvert.errors import (MappingError, MissingDependencyError, PresetFileMissingError,
                                PresetFormatError, UnsupportedPresetError)

pytest.importorskip("h5py")

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
KH = os.path.join(ROOT, "fixtures", "keras_hub")


def copy_preset(tmp_path, name):
    dst = tmp_path / name
    shutil.copytree(os.path.join(KH, name), dst)
    return dst


def edit_json(path, change):
    with open(path) as f:
        data = json.load(f)
    change(data)
    with open(path, "w") as f:
        json.dump(data, f)


def refused(capsys, preset, out, error, *words):
    """Converting ``preset`` raises ``error``, the CLI exits 2 with one line naming ``words``,
    and ``out`` does not exist afterwards."""
    with pytest.raises(error) as e:
        convert_checkpoint(preset, out, progress=False)
    assert main(["convert", str(preset), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and all(w in err for w in words), err
    assert not os.path.exists(out)
    return str(e.value)


def test_another_architecture_is_refused_by_name(tmp_path, capsys):
    preset = copy_preset(tmp_path, "backbone_uncased")
    edit_json(preset / "config.json", lambda d: d.update(registered_name="keras_hub>GemmaBackbone",
                                                          class_name="GemmaBackbone"))
    refused(capsys, preset, tmp_path / "out", UnsupportedPresetError, "keras_hub>GemmaBackbone")


def test_another_task_is_refused_by_name(tmp_path, capsys):
    preset = copy_preset(tmp_path, "classifier")
    edit_json(preset / "task.json", lambda d: d.update(registered_name="keras_hub>BertTokenClassifierX"))
    refused(capsys, preset, tmp_path / "out", UnsupportedPresetError, "BertTokenClassifierX")


def test_truncated_weights_file(tmp_path, capsys):
    preset = copy_preset(tmp_path, "backbone_uncased")
    path = preset / "model.weights.h5"
    data = path.read_bytes()
    path.write_bytes(data[:len(data) // 2])
    refused(capsys, preset, tmp_path / "out", PresetFormatError, "model.weights.h5", "truncated")


def test_non_hdf5_weights_file(tmp_path, capsys):
    preset = copy_preset(tmp_path, "backbone_uncased")
    (preset / "model.weights.h5").write_bytes(b"PK\x03\x04 this is a zip, not HDF5" * 10)
    refused(capsys, preset, tmp_path / "out", PresetFormatError, "not an HDF5 file")


@pytest.mark.parametrize("field, value, words", [
    ("vocabulary_size", 60, ("reversible_embedding", "vocabulary_size 60")),
    ("intermediate_dim", 20, ("_feedforward_intermediate_dense", "intermediate_dim 20")),
    ("num_heads", 4, ("query_dense", "num_heads 4")),
    ("num_layers", 3, ("encoder.layer.2", "no dataset")),
])
def test_shape_disagreeing_with_config_json(tmp_path, capsys, field, value, words):
    preset = copy_preset(tmp_path, "backbone_uncased")
    edit_json(preset / "config.json", lambda d: d["config"].update({field: value}))
    message = refused(capsys, preset, tmp_path / "out", MappingError, words[0])
    assert all(w in message for w in words), message


def test_task_preset_without_task_weights(tmp_path, capsys):
    preset = copy_preset(tmp_path, "masked_lm")
    os.remove(preset / "task.weights.h5")
    refused(capsys, preset, tmp_path / "out", PresetFileMissingError, "task.weights.h5")


def test_text_embedder_needs_no_task_weights(tmp_path):
    assert not os.path.exists(os.path.join(KH, "text_embedder", "task.weights.h5"))
    report = convert_checkpoint(os.path.join(KH, "text_embedder"), tmp_path / "o", progress=False)
    assert report.head == layout.BASE


def test_existing_output_is_left_alone(tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    assert main(["convert", os.path.join(KH, "backbone_uncased"), "--out", str(out)]) == 2
    assert os.listdir(out) == ["keep.txt"]


def test_flags_a_preset_decides_itself_are_refused(tmp_path, capsys):
    assert main(["convert", os.path.join(KH, "classifier"), "--out", str(tmp_path / "o"),
                 "--head", "masked-lm"]) == 2
    assert "sequence-classification" in capsys.readouterr().err
    assert main(["convert", os.path.join(KH, "classifier"), "--out", str(tmp_path / "o"),
                 "--gelu", "exact"]) == 2
    assert "KerasHub preset" in capsys.readouterr().err
    assert not os.path.exists(tmp_path / "o")


def test_without_h5py_the_error_says_what_to_install(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "h5py", None)  # import h5py now raises ImportError
    with pytest.raises(MissingDependencyError, match="h5py"):
        convert_checkpoint(os.path.join(KH, "backbone_uncased"), tmp_path / "o", progress=False)
    assert not os.path.exists(tmp_path / "o")


# --- inspect ---------------------------------------------------------------------------------
def test_inspect_lists_every_dataset_with_its_target(capsys):
    import h5py
    assert main(["inspect", os.path.join(KH, "classifier"), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    names = []
    for file in ("model.weights.h5", "task.weights.h5"):
        with h5py.File(os.path.join(KH, "classifier", file), "r") as f:
            f.visititems(lambda n, o: names.append(f"{file}/{n}") if isinstance(o, h5py.Dataset) else None)
    rows = {r["name"]: r for r in info["variables"]}
    assert sorted(rows) == sorted(names)
    assert info["head"] == layout.SEQUENCE_CLASSIFICATION and info["num_labels"] == 3
    assert rows["model.weights.h5/layers/transformer_encoder_10/_feedforward_output_dense/vars/0"][
        "target"] == "bert.encoder.layer.10.output.dense.weight"
    assert rows["model.weights.h5/layers/transformer_encoder/_self_attention_layer/query_dense/vars/0"][
        "target"] == "bert.encoder.layer.0.attention.self.query.weight"
    assert rows["task.weights.h5/layers/dense/vars/0"]["target"] == "classifier.weight"
    assert rows["task.weights.h5/optimizer/vars/0"]["target"] == "skipped"
    # listed in numeric layer order: _2 before _10
    order = [r["name"] for r in info["variables"]]
    two = next(i for i, n in enumerate(order) if "transformer_encoder_2/" in n)
    ten = next(i for i, n in enumerate(order) if "transformer_encoder_10/" in n)
    assert two < ten


def test_inspect_reports_a_shape_problem(tmp_path, capsys):
    preset = copy_preset(tmp_path, "backbone_uncased")
    edit_json(preset / "config.json", lambda d: d["config"].update(vocabulary_size=60))
    assert main(["inspect", str(preset)]) == 2
    assert "vocabulary_size 60" in capsys.readouterr().out


# --- tokenizer -------------------------------------------------------------------------------
def _pack(tok, text, length):
    """[CLS] a [SEP] (b [SEP]) padded to ``length``, truncated round-robin as KerasHub's packer."""
    first, second = (text, None) if isinstance(text, str) else text
    a, b = tok.tokenize(first), tok.tokenize(second) if second is not None else []
    while len(a) + len(b) > length - (3 if second is not None else 2):
        (a if len(a) > len(b) else b).pop()
    tokens = ["[CLS]"] + a + ["[SEP]"] + (b + ["[SEP]"] if second is not None else [])
    ids = tok.convert_tokens_to_ids(tokens)
    return ids + [0] * (length - len(ids))


@pytest.mark.parametrize("name", ["backbone_uncased", "backbone_cased", "classifier"])
def test_converted_tokenizer_gives_keras_hub_ids(tmp_path, name):
    out = tmp_path / name
    convert_checkpoint(os.path.join(KH, name), out, progress=False)
    tok = BertTokenizer.from_pretrained(str(out))
    assert tok.strip_accents is False
    with open(os.path.join(KH, f"{name}.tokens.json"), encoding="utf-8") as f:
        rec = json.load(f)
    for batch in rec["batches"].values():
        for text, ids in zip(batch["texts"], batch["token_ids"]):
            assert _pack(tok, text, rec["sequence_length"]) == ids, text
    # Google's default (accents stripped when lower-casing) would not give them:
    if rec["lowercase"]:
        google = BertTokenizer(str(out / layout.VOCAB_NAME), do_lower_case=True)
        assert google.tokenize("Café") == ["cafe"] and tok.tokenize("Café") == ["café"]


def test_transformers_loads_the_same_tokenizer_settings(tmp_path):
    transformers = pytest.importorskip("transformers")
    out = tmp_path / "t"
    convert_checkpoint(os.path.join(KH, "backbone_uncased"), out, progress=False)
    theirs = transformers.BertTokenizer.from_pretrained(str(out))
    ours = BertTokenizer.from_pretrained(str(out))
    with open(os.path.join(KH, "backbone_uncased.tokens.json"), encoding="utf-8") as f:
        rec = json.load(f)
    for text, ids in zip(rec["batches"]["single"]["texts"], rec["batches"]["single"]["token_ids"]):
        assert theirs.tokenize(text) == ours.tokenize(text)
        got = theirs(text, padding="max_length", max_length=rec["sequence_length"])["input_ids"]
        assert got == ids, text


def test_transformers_loads_the_models(tmp_path):
    """transformers computes the backbone and classifier as KerasHub did; for the masked-LM
    head it uses its single hidden_act (tanh GELU) and eps 1e-12, so its logits differ by
    ~3e-4 on this fixture (README)."""
    transformers = pytest.importorskip("transformers")
    import torch
    for name, cls, key in (("classifier", "BertForSequenceClassification", "logits"),
                           ("masked_lm", "BertForMaskedLM", "mlm_logits")):
        out = tmp_path / name
        convert_checkpoint(os.path.join(KH, name), out, progress=False)
        model = getattr(transformers, cls).from_pretrained(str(out)).eval()
        npz = np.load(os.path.join(KH, f"{name}.outputs.npz"))
        ids = "masked_token_ids" if name == "masked_lm" else "token_ids"
        with torch.no_grad():
            logits = model(input_ids=torch.from_numpy(npz[f"single.{ids}"]).long(),
                           token_type_ids=torch.from_numpy(npz["single.segment_ids"]).long(),
                           attention_mask=torch.from_numpy(npz["single.padding_mask"]).long()).logits
        if name == "masked_lm":
            pos = torch.from_numpy(npz["single.mask_positions"]).long()
            logits = torch.gather(logits, 1, pos[:, :, None].expand(-1, -1, logits.shape[-1]))
        err = float(np.abs(logits.numpy() - npz[f"single.{key}"]).max())
        if name == "classifier":
            assert err <= 1e-5
        else:
            assert 1e-4 < err < 1e-2


def test_output_may_not_replace_the_preset(tmp_path, capsys):
    preset = copy_preset(tmp_path, "backbone_uncased")
    before = sorted(os.listdir(preset))
    for out in (preset, tmp_path, preset / "assets" / "tokenizer"):
        assert main(["convert", str(preset), "--out", str(out), "--overwrite"]) == 2
        assert "input" in capsys.readouterr().err
    assert sorted(os.listdir(preset)) == before
    assert main(["convert", str(preset), "--out", str(preset / "converted")]) == 0


def test_a_dataset_stored_in_another_file_is_refused(tmp_path, capsys):
    """HDF5 external storage would make the converter read (and publish) any file's bytes."""
    import h5py
    preset = copy_preset(tmp_path, "backbone_uncased")
    secret = tmp_path / "secret.bin"
    secret.write_bytes(b"\x00" * (2 * 8 * 4))
    with h5py.File(preset / "model.weights.h5", "a") as f:
        del f["layers/embedding/vars/0"]
        f.create_dataset("layers/embedding/vars/0", shape=(2, 8), dtype="float32",
                         external=[(str(secret), 0, h5py.h5f.UNLIMITED)])
    refused(capsys, preset, tmp_path / "out", PresetFormatError, "other files")


def test_keras_nlp_names_of_the_same_classes(tmp_path):
    """Presets saved by KerasNLP (before keras-hub) register the same classes under
    keras_nlp>, and the classifier as BertClassifier."""
    preset = copy_preset(tmp_path, "classifier")
    edit_json(preset / "config.json", lambda d: d.update(registered_name="keras_nlp>BertBackbone"))
    edit_json(preset / "task.json", lambda d: d.update(registered_name="keras_nlp>BertClassifier"))
    report = convert_checkpoint(preset, tmp_path / "o", progress=False)
    assert report.head == layout.SEQUENCE_CLASSIFICATION and report.num_labels == 3


def test_a_preset_without_a_tokenizer(tmp_path):
    preset = copy_preset(tmp_path, "backbone_uncased")
    shutil.rmtree(preset / "assets")
    os.remove(preset / "tokenizer.json")
    report = convert_checkpoint(preset, tmp_path / "o", progress=False)
    assert sorted(os.listdir(tmp_path / "o")) == sorted([
        layout.CONFIG_NAME, layout.GOOGLE_CONFIG_NAME, layout.SAFETENSORS_NAME, layout.REPORT_NAME])
    assert any("no assets" in n for n in report.notes)
