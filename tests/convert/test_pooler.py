"""The pooler of masked-LM, token-classification and question-answering conversions.

transformers builds those three classes with ``add_pooling_layer=False`` and reports a
``bert.pooler.*`` key as UNEXPECTED; so convert leaves the pooler out by default, lists it as
dropped in conversion.json, and writes it only with ``keep_pooler`` / ``--keep-pooler``. Our
classes keep 0.6.2's structure and initialise the unused pooler when loading such a directory,
saying so once at INFO. The expectations here come from this file's own tables and the
fixtures' npz (values TensorFlow wrote), not from bertconvert's layout table.
"""
import contextlib
import io
import json
import logging
import os

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from bertconvert.checkpoint import load_checkpoint
from bertconvert.cli import main
from bertconvert.convert.run import convert_checkpoint, convert_to_pytorch_file
from bertconvert.convert.stream import state_dict_from_checkpoint
from bertconvert.models.heads import HEADS
from bertconvert.verify.weights import compare_weights

FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, os.pardir, "fixtures")

#: head -> (fixture, transformers class); these classes have no pooler in transformers
POOLERLESS = {"masked-lm": ("masked-lm", "BertForMaskedLM"),
              "token-classification": ("token-classification", "BertForTokenClassification"),
              "question-answering": ("question-answering", "BertForQuestionAnswering")}
#: heads whose transformers class has a pooler: it is always written
POOLERED = {"base": "base", "pretraining": "pretraining", "next-sentence": "next-sentence",
            "sequence-classification": "sequence-classification",
            "multiple-choice": "multiple-choice"}
POOLER_KEYS = {"bert.pooler.dense.weight", "bert.pooler.dense.bias"}
POOLER_VARIABLES = {"bert/pooler/dense/kernel", "bert/pooler/dense/bias"}


def ckpt(name):
    return os.path.join(FIXTURES, "checkpoints", name)


def npz(name):
    with np.load(os.path.join(FIXTURES, "variables", f"{name}.npz")) as z:
        return {k: z[k] for k in z.files}


def weights(out):
    return load_file(os.path.join(out, "model.safetensors"))


def conversion_json(out):
    with open(os.path.join(out, "conversion.json")) as f:
        return json.load(f)


@pytest.fixture(scope="module")
def transformers():
    transformers = pytest.importorskip("transformers")
    transformers.logging.set_verbosity_error()
    return transformers


@pytest.mark.parametrize("head", sorted(POOLERLESS))
def test_default_conversion_loads_into_transformers_with_no_missing_or_unexpected_key(
        tmp_path, head, transformers):
    fixture, class_name = POOLERLESS[head]
    out = tmp_path / "out"
    report = convert_checkpoint(ckpt(fixture), out, head=head, progress=False)
    assert not POOLER_KEYS & set(weights(out))
    _, info = getattr(transformers, class_name).from_pretrained(str(out), output_loading_info=True)
    assert {k: list(v) for k, v in info.items()} == {
        "missing_keys": [], "unexpected_keys": [], "mismatched_keys": [], "error_msgs": []}
    # conversion.json says what was dropped and why, naming the way to keep it.
    data = conversion_json(out)
    dropped = {d["name"]: d for d in data["dropped"]}
    assert set(dropped) == POOLER_VARIABLES
    assert {d["key"] for d in dropped.values()} == POOLER_KEYS
    assert all("keep_pooler=True" in d["reason"] and "add_pooling_layer=False" in d["reason"]
               for d in dropped.values())
    assert data["pooler_written"] is False and report.pooler_written is False
    assert not data["new_keys"]


@pytest.mark.parametrize("head", sorted(POOLERLESS))
def test_keep_pooler_writes_the_checkpoints_pooler_bit_for_bit(tmp_path, head, transformers):
    fixture, class_name = POOLERLESS[head]
    out = tmp_path / "out"
    report = convert_checkpoint(ckpt(fixture), out, head=head, keep_pooler=True, progress=False)
    state, tf = weights(out), npz(fixture)
    np.testing.assert_array_equal(state["bert.pooler.dense.weight"].numpy(),
                                  tf["bert/pooler/dense/kernel"].T)
    np.testing.assert_array_equal(state["bert.pooler.dense.bias"].numpy(),
                                  tf["bert/pooler/dense/bias"])
    assert report.pooler_written is True and not report.dropped
    # Which is what transformers then reports as unexpected: the reason for the default.
    _, info = getattr(transformers, class_name).from_pretrained(str(out), output_loading_info=True)
    assert set(info["unexpected_keys"]) == POOLER_KEYS


