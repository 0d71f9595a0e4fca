"""What the command line says: CLI flags (never Python keywords), an honest -q, quiet exits on
a closed pipe, inspect --head, paths as the user gave them, --vocab and --num-labels."""
import json
import os
import re
import shutil
import subprocess
import sys

import pytest

from bertconvert.cli import EXIT_BROKEN_PIPE, build_parser, main

FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, os.pardir, "fixtures")
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
#: How a Python keyword looks in a message: overwrite=True, head='x', config=PATH...
KEYWORD = re.compile(r"\b[a-z_]+=(True|False|PATH|'|\")")


def ckpt(name):
    return os.path.join(FIXTURES, "checkpoints", name)


def err_of(capsys, argv, code=2):
    assert main(argv) == code
    captured = capsys.readouterr()
    return captured.err + captured.out


# --- flags, not keywords --------------------------------------------------------------------
def test_cli_messages_name_flags_not_keywords(tmp_path, capsys):
    src = tmp_path / "ckpt"
    shutil.copytree(ckpt("pretraining"), src)
    assert main(["convert", str(src), "--out", str(tmp_path / "o"), "-q"]) == 0
    capsys.readouterr()
    cases = [
        (["convert", str(src), "--out", str(tmp_path / "o")], "--overwrite"),
        (["convert", str(src), "--out", str(tmp_path / "n"), "--head", "sequence-classification"],
         "--allow-new-head"),
        (["convert", str(src), "--out", str(tmp_path / "n"), "--head", "question-answering",
          "--num-labels", "3"], "--num-labels 3"),
        (["export", str(tmp_path / "o"), "--out", str(tmp_path / "tf" / "m.ckpt")], None),
        (["export", str(tmp_path / "o"), "--out", str(tmp_path / "tf" / "m.ckpt")], "--overwrite"),
    ]
    for argv, flag in cases:
        text = err_of(capsys, argv, code=2 if flag else 0)
        assert not KEYWORD.search(text), text
        if flag:
            assert flag in text, text
    os.unlink(src / "bert_config.json")
    text = err_of(capsys, ["convert", str(src), "--out", str(tmp_path / "n")])
    assert "--config PATH" in text and not KEYWORD.search(text)
    # The run_classifier note, printed with a successful conversion, names --head too.
    text = err_of(capsys, ["convert", ckpt("token-classification"), "--out", str(tmp_path / "t"),
                           "-q"], code=0)
    assert "--head token-classification" in text and not KEYWORD.search(text)


# --- -q ----------------------------------------------------------------------------------------
def test_quiet_help_matches_what_quiet_does(tmp_path, capsys):
    help_text = " ".join(build_parser().format_help().split())
    assert "only errors" not in help_text
    assert "no progress bars and no warnings" in help_text and "results and summaries" in help_text
    src = tmp_path / "ckpt"
    shutil.copytree(ckpt("base"), src)
    os.unlink(src / "vocab.txt")  # the conversion warns about it

    def run(*argv):  # a process of its own: logging is configured as for a user
        return subprocess.run([sys.executable, "-m", "bertconvert", *argv], capture_output=True,
                              text=True, timeout=120, cwd=REPO)

    loud = run("convert", str(src), "--out", str(tmp_path / "loud"))
    # stderr is a pipe here: warnings, but bars only with --progress (tests/cli/test_progress.py)
    assert loud.returncode == 0 and "WARNING" in loud.stderr and "converting" not in loud.stderr
    loud = run("--progress", "convert", str(src), "--out", str(tmp_path / "bars"))
    assert loud.returncode == 0 and "WARNING" in loud.stderr and "converting" in loud.stderr
    quiet = run("convert", str(src), "--out", str(tmp_path / "quiet"), "-q")
    assert quiet.returncode == 0 and quiet.stderr == ""   # no warning, no progress bar
    assert "converted" in quiet.stdout and "no vocab.txt" in quiet.stdout  # the summary stays
    again = run("convert", str(src), "--out", str(tmp_path / "quiet"), "-q")
    assert again.returncode == 2 and again.stderr.startswith("bertconvert convert: error:")


# --- a closed pipe --------------------------------------------------------------------------
@pytest.mark.parametrize("argv", [["inspect", ckpt("pretraining")],
                                  ["inspect", ckpt("pretraining"), "--json"]])
