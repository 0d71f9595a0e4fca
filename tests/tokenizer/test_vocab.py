"""Converted directories carry tokenizer_config.json, so tokenizers keep a cased model cased.

Without it, our BertTokenizer.from_pretrained(out_dir) and transformers' tokenizers default
to do_lower_case=True and silently lower-case text for a cased model. The casing is guessed
by bertconvert.tokenizer.wordpiece.guess_do_lower_case (explicit tokenizer_config.json beside the
vocab, then the vocabulary's letters, then the directory name, then lower-case).
"""
import json
import os
import shutil

import pytest

from bertconvert import BertTokenizer
from bertconvert.convert.run import convert_checkpoint
from bertconvert.tokenizer.wordpiece import guess_do_lower_case
from bertconvert.verify.inputs import make_tokenizer

FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, os.pardir, "fixtures")
BASE = os.path.join(FIXTURES, "checkpoints", "base")
TEXT = "Hello World, The Quick fox"
#: Words of the fixture vocabulary given a capital in the cased copy (same line count, so
#: the vocabulary still matches the checkpoint's 191 embedding rows).
CAPITALISED = {"hello": "Hello", "world": "World", "the": "The", "quick": "Quick"}


def checkpoint_copy(tmp_path, dirname="model", cased=False, tokenizer_config=None):
    """The base fixture checkpoint in tmp_path/dirname, with a cased vocabulary if asked."""
    directory = tmp_path / dirname
    shutil.copytree(BASE, directory)
    if cased:
        lines = (directory / "vocab.txt").read_text(encoding="utf-8").splitlines()
        assert set(CAPITALISED) <= set(lines)
        (directory / "vocab.txt").write_text(
            "\n".join(CAPITALISED.get(t, t) for t in lines) + "\n", encoding="utf-8")
    if tokenizer_config is not None:
        (directory / "tokenizer_config.json").write_text(json.dumps(tokenizer_config))
    return directory


def convert(tmp_path, source, name="out"):
    out = tmp_path / name
    report = convert_checkpoint(str(source), out, progress=False)
    return out, report


def test_cased_checkpoint_converts_to_a_cased_tokenizer(tmp_path):
    out, report = convert(tmp_path, checkpoint_copy(tmp_path, cased=True))
    assert json.loads((out / "tokenizer_config.json").read_text()) == {
        "do_lower_case": False, "model_max_length": 64, "tokenizer_class": "BertTokenizer"}
    assert "tokenizer_config.json" in report.files
    assert "tokenizer_config.json" in json.loads((out / "conversion.json").read_text())["files"]
    ours = BertTokenizer.from_pretrained(str(out))
    assert ours.do_lower_case is False and ours.max_len == 64
    assert ours.tokenize(TEXT) == ["Hello", "World", ",", "The", "Quick", "fox"]


def test_uncased_checkpoint_converts_to_a_lower_casing_tokenizer(tmp_path):
    # The directory name says "cased", but the vocabulary has no capitals: it wins.
    out, _ = convert(tmp_path, checkpoint_copy(tmp_path, dirname="cased_L-5_H-32_A-4"))
    assert json.loads((out / "tokenizer_config.json").read_text())["do_lower_case"] is True
    ours = BertTokenizer.from_pretrained(str(out))
    assert ours.do_lower_case is True
    assert ours.tokenize(TEXT) == ["hello", "world", ",", "the", "quick", "fox"]


def test_transformers_tokenizers_read_the_casing(tmp_path):
    transformers = pytest.importorskip("transformers")
    cased, _ = convert(tmp_path, checkpoint_copy(tmp_path, "c", cased=True), "cased")
    uncased, _ = convert(tmp_path, checkpoint_copy(tmp_path, "u"), "uncased")
    for loader in (transformers.BertTokenizer, transformers.AutoTokenizer):
        tok = loader.from_pretrained(str(cased))
        assert tok.tokenize(TEXT) == ["Hello", "World", ",", "The", "Quick", "fox"], loader
        assert tok.model_max_length == 64
        assert loader.from_pretrained(str(uncased)).tokenize(TEXT) == \
            ["hello", "world", ",", "the", "quick", "fox"], loader
    # Same ids as ours, [CLS]/[SEP] included.
    ours = BertTokenizer.from_pretrained(str(cased))
    theirs = transformers.BertTokenizer.from_pretrained(str(cased))
    assert theirs(TEXT)["input_ids"] == ours.encode(TEXT)["input_ids"]


def test_explicit_tokenizer_config_beside_the_checkpoint_wins(tmp_path):
    source = checkpoint_copy(tmp_path, cased=True, tokenizer_config={"do_lower_case": True})
    out, _ = convert(tmp_path, source)
    assert json.loads((out / "tokenizer_config.json").read_text())["do_lower_case"] is True


def test_unreadable_vocab_converts_without_a_tokenizer_config(tmp_path):
    source = checkpoint_copy(tmp_path)
    (source / "vocab.txt").write_bytes(b"[PAD]\n[UNK]\n\xff\xfe\n")
    out, report = convert(tmp_path, source)
    assert "tokenizer_config.json" not in os.listdir(out)
    assert any("no tokenizer_config.json" in note for note in report.notes)
    assert (out / "vocab.txt").read_bytes() == (source / "vocab.txt").read_bytes()


def test_guess_do_lower_case_is_public_and_drives_verify(tmp_path):
    cased = checkpoint_copy(tmp_path, "c", cased=True) / "vocab.txt"
    plain = checkpoint_copy(tmp_path, "p") / "vocab.txt"
    assert guess_do_lower_case(str(cased)) is False and guess_do_lower_case(plain) is True
    cased_vocab = os.path.join(FIXTURES, "tokenizer", "vocab-cased.txt")
    assert guess_do_lower_case(cased_vocab) is False
    assert make_tokenizer(str(cased)).do_lower_case is False
    assert make_tokenizer(str(plain)).do_lower_case is True


def test_cased_vocab_without_a_casing_source_warns_but_keeps_the_0_6_2_default(tmp_path, caplog):
    model = tmp_path / "my-model"  # says neither cased nor uncased
    model.mkdir()
    shutil.copy(os.path.join(FIXTURES, "tokenizer", "vocab-cased.txt"), model / "vocab.txt")
    with caplog.at_level("WARNING", logger="bertconvert.tokenizer.wordpiece"):
        tok = BertTokenizer.from_pretrained(str(model))
    assert tok.basic_tokenizer.do_lower_case  # what 0.6.2 did; scripts rely on it
    assert "pass do_lower_case=False" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING", logger="bertconvert.tokenizer.wordpiece"):
        assert not BertTokenizer.from_pretrained(str(model), do_lower_case=False).do_lower_case
        shutil.copy(os.path.join(FIXTURES, "tokenizer", "vocab-uncased.txt"), model / "vocab.txt")
        BertTokenizer.from_pretrained(str(model))
    assert caplog.text == ""  # asked for explicitly, or an uncased vocabulary: nothing to say
