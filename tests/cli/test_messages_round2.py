"""Messages, round two: a wrong --config leads with the field that is wrong and counts the
tensors instead of listing them all; paths as the user gave them; `cache rm` with nothing to
remove; inspect's columns; the package's public names; warning-free package metadata."""
import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest

from bertconvert.checkpoint import save_checkpoint
from bertconvert.cli import main

FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, os.pardir, "fixtures")
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

#: BERT-base's bert_config.json (Google's uncased_L-12_H-768_A-12)
BERT_BASE = {"attention_probs_dropout_prob": 0.1, "hidden_act": "gelu", "hidden_dropout_prob": 0.1,
             "hidden_size": 768, "initializer_range": 0.02, "intermediate_size": 3072,
             "max_position_embeddings": 512, "num_attention_heads": 12, "num_hidden_layers": 12,
             "type_vocab_size": 2, "vocab_size": 30522}


def ckpt(name):
    return os.path.join(FIXTURES, "checkpoints", name)


def fixture_config(name="base"):
    with open(os.path.join(ckpt(name), "bert_config.json")) as f:
        return json.load(f)


def run_cli(capsys, argv):
    code = main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


# --- a wrong --config: the hint first, the tensors counted ------------------------------------
def _twelve_layer_checkpoint(tmp_path):
    """The base fixture's tensors (hidden 32) with its 5 layers repeated to 12: a BERT-base
    layout (199 tensors) at a test's size."""
    with np.load(os.path.join(FIXTURES, "variables", "base.npz")) as z:
        values = {k: z[k] for k in z.files}
    for name in [n for n in values if "/layer_" in n]:
        layer = int(re.search(r"/layer_(\d+)/", name).group(1))
        for extra in range(layer + 5, 12, 5):
            values[name.replace(f"/layer_{layer}/", f"/layer_{extra}/")] = values[name]
    prefix = tmp_path / "ck12" / "bert_model.ckpt"
    save_checkpoint(str(prefix), values)
    assert len(values) == 199
    return str(prefix)


def _problem_lines(err):
    return [line for line in err.splitlines() if re.match(r"  - bert/.* \[[\d, ]+\]: gives ", line)]


def test_wrong_hidden_size_leads_with_the_field_and_stays_short(tmp_path, capsys):
    cfg = tmp_path / "cfg.json"
    cfg.write_text(json.dumps(dict(fixture_config(), hidden_size=768)))
    code, out, err = run_cli(capsys, ["convert", ckpt("base"), "--config", str(cfg),
                                      "--out", str(tmp_path / "o")])
    assert code == 2 and not (tmp_path / "o").exists()
    lines = err.splitlines()
    hint = f"  - hidden_size in {cfg} is 768 but the checkpoint's tensors have 32"
    assert hint in lines
    # The hint comes before any per-tensor line; 82 tensors are two examples and a count.
    assert lines.index(hint) < lines.index(_problem_lines(err)[0])
    assert len(_problem_lines(err)) == 2
    assert "  - and 80 more tensors with mismatched shapes (--debug lists every one)" in lines
    assert "82 problem(s)" in lines[0]
    assert len(lines) <= 12, err


@pytest.mark.parametrize("layers", [12, 6])
def test_bert_base_config_on_another_checkpoint_stays_short(tmp_path, capsys, layers):
    """BERT-base's config against a 12-layer checkpoint of another width: ~200 tensors wrong
    (and with num_hidden_layers 6, 96 more of layers the config does not have)."""
    prefix = _twelve_layer_checkpoint(tmp_path)
    cfg = tmp_path / "bert_base.json"
    cfg.write_text(json.dumps(dict(BERT_BASE, vocab_size=191, max_position_embeddings=64,
                                   num_attention_heads=4, num_hidden_layers=layers)))
    code, out, err = run_cli(capsys, ["convert", prefix, "--config", str(cfg),
                                      "--out", str(tmp_path / "o")])
    assert code == 2 and not (tmp_path / "o").exists()
    lines = err.splitlines()
    assert len(lines) <= 12, err
    hints = lines[lines.index("hints:") + 1:lines.index("problems:")]
    assert hints[:2] == [f"  - hidden_size in {cfg} is 768 but the checkpoint's tensors have 32"] + (
        [f"  - num_hidden_layers in {cfg} is 6 but the checkpoint has 12 layers "
         "(layer_0 to layer_11)"] if layers == 6 else
        [f"  - intermediate_size in {cfg} is 3072 but the checkpoint's tensors have 37"])
    assert lines.index("hints:") == 1  # right under the first line
    counted = [line for line in lines if re.match(r"  - and \d+ more ", line)]
    if layers == 12:
        assert counted == ["  - and 197 more tensors with mismatched shapes (--debug lists every one)"]
    else:
        assert counted == ["  - and 101 more tensors with mismatched shapes (--debug lists every one)",
                           "  - and 94 more tensors of layers the config does not have "
                           "(--debug lists every one)"]