@pytest.mark.parametrize("head", sorted(POOLERED))
def test_heads_whose_transformers_class_has_a_pooler_keep_it(tmp_path, head):
    out = tmp_path / "out"
    report = convert_checkpoint(ckpt(POOLERED[head]), out, head=head, progress=False)
    keys = set(weights(out))
    prefix = "" if head == "base" else "bert."
    assert {prefix + k.removeprefix("bert.") for k in POOLER_KEYS} <= keys
    assert report.pooler_written is True
    assert not [d for d in report.dropped if "pooler" in d["key"]]


@pytest.mark.parametrize("head", sorted(POOLERLESS))
def test_our_classes_initialise_the_unused_pooler_and_say_so_once_at_info(tmp_path, head, caplog,
                                                                          tiny_batch):
    fixture, _ = POOLERLESS[head]
    convert_checkpoint(ckpt(fixture), tmp_path / "default", head=head, progress=False)
    convert_checkpoint(ckpt(fixture), tmp_path / "kept", head=head, keep_pooler=True,
                       progress=False)
    with caplog.at_level(logging.INFO, logger="bertconvert"):
        model, info = HEADS[head].from_pretrained(str(tmp_path / "default"),
                                                  output_loading_info=True)
    said = [r for r in caplog.records if "pooler" in r.getMessage()]
    assert len(said) == 1 and said[0].levelno == logging.INFO
    assert "--keep-pooler" in said[0].getMessage()
    assert info["missing_keys"] == [] and info["unexpected_keys"] == []
    assert set(info["initialized_keys"]) == POOLER_KEYS
    assert not model.bert.pooler.dense.weight.is_meta  # initialised, usable
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="bertconvert"):
        kept = HEADS[head].from_pretrained(str(tmp_path / "kept"))
    assert not [r for r in caplog.records if "pooler" in r.getMessage()]
    # The head's outputs never touch the pooler: identical with or without it.
    ids = tiny_batch["input_ids"] % 99
    with torch.no_grad():
        a = model.eval()(ids, tiny_batch["token_type_ids"], tiny_batch["attention_mask"])
        b = kept.eval()(ids, tiny_batch["token_type_ids"], tiny_batch["attention_mask"])
    for x, y in zip(a if isinstance(a, tuple) else (a,), b if isinstance(b, tuple) else (b,)):
        assert torch.equal(x, y)


def test_in_memory_conversion_keeps_the_checkpoints_pooler(caplog):
    tf = npz("question-answering")
    converted = state_dict_from_checkpoint(ckpt("question-answering"))
    np.testing.assert_array_equal(converted.state_dict["bert.pooler.dense.bias"].numpy(),
                                  tf["bert/pooler/dense/bias"])
    assert not converted.report.dropped
    dropped = state_dict_from_checkpoint(ckpt("question-answering"), keep_pooler=False)
    assert not POOLER_KEYS & set(dropped.state_dict)
    with caplog.at_level(logging.INFO, logger="bertconvert"):
        model = HEADS["question-answering"].from_pretrained(ckpt("question-answering"),
                                                            from_tf=True)
    np.testing.assert_array_equal(model.bert.pooler.dense.bias.detach().numpy(),
                                  tf["bert/pooler/dense/bias"])
    assert not [r for r in caplog.records if "holds no pooler" in r.getMessage()]


