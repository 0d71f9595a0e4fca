"""A config that does not belong to the checkpoint: the error names the wrong field, with both
numbers, through the library, `bertconvert convert` and `convert_tf_checkpoint_to_pytorch`.

The bad configs are a fixture's own bert_config.json with one field changed, written to
tmp_path; the checkpoints are the committed fixtures (hidden 32, 5 layers, intermediate 37,
64 positions, 2 token types, 4 heads) or TF-free-writer variants of them.
"""
import json
import os

import numpy as np
import pytest

from bertconvert.checkpoint import save_checkpoint
from bertconvert.cli import main
from bertconvert.models.config import BertConfig
from bertconvert.models.shapehints import ShapeEvidence
from bertconvert.convert.run import convert_checkpoint, convert_to_pytorch_file
from bertconvert.errors import MappingError

FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, os.pardir, "fixtures")


def ckpt(name):
    return os.path.join(FIXTURES, "checkpoints", name)


def fixture_config(name):
    with open(os.path.join(ckpt(name), "bert_config.json")) as f:
        return json.load(f)


def bad_config(tmp_path, fixture, **changes):
    """The fixture's bert_config.json with ``changes``, as tmp_path/bad/bert_config.json."""
    path = tmp_path / "bad" / "bert_config.json"
    path.parent.mkdir(exist_ok=True)
    path.write_text(json.dumps(dict(fixture_config(fixture), **changes)))
    return str(path)


def hints_of(text):
    """The lines under "hints:" in a MappingError message (or a CLI's stderr), up to the
    "problems:" that follows them."""
    assert "hints:" in text, text
    hints = text.split("hints:", 1)[1].split("\nproblems:", 1)[0]
    return [line[4:] for line in hints.splitlines() if line.startswith("  - ")]


# field, wrong value, the hint (with {path} for the config's path); the fixture's truth is
# hidden 32, 5 layers, intermediate 37, vocab 191, 64 positions, 2 token types.
CASES = [
    ("hidden_size", 64, "hidden_size in {path} is 64 but the checkpoint's tensors have 32"),
    ("num_hidden_layers", 3, "num_hidden_layers in {path} is 3 but the checkpoint has 5 layers "
                             "(layer_0 to layer_4)"),
    ("num_hidden_layers", 7, "num_hidden_layers in {path} is 7 but the checkpoint has 5 layers "
                             "(layer_0 to layer_4)"),
    ("intermediate_size", 40, "intermediate_size in {path} is 40 but the checkpoint's tensors have 37"),
    ("vocab_size", 500, "vocab_size in {path} is 500 but the checkpoint's word_embeddings has 191 rows"),
    ("max_position_embeddings", 128, "max_position_embeddings in {path} is 128 but the "
                                     "checkpoint has 64 positions"),
    ("type_vocab_size", 3, "type_vocab_size in {path} is 3 but the checkpoint has 2 token types"),
]


def test_fixture_truth():
    config = fixture_config("base")
    assert (config["hidden_size"], config["num_hidden_layers"], config["intermediate_size"],
            config["vocab_size"], config["max_position_embeddings"], config["type_vocab_size"]) \
        == (32, 5, 37, 191, 64, 2)


