"""Hostile inputs end to end (issue 12): absurd config numbers, huge declared sizes, odd
files. Each must be a named error (exit 2 from the CLI, no traceback), never a hang, an
unbounded allocation or silently wrong numbers."""
import json
import logging
import os
import shutil

import pytest
import torch
from safetensors.torch import save_file

from bertconvert import BertConfig, BertModel, BertTokenizer
from bertconvert.checkpoint import load_checkpoint
from bertconvert.cli import main
from bertconvert.convert.run import convert_checkpoint
from bertconvert.errors import (CheckpointFormatError, ConfigError, TokenizerArgumentError,
                                VocabError, WeightsError)

FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, os.pardir, "fixtures",
                        "checkpoints")


def fixture_copy(tmp_path, name="base", **config_changes):
    """A copy of a fixture checkpoint directory with its bert_config.json edited."""
    directory = tmp_path / name
    shutil.copytree(os.path.join(FIXTURES, name), directory)
    path = directory / "bert_config.json"
    config = json.loads(path.read_text())
    config.update(config_changes)
    path.write_text(json.dumps(config))
    return directory


def cli_fails(argv, capsys, *fragments):
    """Run the CLI; it must exit 2 with one error line holding every fragment."""
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    line = [l for l in err.splitlines() if l.startswith("bertconvert convert: error:")]
    assert len(line) == 1, err
    for fragment in fragments:
        assert fragment in err, err
    return err


# --- convert ---------------------------------------------------------------------------
def test_a_billion_layers_is_one_problem_not_a_billion(tmp_path, capsys):
    ckpt = fixture_copy(tmp_path, num_hidden_layers=10 ** 9)
    cli_fails(["convert", str(ckpt), "--out", str(tmp_path / "o"), "--quiet"], capsys,
              "num_hidden_layers 1000000000", "no variables for layers 5 to 999999999")
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("how", ["config", "flag"])
def test_absurd_label_count_is_refused(tmp_path, capsys, how):
    argv = ["convert", "--head", "sequence-classification", "--allow-new-head", "--quiet",
            "--out", str(tmp_path / "o")]
    if how == "config":
        argv.append(str(fixture_copy(tmp_path, num_labels=10 ** 12)))
    else:
        argv += [os.path.join(FIXTURES, "base"), "--num-labels", str(2 ** 40)]
    cli_fails(argv, capsys, "more than the 1000000 labels")
    assert not (tmp_path / "o").exists()


def test_classifier_declaring_2_40_rows_is_checked_against_the_shard(tmp_path):
    from bertconvert.checkpoint.proto import encode_entry
    from bertconvert.checkpoint.table import build_table, read_table
    prefix = str(fixture_copy(tmp_path, "sequence-classification") / "bert_model.ckpt")
    entry = load_checkpoint(prefix).entry("output_weights")
    # output_weights re-declared as 2**40 labels, without the bytes to back them: the label
    # maps and the classifier must not be built from that number.
    hostile = encode_entry(1, (2 ** 40, 32), 0, entry.offset, entry.size, entry.crc32c)
    with open(prefix + ".index", "rb") as f:
        items = [(k, hostile if k == b"output_weights" else v) for k, v in read_table(f.read())]
    with open(prefix + ".index", "wb") as f:
        f.write(build_table(items))
    with pytest.raises(CheckpointFormatError, match="output_weights"):
        convert_checkpoint(prefix, tmp_path / "o", head="sequence-classification",
                           allow_new_head=True, progress=False)


def test_new_head_with_infinite_initializer_range_is_refused(tmp_path, capsys):
    ckpt = fixture_copy(tmp_path)
    path = ckpt / "bert_config.json"
    path.write_text(path.read_text().replace("0.02", "1e999"))  # JSON for +inf
    cli_fails(["convert", str(ckpt), "--head", "sequence-classification", "--allow-new-head",
               "--out", str(tmp_path / "o"), "--quiet"], capsys,
              "initializer_range must be a positive number")