def test_closed_stdout_pipe_exits_quietly(argv):
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader is gone before the first byte: `... | head -0`
    try:
        proc = subprocess.run([sys.executable, "-m", "bertconvert", *argv], stdout=write_end,
                              stderr=subprocess.PIPE, text=True, timeout=120, cwd=REPO)
    finally:
        os.close(write_end)
    assert proc.returncode == EXIT_BROKEN_PIPE == 141
    assert proc.stderr == "", proc.stderr


def test_pipe_into_head_shows_no_traceback():
    proc = subprocess.run(
        ["bash", "-c", f"set -o pipefail; {sys.executable} -m bertconvert inspect "
                       f"{ckpt('pretraining-adam')} | head -n 1"],
        capture_output=True, text=True, timeout=120, cwd=REPO)
    assert proc.stdout.startswith("VARIABLE")
    assert "Traceback" not in proc.stderr and "BrokenPipe" not in proc.stderr, proc.stderr
    assert proc.returncode in (0, EXIT_BROKEN_PIPE)  # 0 when all fitted in the pipe's buffer


# --- inspect --head ---------------------------------------------------------------------------
def test_inspect_honours_head(capsys):
    text = err_of(capsys, ["inspect", ckpt("token-classification"), "--head",
                           "token-classification"], code=0)
    assert "head: token-classification (num_labels 5), chosen with --head" in text
    assert "Pass --head" not in text and "detected head" not in text
    assert main(["inspect", ckpt("pretraining"), "--head", "sequence-classification", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["head"] == "sequence-classification" and info["detected_head"] == "pretraining"
    assert info["missing"] == ["classifier"]
    rows = {r["name"]: r for r in info["variables"]}
    assert rows["cls/predictions/output_bias"]["target"] == "dropped"
    assert rows["bert/pooler/dense/kernel"]["target"] == "bert.pooler.dense.weight"
    # masked-lm keeps the MLM head and drops the NSP one; base has no "bert." prefix.
    assert main(["inspect", ckpt("pretraining"), "--head", "base", "--json"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)["variables"]}
    assert rows["bert/embeddings/word_embeddings"]["target"] == "embeddings.word_embeddings.weight"
    assert rows["cls/seq_relationship/output_bias"]["target"] == "dropped"
    assert main(["inspect", ckpt("pretraining"), "--head", "masked-lm", "--json"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)["variables"]}
    assert rows["cls/predictions/output_bias"]["target"] == "cls.predictions.bias"
    assert rows["cls/seq_relationship/output_bias"]["target"] == "dropped"


# --- paths as given -----------------------------------------------------------------------
def test_convert_and_export_print_paths_as_given(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["convert", ckpt("base"), "--out", "pt", "-q"]) == 0
    assert "  written     pt: " in capsys.readouterr().out
    assert main(["export", "pt", "--out", "tf/bert_model.ckpt", "-q"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "exported pt -> tf/bert_model.ckpt"
    paths = [line.strip() for line in lines[1:]]
    assert sorted(paths) == ["tf/bert_config.json", "tf/bert_model.ckpt.data-00000-of-00001",
                             "tf/bert_model.ckpt.index", "tf/vocab.txt"]
    assert all(os.path.isfile(p) for p in paths)
    assert main(["export", "pt", "--out", "flat.ckpt", "-q"]) == 0  # in the current directory
    paths = sorted(line.strip() for line in capsys.readouterr().out.splitlines()[1:])
    assert paths == ["bert_config.json", "flat.ckpt.data-00000-of-00001", "flat.ckpt.index",
                     "vocab.txt"]
    out = str(tmp_path / "abs")
    assert main(["convert_tf_checkpoint_to_pytorch", ckpt("base"), os.path.join(ckpt("base"),
                 "bert_config.json"), "legacy.bin", "-q"]) == 0
    assert capsys.readouterr().out.rstrip().endswith("-> legacy.bin")
    assert main(["convert", ckpt("base"), "--out", out, "-q"]) == 0
    assert f"  written     {out}: " in capsys.readouterr().out


# --- --vocab ----------------------------------------------------------------------------------
def test_vocab_flag_supplies_the_vocabulary(tmp_path, capsys):
    from bertconvert.convert import convert_checkpoint
    from bertconvert.errors import VocabError

    src = tmp_path / "ckpt"
    shutil.copytree(ckpt("base"), src)
    words = tmp_path / "elsewhere" / "my-vocab.txt"
    words.parent.mkdir()
    shutil.move(src / "vocab.txt", words)
    text = err_of(capsys, ["convert", str(src), "--out", str(tmp_path / "none"), "-q"], code=0)
    assert "no vocab.txt beside the checkpoint" in text and "--vocab FILE" in text
    assert not (tmp_path / "none" / "vocab.txt").exists()
    assert main(["convert", str(src), "--out", str(tmp_path / "o"), "--vocab", str(words), "-q"]) == 0
    assert (tmp_path / "o" / "vocab.txt").read_bytes() == words.read_bytes()
    assert json.loads((tmp_path / "o" / "tokenizer_config.json").read_text())["do_lower_case"] is True
    record = json.loads((tmp_path / "o" / "conversion.json").read_text())
    assert str(words) in [e["path"] for e in record["source_files"]]
    assert "vocab.txt" in record["files"]
    # The library keyword, and a missing file: a named error, nothing written.
    convert_checkpoint(str(src), tmp_path / "lib", vocab=words, progress=False)
    assert (tmp_path / "lib" / "vocab.txt").read_bytes() == words.read_bytes()
    with pytest.raises(VocabError, match="vocab="):
        convert_checkpoint(str(src), tmp_path / "x", vocab=tmp_path / "missing.txt", progress=False)
    text = err_of(capsys, ["convert", str(src), "--out", str(tmp_path / "x"), "--vocab",
                           str(tmp_path / "missing.txt")])
    assert "--vocab FILE" in text and "does not exist" in text
    assert not (tmp_path / "x").exists()


# --- --num-labels that agrees with the tensors ------------------------------------------------
#: head -> (fixture, label counts that agree, one that does not or None)
NUM_LABELS = {
    "question-answering": ("question-answering", [2], 3),
    "next-sentence": ("next-sentence", [2], 3),
    "pretraining": ("pretraining", [2], 5),
    "base": ("base", [1, 2, 7], None),            # no label-sized output: any count
    "masked-lm": ("masked-lm", [2, 9], None),
    "sequence-classification": ("sequence-classification", [3], 4),
    "token-classification": ("token-classification", [5], 2),
    "multiple-choice": ("multiple-choice", [1], 2),
}


@pytest.mark.parametrize("head", list(NUM_LABELS))
def test_num_labels_that_agree_are_accepted_for_every_head(head, tmp_path, capsys):
    fixture, good, bad = NUM_LABELS[head]
    for n in good:
        out = tmp_path / f"ok{n}"
        assert main(["convert", ckpt(fixture), "--out", str(out), "--head", head,
                     "--num-labels", str(n), "-q"]) == 0, capsys.readouterr().err
        config = json.loads((out / "config.json").read_text())
        assert config["num_labels"] == n and len(config["id2label"]) == n
    if bad is not None:
        text = err_of(capsys, ["convert", ckpt(fixture), "--out", str(tmp_path / "bad"), "--head",
                               head, "--num-labels", str(bad), "-q"])
        assert f"--num-labels {bad}" in text
        assert not (tmp_path / "bad").exists()


def test_a_dropped_pretraining_head_is_not_called_optimizer_slots(tmp_path, capsys):
    out = tmp_path / "cls"
    assert main(["convert", ckpt("pretraining"), "--out", str(out), "--head",
                 "sequence-classification", "--allow-new-head", "-q"]) == 0
    summary = capsys.readouterr().out
    assert "0 skipped, 7 dropped (head variables sequence-classification does not have)" in summary
    record = json.loads((out / "conversion.json").read_text())
    assert "optimizer slot" not in summary.lower() and "optimizer slot" not in json.dumps(record)
    # The shard is mostly unconverted here, so it was not hashed; the note says why, truly.
    assert any("head variables that sequence-classification does not have" in n
               for n in record["notes"])
    # With real optimizer slots the note says so.
    assert main(["convert", ckpt("pretraining-adam"), "--out", str(tmp_path / "adam"), "-q"]) == 0
    assert "optimizer slots and bookkeeping" in capsys.readouterr().out