@pytest.mark.parametrize("field, value, hint", CASES, ids=[f"{c[0]}={c[1]}" for c in CASES])
def test_the_hint_names_the_wrong_field_and_only_it(tmp_path, field, value, hint):
    path = bad_config(tmp_path, "base", **{field: value})
    with pytest.raises(MappingError) as info:
        convert_checkpoint(ckpt("base"), tmp_path / "out", config=path, progress=False)
    text = str(info.value)
    assert hints_of(text) == [hint.format(path=path)]
    assert "factorized" not in text and "ALBERT" not in text
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("field, value, hint", CASES, ids=[f"{c[0]}={c[1]}" for c in CASES])
def test_the_hint_through_the_cli_and_the_legacy_command(tmp_path, capsys, field, value, hint):
    path = bad_config(tmp_path, "base", **{field: value})
    expected = hint.format(path=path)
    out = tmp_path / "out"
    assert main(["convert", ckpt("base"), "--config", path, "--out", str(out), "-q"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("bertconvert convert: error: cannot convert")
    assert hints_of(err) == [expected]
    assert not out.exists()
    dump = tmp_path / "pytorch_model.bin"
    assert main(["convert_tf_checkpoint_to_pytorch", ckpt("base"), path, str(dump), "-q"]) == 2
    assert hints_of(capsys.readouterr().err) == [expected]
    assert not dump.exists()


def test_pretraining_vocab_hint_names_both_tensors(tmp_path):
    path = bad_config(tmp_path, "pretraining", vocab_size=10)
    with pytest.raises(MappingError) as info:
        convert_to_pytorch_file(ckpt("pretraining"), path, tmp_path / "o.bin", progress=False)
    assert hints_of(str(info.value)) == [
        f"vocab_size in {path} is 10 but the checkpoint's word_embeddings has 191 rows",
        f"vocab_size in {path} is 10 but the checkpoint's output_bias has 191 rows"]


def test_two_wrong_fields_get_two_hints(tmp_path):
    path = bad_config(tmp_path, "sequence-classification", hidden_size=64, num_hidden_layers=4)
    with pytest.raises(MappingError) as info:
        convert_checkpoint(ckpt("sequence-classification"), tmp_path / "o", config=path,
                           progress=False)
    assert hints_of(str(info.value)) == [
        f"hidden_size in {path} is 64 but the checkpoint's tensors have 32",
        f"num_hidden_layers in {path} is 4 but the checkpoint has 5 layers (layer_0 to layer_4)"]


# --- factorized embeddings: only when the encoder agrees with the config ---------------------
def _narrow_embeddings(tmp_path, width=16):
    """The base fixture with ALBERT-like [*, 16] embedding tables (encoder still 32 wide)."""
    with np.load(os.path.join(FIXTURES, "variables", "base.npz")) as z:
        values = {k: z[k] for k in z.files}
    for name in ("word_embeddings", "position_embeddings", "token_type_embeddings"):
        full = values[f"bert/embeddings/{name}"]
        values[f"bert/embeddings/{name}"] = np.ascontiguousarray(full[:, :width])
    for name in ("gamma", "beta"):
        key = f"bert/embeddings/LayerNorm/{name}"
        values[key] = values[key][:width].copy()
    prefix = tmp_path / "albert" / "bert_model.ckpt"
    save_checkpoint(str(prefix), values)
    return str(prefix)


def test_factorized_embeddings_hint_only_for_the_real_case(tmp_path):
    prefix = _narrow_embeddings(tmp_path)
    good = bad_config(tmp_path, "base")  # the right config: hidden 32 like the encoder
    with pytest.raises(MappingError) as info:
        convert_checkpoint(prefix, tmp_path / "o", config=good, progress=False)
    assert hints_of(str(info.value)) == [
        "the checkpoint's embeddings are 16 wide but its encoder tensors are 32 wide: factorized "
        "(ALBERT-style) embeddings are not supported; convert a BERT checkpoint"]
    # A wrong hidden_size on top: both things are said, each once.
    wrong = bad_config(tmp_path, "base", hidden_size=64)
    with pytest.raises(MappingError) as info:
        convert_checkpoint(prefix, tmp_path / "o", config=wrong, progress=False)
    hints = hints_of(str(info.value))
    assert hints[0] == f"hidden_size in {wrong} is 64 but the checkpoint's tensors have 32"
    assert len(hints) == 2 and "factorized" in hints[1]


def test_tf2_head_count_is_checked(tmp_path):
    """TF2 keeps heads as an axis: a wrong num_attention_heads would convert "fine" (the
    flattened shapes fit) and compute garbage, so it is a problem, not just a hint."""
    path = bad_config(tmp_path, "tf2-pretraining", num_attention_heads=8)
    with pytest.raises(MappingError) as info:
        convert_checkpoint(ckpt("tf2-pretraining"), tmp_path / "o", config=path, progress=False)
    text = str(info.value)
    # 35 attention tensors (query/key/value kernels and biases, output kernels; 5 layers): two
    # are shown, the rest counted
    assert (f"/_attention_layer/_key_dense/bias/.ATTRIBUTES/VARIABLE_VALUE: has 4 attention heads "
            f"but num_attention_heads in {path} is 8") in text
    assert "and 33 more attention tensors with another head count" in text
    assert hints_of(text) == [f"num_attention_heads in {path} is 8 but the checkpoint's tensors have 4"]
    assert not (tmp_path / "o").exists()


def test_stray_layer_indices_do_not_claim_a_layer_count():
    config = BertConfig(10, hidden_size=8, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=16)
    evidence = ShapeEvidence(config, "cfg.json")
    for index in (0, 1, 9):
        evidence.observe_layer(index)
    assert evidence.hints() == []
    evidence = ShapeEvidence(config, "cfg.json")
    for index in (0, 1, 2):
        evidence.observe_layer(index)
    assert evidence.hints() == ["num_hidden_layers in cfg.json is 2 but the checkpoint has 3 "
                                "layers (layer_0 to layer_2)"]


def test_unexplained_mismatch_falls_back_to_a_general_hint(tmp_path):
    """A head tensor of a fixed size (NSP has 2 classes) that is wrong names no config field."""
    with np.load(os.path.join(FIXTURES, "variables", "next-sentence.npz")) as z:
        values = {k: z[k] for k in z.files}
    values["cls/seq_relationship/output_weights"] = np.zeros((3, 32), np.float32)
    values["cls/seq_relationship/output_bias"] = np.zeros(3, np.float32)
    prefix = tmp_path / "nsp" / "bert_model.ckpt"
    save_checkpoint(str(prefix), values)
    path = bad_config(tmp_path, "next-sentence")
    with pytest.raises(MappingError) as info:
        convert_checkpoint(str(prefix), tmp_path / "o", config=path, progress=False)
    assert hints_of(str(info.value)) == [
        f"check that {path} belongs to this checkpoint: its tensors do not fit the shapes the "
        "config gives"]


def test_embeddings_alone_do_not_claim_to_know_which_it_is():
    """An ALBERT checkpoint's encoder matches no rule: only the embeddings show a width."""
    config = BertConfig(10, hidden_size=64, num_hidden_layers=1, num_attention_heads=4,
                        intermediate_size=16)
    evidence = ShapeEvidence(config, "cfg.json")
    evidence.observe("bert/embeddings/word_embeddings", "bert.embeddings.word_embeddings.weight",
                     "embeddings", ("vocab_size", "hidden_size"), (10, 16))
    assert evidence.hints() == [
        "hidden_size in cfg.json is 64 but the checkpoint's embeddings are 16 wide, and no "
        "encoder tensor shows the hidden size: a wrong hidden_size, or factorized "
        "(ALBERT-style) embeddings, which are not supported"]


def test_loading_and_converting_word_a_wrong_field_alike(tiny_config):
    """from_pretrained's hints come from the same ShapeEvidence as the planner's."""
    from bertconvert.models.shapehints import weight_shape_hints

    evidence = ShapeEvidence(tiny_config, "cfg.json")
    evidence.observe("bert/embeddings/word_embeddings", "bert.embeddings.word_embeddings.weight",
                     "embeddings", ("vocab_size", "hidden_size"), (191, 32))
    assert evidence.hints() == ["vocab_size in cfg.json is 99 but the checkpoint's "
                                "word_embeddings has 191 rows"]
    mismatched = [("bert.embeddings.word_embeddings.weight", (191, 32), (99, 32)),
                  ("bert.encoder.layer.0.intermediate.dense.bias", (40,), (37,))]
    assert weight_shape_hints(tiny_config, mismatched, "cfg.json") == [
        "intermediate_size in cfg.json is 37 but the weights' tensors have 40",
        "vocab_size in cfg.json is 99 but the weights' word_embeddings has 191 rows"]