def test_nan_layer_norm_eps_is_refused(tmp_path, capsys):
    ckpt = fixture_copy(tmp_path)
    path = ckpt / "bert_config.json"
    path.write_text(path.read_text()[:-1] + ', "layer_norm_eps": NaN}')
    cli_fails(["convert", str(ckpt), "--out", str(tmp_path / "o"), "--quiet"], capsys,
              "NaN is not valid JSON")


@pytest.mark.parametrize("content, fragment", [
    ({"__class__": "x"}, "'__class__' is reserved"),
    ({"to_dict": 1}, "collides with BertConfig.to_dict"),
    ({"num_labels": "many"}, "num_labels must be a positive integer"),
    ({"num_labels": -4}, "num_labels must be a positive integer"),
])
def test_hostile_config_keys_exit_2(tmp_path, capsys, content, fragment):
    ckpt = fixture_copy(tmp_path, **content)
    cli_fails(["convert", str(ckpt), "--head", "sequence-classification", "--allow-new-head",
               "--out", str(tmp_path / "o"), "--quiet"], capsys, fragment)


def test_deeply_nested_config_exit_2(tmp_path, capsys):
    ckpt = fixture_copy(tmp_path)
    (ckpt / "bert_config.json").write_text("[" * 100000 + "]" * 100000)
    cli_fails(["convert", str(ckpt), "--out", str(tmp_path / "o"), "--quiet"], capsys,
              "too deeply")


def test_fifo_index_exit_2(tmp_path, capsys):
    ckpt = fixture_copy(tmp_path)
    os.remove(ckpt / "bert_model.ckpt.index")
    os.mkfifo(ckpt / "bert_model.ckpt.index")
    cli_fails(["convert", str(ckpt), "--out", str(tmp_path / "o"), "--quiet"], capsys, "FIFO")


def test_vocabulary_longer_than_vocab_size_is_refused(tmp_path, capsys):
    ckpt = fixture_copy(tmp_path)
    with open(ckpt / "vocab.txt", "a", encoding="utf-8") as f:
        f.write("".join(f"extra{i}\n" for i in range(20)))
    cli_fails(["convert", str(ckpt), "--out", str(tmp_path / "o"), "--quiet"], capsys,
              "has 211 tokens but vocab_size", "is 191")
    assert not (tmp_path / "o").exists()
    with pytest.raises(VocabError, match="211 tokens"):
        convert_checkpoint(str(ckpt), tmp_path / "o", progress=False)


# --- from_pretrained and weights files ----------------------------------------------------
def tiny():
    return BertConfig(40, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                      intermediate_size=24, max_position_embeddings=16)


def saved_model(tmp_path, drop=(), **config_changes):
    torch.manual_seed(0)
    model = BertModel(tiny())
    model.save_pretrained(tmp_path)
    state = {k: v for k, v in model.state_dict().items() if k not in drop}
    save_file(state, str(tmp_path / "model.safetensors"))
    data = json.loads((tmp_path / "config.json").read_text())
    data.update(config_changes)
    (tmp_path / "config.json").write_text(json.dumps(data))
    return tmp_path


def test_absurd_vocab_size_with_a_missing_tensor_is_refused_unallocated(tmp_path):
    path = saved_model(tmp_path, drop={"embeddings.word_embeddings.weight"}, vocab_size=10 ** 12)
    with pytest.raises(WeightsError, match="fresh weights .*word_embeddings"):
        BertModel.from_pretrained(path)


def test_a_billion_layers_from_a_model_directory(tmp_path):
    path = saved_model(tmp_path, num_hidden_layers=10 ** 9)
    with pytest.raises(WeightsError, match="num_hidden_layers 1000000000 .* layers 0 to 1"):
        BertModel.from_pretrained(path)