def test_debug_lists_every_mismatched_tensor(tmp_path):
    cfg = tmp_path / "cfg.json"
    cfg.write_text(json.dumps(dict(fixture_config(), hidden_size=768)))
    env = dict(os.environ, PYTHONPATH=REPO)
    argv = [sys.executable, "-m", "bertconvert", "convert", ckpt("base"), "--config", str(cfg),
            "--out", str(tmp_path / "o")]
    plain = subprocess.run(argv, capture_output=True, text=True, timeout=300, env=env)
    debug = subprocess.run(argv + ["--debug"], capture_output=True, text=True, timeout=300, env=env)
    assert plain.returncode == 2 and debug.returncode != 0
    assert "bert/pooler/dense/kernel [32, 32]: gives" not in plain.stderr
    listed = re.findall(r"^bert/\S+ \[[\d, ]+\]: gives ", debug.stderr, re.M)
    assert len(listed) == 82 and "bert/pooler/dense/kernel [32, 32]: gives " in listed


def test_from_pretrained_with_a_wrong_config_counts_the_tensors(tmp_path):
    from bertconvert import BertConfig, BertModel
    from bertconvert.errors import WeightsError

    config = BertConfig(50, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=24)
    BertModel(config).save_pretrained(tmp_path)
    data = json.loads((tmp_path / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps(dict(data, hidden_size=32)))
    with pytest.raises(WeightsError) as err:
        BertModel.from_pretrained(tmp_path)
    message = str(err.value)
    assert "hidden_size in the config is 32 but the weights' tensors have 16" in message
    assert message.count(": weights [") == 2
    assert re.search(r"; and \d+ more tensors that do not fit \(DEBUG logging lists every one\)$",
                     message), message


# --- cache rm -----------------------------------------------------------------------------------
def test_cache_rm_without_items_asks_for_them(tmp_path, capsys):
    code, out, err = run_cli(capsys, ["cache", "rm", "--cache-dir", str(tmp_path)])
    assert code == 2
    assert "not both" not in err
    assert "give ITEMs (keys, URLs or model names), or --all" in err
    code, out, err = run_cli(capsys, ["cache", "rm", "--cache-dir", str(tmp_path), "--all", "x"])
    assert code == 2 and "not both" in err


# --- inspect's columns --------------------------------------------------------------------------
def test_inspect_columns_line_up_with_a_string_variable(capsys):
    code, out, _ = run_cli(capsys, ["inspect", ckpt("tf2-pretraining")])
    assert code == 0
    lines = out.split("\n\n")[0].splitlines()
    header, rows = lines[0], lines[1:]
    assert any(" DT_STRING " in row for row in rows)
    for column in ("SHAPE", "DTYPE", "TARGET"):
        start = header.index(column)
        for row in rows:  # every value starts where its heading does, after a gap
            assert row[start - 2:start] == "  " and row[start] != " ", (column, row)


# --- the package's public names -----------------------------------------------------------------
def test_the_package_shows_only_its_public_api():
    code = (
        "import bertconvert, json\n"
        "ns = {}\n"
        "exec('from bertconvert import *', ns)\n"
        "print(json.dumps({'dir': dir(bertconvert), 'star': sorted(ns),\n"
        "    'lazy': [bertconvert.BertModel.__name__, bertconvert.cached_path.__name__,\n"
        "             bertconvert.verify.__name__, bertconvert.ConfigError.__name__,\n"
        "             bertconvert.heads.__name__, bertconvert.errors.__name__]}))\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                          env=dict(os.environ, PYTHONPATH=REPO))
    assert proc.returncode == 0, proc.stderr
    names = json.loads(proc.stdout)
    internal = {"contextlib", "contextvars", "lazy", "option", "cli_spelling", "atomic", "safeio",
                "layout", "models"}
    assert not internal & set(names["dir"]), sorted(internal & set(names["dir"]))
    assert not internal & set(names["star"])
    public = {"BertConfig", "BertModel", "BertTokenizer", "convert_checkpoint", "cached_path",
              "ConfigError", "MappingError", "__version__", "verify", "checkpoint", "cache", "errors"}
    assert public <= set(names["dir"])
    assert names["lazy"] == ["BertModel", "cached_path", "bertconvert.verify", "ConfigError",
                             "bertconvert.models.heads", "bertconvert.errors"]


# --- package metadata ---------------------------------------------------------------------------
def test_package_metadata_builds_without_license_warnings(tmp_path):
    """setuptools >= 77 deprecates License :: classifiers in favour of an SPDX expression."""
    proc = subprocess.run([sys.executable, "-W", "default", "setup.py", "-q", "egg_info",
                           "--egg-base", str(tmp_path)], cwd=REPO, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "licen" not in proc.stderr.lower(), proc.stderr  # no License-classifier warning
    (info,) = tmp_path.glob("*.egg-info")
    metadata = (info / "PKG-INFO").read_text()
    assert "License-Expression: Apache-2.0" in metadata.splitlines()
    assert "Classifier: License ::" not in metadata


# --- paths as given -----------------------------------------------------------------------------
def _variants(root):
    """Copies of the base fixture in ``root``: as is, without a config, with 300 extra
    vocabulary lines, with a config of another hidden size."""
    import shutil
    for name in ("ck", "nocfg", "bigvocab", "badcfg"):
        shutil.copytree(ckpt("base"), root / name)
    (root / "nocfg" / "bert_config.json").unlink()
    with open(root / "bigvocab" / "vocab.txt", "a") as f:
        f.write("".join(f"extra{i}\n" for i in range(300)))
    (root / "badcfg" / "bert_config.json").write_text(
        json.dumps(dict(fixture_config(), hidden_size=64)))


@pytest.mark.parametrize("where", [".", "sub"])
def test_messages_name_paths_as_given(tmp_path, monkeypatch, capsys, where):
    _variants(tmp_path)
    (tmp_path / "sub").mkdir()
    monkeypatch.chdir(tmp_path / where)
    up = "" if where == "." else "../"
    assert main(["convert", f"{up}ck", "--out", f"{up}o1", "-q"]) == 0
    capsys.readouterr()
    cases = [
        (["convert", f"{up}nocfg", "--out", f"{up}x"],
         f"no model config beside the checkpoint {up}nocfg/bert_model.ckpt: expected "
         f"bert_config.json or config.json in {up}nocfg;"),
        (["convert", f"{up}bigvocab", "--out", f"{up}x"],
         f"vocabulary {up}bigvocab/vocab.txt has 491 tokens but vocab_size in "
         f"{up}bigvocab/bert_config.json is 191"),
        (["convert", f"{up}badcfg", "--out", f"{up}x"],
         f"  - hidden_size in {up}badcfg/bert_config.json is 64 but the checkpoint's tensors have 32"),
        (["verify", f"{up}badcfg", f"{up}o1"],
         f"does not describe the network of checkpoint {up}badcfg ({up}badcfg/bert_config.json)"),
        (["convert", f"{up}ck", "--out", f"{up}x", "--vocab", f"{up}bigvocab/vocab.txt"],
         f"vocabulary {up}bigvocab/vocab.txt has 491 tokens"),
        # refused: --out is an input (the refusal's wording is not pinned here, its paths are)
        (["convert", f"{up}ck", "--out", f"{up}ck/vocab.txt", "--overwrite"],
         f"--out {up}ck/vocab.txt "),
    ]
    for argv, expected in cases:
        code, out, err = run_cli(capsys, argv)
        assert code == 2, (argv, err)
        assert expected in err, (argv, err)
        assert str(tmp_path) not in out + err, (argv, err)
    assert not (tmp_path / "x").exists()


def test_conversion_json_records_every_source_path_absolute(tmp_path, monkeypatch, capsys):
    _variants(tmp_path)
    monkeypatch.chdir(tmp_path)
    runs = {"found": ["convert", "ck", "--out", "o1", "-q"],
            "given": ["convert", "ck/bert_model.ckpt", "--config", "ck/bert_config.json",
                      "--vocab", "./ck/vocab.txt", "--out", "o2", "-q"]}
    for out, argv in zip(("o1", "o2"), runs.values()):
        code, stdout, _ = run_cli(capsys, argv)
        assert code == 0 and "converted ck/bert_model.ckpt" in stdout  # the summary: as given
        record = json.loads((tmp_path / out / "conversion.json").read_text())
        ck = tmp_path / "ck"
        assert record["checkpoint"] == str(ck / "bert_model.ckpt")
        assert record["config"] == str(ck / "bert_config.json")
        assert [e["path"] for e in record["source_files"]] == [
            str(ck / n) for n in ("bert_model.ckpt.index", "bert_model.ckpt.data-00000-of-00001",
                                  "bert_config.json", "vocab.txt")]


def test_from_pretrained_names_a_relative_directory_as_given(tmp_path, monkeypatch):
    from bertconvert import BertConfig, BertModel
    from bertconvert.errors import ConfigError

    monkeypatch.chdir(tmp_path)
    BertModel(BertConfig(50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                         intermediate_size=8)).save_pretrained("md")
    for name in os.listdir("md"):
        if name.endswith(".json"):
            os.unlink(os.path.join("md", name))
    with pytest.raises(ConfigError) as err:
        BertModel.from_pretrained("md/model.safetensors")
    assert "no model config in md: expected" in str(err.value)
    assert str(tmp_path) not in str(err.value)