def test_legacy_file_follows_the_same_default(tmp_path):
    config = os.path.join(ckpt("masked-lm"), "bert_config.json")
    convert_to_pytorch_file(ckpt("masked-lm"), config, tmp_path / "a.bin", head="masked-lm",
                            progress=False)
    assert not POOLER_KEYS & set(torch.load(tmp_path / "a.bin", weights_only=True))
    assert main(["-q", "convert_tf_checkpoint_to_pytorch", ckpt("masked-lm"), config,
                 str(tmp_path / "b.bin"), "--head", "masked-lm", "--keep-pooler"]) == 0
    assert POOLER_KEYS <= set(torch.load(tmp_path / "b.bin", weights_only=True))


def _cli(*argv):
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(list(argv))
    return code, out.getvalue()


def test_cli_keep_pooler_and_the_summary(tmp_path):
    code, text = _cli("-q", "convert", ckpt("masked-lm"), "--out", str(tmp_path / "d"))
    assert code == 0 and "2 dropped (the pooler, unused by masked-lm; --keep-pooler keeps it)" in text
    assert not POOLER_KEYS & set(weights(tmp_path / "d"))
    assert "--keep-pooler" in conversion_json(tmp_path / "d")["dropped"][0]["reason"]
    code, text = _cli("-q", "convert", ckpt("masked-lm"), "--out", str(tmp_path / "k"),
                      "--keep-pooler")
    assert code == 0 and "dropped" not in text
    assert POOLER_KEYS <= set(weights(tmp_path / "k"))


def test_inspect_shows_the_pooler_as_converting_treats_it():
    code, text = _cli("inspect", ckpt("question-answering"), "--json")
    rows = {r["name"]: r for r in json.loads(text)["variables"]}
    assert code == 0
    assert {rows[n]["target"] for n in POOLER_VARIABLES} == {"dropped"}
    assert "--keep-pooler" in rows["bert/pooler/dense/bias"]["detail"]
    code, text = _cli("inspect", ckpt("question-answering"), "--json", "--keep-pooler")
    rows = {r["name"]: r for r in json.loads(text)["variables"]}
    assert rows["bert/pooler/dense/bias"]["target"] == "bert.pooler.dense.bias"
    code, text = _cli("inspect", ckpt("sequence-classification"), "--json")
    rows = {r["name"]: r for r in json.loads(text)["variables"]}
    assert rows["bert/pooler/dense/bias"]["target"] == "bert.pooler.dense.bias"


@pytest.mark.parametrize("keep", [False, True])
def test_weights_stage_compares_what_the_directory_holds(tmp_path, keep):
    out = tmp_path / "out"
    convert_checkpoint(ckpt("masked-lm"), out, keep_pooler=keep, progress=False)
    with load_checkpoint(ckpt("masked-lm")) as reader:
        result, _ = compare_weights(reader, str(out))
    assert result.passed and result.differing_count == 0
    assert result.tensors == len(weights(out)) == (92 if keep else 90)


def test_weights_stage_still_demands_the_pooler_of_a_head_that_has_one(tmp_path):
    from safetensors.torch import save_file
    out = tmp_path / "out"
    convert_checkpoint(ckpt("next-sentence"), out, progress=False)
    state = {k: v for k, v in weights(out).items() if k not in POOLER_KEYS}
    save_file(state, str(out / "model.safetensors"))
    with load_checkpoint(ckpt("next-sentence")) as reader:
        result, _ = compare_weights(reader, str(out))
    assert not result.passed
    assert {d["key"] for d in result.differing} == POOLER_KEYS


@pytest.mark.parametrize("case, class_name", [
    ("hub_encoder_mlm", "BertForMaskedLM"), ("span_labeler", "BertForQuestionAnswering"),
    ("task_tagging", "BertForTokenClassification")])
def test_model_garden_sources_load_cleanly_too(tmp_path, case, class_name, transformers):
    garden = os.path.join(FIXTURES, "model_garden", case)
    saved = os.path.join(garden, "saved_model")
    report = convert_checkpoint(saved if os.path.isdir(saved) else garden, tmp_path / "out",
                                progress=False)
    assert report.model_class == class_name and not report.pooler_written
    assert any(d["key"] == "bert.pooler.dense.weight" for d in report.dropped)
    _, info = getattr(transformers, class_name).from_pretrained(str(tmp_path / "out"),
                                                                output_loading_info=True)
    assert not any(info.values()), info