def test_missing_layers_of_sane_size_are_still_initialised(tmp_path, caplog):
    path = saved_model(tmp_path, num_hidden_layers=3)
    with caplog.at_level(logging.WARNING):
        model = BertModel.from_pretrained(path)
    assert len(model.encoder.layer) == 3 and "encoder.layer.2" in caplog.text


def test_int_tensor_for_a_float_parameter(tmp_path):
    path = saved_model(tmp_path)
    state = BertModel.from_pretrained(path).state_dict()
    state["pooler.dense.bias"] = torch.zeros(16, dtype=torch.int64)
    save_file({k: v.contiguous() for k, v in state.items()}, str(path / "model.safetensors"))
    with pytest.raises(WeightsError, match="pooler.dense.bias .*int64.* not floating point|"
                                           "not floating point.*pooler.dense.bias"):
        BertModel.from_pretrained(path)


def test_shard_index_naming_itself(tmp_path):
    path = saved_model(tmp_path)
    os.remove(path / "model.safetensors")
    index = path / "model.safetensors.index.json"
    index.write_text(json.dumps({"weight_map": {"x": "model.safetensors.index.json"}}))
    with pytest.raises(WeightsError, match="sharded-weights index"):
        BertModel.from_pretrained(path)
    index.write_text('{"weight_map": ' + "[" * 100000 + "]" * 100000 + "}")
    with pytest.raises(WeightsError, match="too deeply"):
        BertModel.from_pretrained(path)


def test_model_config_nested_too_deeply(tmp_path):
    path = saved_model(tmp_path)
    (path / "config.json").write_text('{"a": ' * 100000 + "1" + "}" * 100000)
    with pytest.raises(ConfigError, match="too deeply"):
        BertModel.from_pretrained(path)


# --- tokenizer ------------------------------------------------------------------------------
VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "hello", "world"]


def vocab_dir(tmp_path, vocab_size=None):
    (tmp_path / "vocab.txt").write_text("".join(t + "\n" for t in VOCAB), encoding="utf-8")
    if vocab_size is not None:
        (tmp_path / "config.json").write_text(json.dumps({"vocab_size": vocab_size}))
    return tmp_path


def test_padding_to_an_absurd_max_length(tmp_path):
    tok = BertTokenizer.from_pretrained(str(vocab_dir(tmp_path)))
    with pytest.raises(TokenizerArgumentError, match="max_length=1000000000000"):
        tok.encode("hello world", max_length=10 ** 12, padding="max_length")
    # As a truncation limit alone it costs nothing and still works.
    assert tok.encode("hello world", max_length=10 ** 12)["input_ids"] == [2, 5, 6, 3]
    assert len(tok.encode("hello", max_length=8, padding="max_length")["input_ids"]) == 8


def test_tokenizer_warns_when_the_model_beside_it_has_fewer_rows(tmp_path, caplog):
    with caplog.at_level(logging.WARNING):
        BertTokenizer.from_pretrained(str(vocab_dir(tmp_path, vocab_size=5)))
    assert "has 7 tokens" in caplog.text and "vocab_size 5" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        BertTokenizer.from_pretrained(str(vocab_dir(tmp_path, vocab_size=7)))
    assert "vocab_size" not in caplog.text


def test_vocab_that_is_a_fifo_or_a_device(tmp_path):
    os.mkfifo(tmp_path / "fifo.txt")
    with pytest.raises(VocabError, match="FIFO"):
        BertTokenizer(str(tmp_path / "fifo.txt"))
    os.symlink("/dev/zero", tmp_path / "zero.txt")
    with pytest.raises(VocabError, match="character device"):
        BertTokenizer(str(tmp_path / "zero.txt"))


def test_deeply_nested_tokenizer_config(tmp_path):
    directory = vocab_dir(tmp_path)
    (directory / "tokenizer_config.json").write_text("[" * 100000 + "]" * 100000)
    with pytest.raises(VocabError, match="too deeply"):
        BertTokenizer.from_pretrained(str(directory))

