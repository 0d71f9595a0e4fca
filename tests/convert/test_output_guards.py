"""Outputs never destroy inputs, and what killed runs left behind is cleaned up.

`--overwrite` replaces an output directory, so an output that is (or holds) the checkpoint
would delete it: such outputs are refused (exit 2, nothing touched) for convert, the legacy
command and export. A conversion killed with SIGKILL publishes nothing but leaves its temp
directory; the next run to the same output removes it once its process is gone.
"""
import hashlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import uuid

import pytest

from bertconvert.atomic import remove_stale_temps, temp_name_for
from bertconvert.cli import main
from bertconvert.convert import convert_checkpoint, convert_to_pytorch_file
from bertconvert.errors import UnsafeOutputError
from bertconvert.convert.export import export_model_dir

FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, os.pardir, "fixtures")


def ckpt(name):
    return os.path.join(FIXTURES, "checkpoints", name)


def snapshot(directory):
    """{relative path: sha256} of every file under ``directory``."""
    out = {}
    for root, _, files in os.walk(directory):
        for name in files:
            path = os.path.join(root, name)
            with open(path, "rb") as f:
                out[os.path.relpath(path, directory)] = hashlib.sha256(f.read()).hexdigest()
    return out


@pytest.fixture
def src(tmp_path):
    """A private copy of a fixture checkpoint: tmp_path/work/ckpt (with a neighbour file)."""
    work = tmp_path / "work"
    work.mkdir()
    shutil.copytree(ckpt("question-answering"), work / "ckpt")
    (work / "notes.txt").write_text("unrelated\n")
    return work / "ckpt"


def assert_refused(capsys, argv, guarded):
    before = snapshot(guarded)
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"bertconvert {argv[0]}: error: ") and "Traceback" not in err
    assert "would replace or delete" in err or "is empty" in err
    assert snapshot(guarded) == before
    return err


def test_convert_refuses_the_checkpoint_directory_itself(src, capsys):
    err = assert_refused(capsys, ["convert", str(src), "--out", str(src), "--overwrite", "-q"],
                         src.parent)
    assert "--out" in err and "out_dir" not in err


def test_convert_refuses_a_directory_above_the_checkpoint(src, capsys):
    assert_refused(capsys, ["convert", str(src), "--out", str(src.parent), "--overwrite", "-q"],
                   src.parent)
    # Through a symbolic link too: paths are compared resolved.
    link = src.parent.parent / "link"
    link.symlink_to(src.parent, target_is_directory=True)
    assert_refused(capsys, ["convert", str(src), "--out", str(link), "--overwrite", "-q"],
                   src.parent)


def test_convert_refuses_an_empty_out(src, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(src.parent)  # "" would have meant this directory
    err = assert_refused(capsys, ["convert", str(src), "--out", "", "--overwrite", "-q"],
                         src.parent)
    assert "--out is empty" in err
    with pytest.raises(UnsafeOutputError, match="out_dir is empty"):
        convert_checkpoint(str(src), "", overwrite=True, progress=False)
    assert (src.parent / "notes.txt").read_text() == "unrelated\n"


@pytest.mark.parametrize("out", ["bert_config.json", "bert_model.ckpt.index", "vocab.txt/sub"])
def test_convert_refuses_an_out_that_is_or_is_inside_a_source_file(src, out, capsys):
    assert_refused(capsys, ["convert", str(src), "--out", str(src / out), "--overwrite", "-q"],
                   src.parent)


def test_convert_refuses_the_directories_of_config_and_vocab(src, tmp_path, capsys):
    side = tmp_path / "side"
    side.mkdir()
    shutil.copy(src / "bert_config.json", side / "cfg.json")
    shutil.copy(src / "vocab.txt", side / "words.txt")
    assert_refused(capsys, ["convert", str(src), "--config", str(side / "cfg.json"), "--out",
                            str(side), "--overwrite", "-q"], side)
    assert_refused(capsys, ["convert", str(src), "--vocab", str(side / "words.txt"), "--out",
                            str(side), "--overwrite", "-q"], side)
    # A new directory inside the checkpoint's directory holds no input: that is fine.
    assert main(["convert", str(src), "--out", str(src / "pt"), "-q"]) == 0
    assert (src / "pt" / "model.safetensors").is_file()


def test_legacy_command_refuses_to_write_over_its_inputs(src, capsys):
    for target in ("bert_model.ckpt.index", "bert_model.ckpt.data-00000-of-00001",
                   "bert_config.json"):
        assert_refused(capsys, ["convert_tf_checkpoint_to_pytorch", str(src / "bert_model.ckpt"),
                                str(src / "bert_config.json"), str(src / target), "-q"], src.parent)
    assert_refused(capsys, ["convert_tf_checkpoint_to_pytorch", str(src / "bert_model.ckpt"),
                            str(src / "bert_config.json"), "", "-q"], src.parent)
    with pytest.raises(UnsafeOutputError, match="output_file"):
        convert_to_pytorch_file(str(src), None, str(src / "bert_model.ckpt.index"), progress=False)
    # Into the checkpoint's directory, as 0.6.2 allowed: a new file, no input touched.
    assert main(["convert_tf_checkpoint_to_pytorch", str(src / "bert_model.ckpt"),
                 str(src / "bert_config.json"), str(src), "-q"]) == 0
    assert (src / "pytorch_model.bin").is_file()


def test_export_refuses_outputs_over_the_model_directory(tmp_path, monkeypatch, capsys):
    model = tmp_path / "model"
    convert_checkpoint(ckpt("base"), model, progress=False)
    for prefix in (str(model / "tf.ckpt"),             # vocab.txt beside it is an input
                   str(model / "model.safetensors"),   # the weights file itself
                   str(model),                         # the directory of the inputs
                   ""):
        assert_refused(capsys, ["export", str(model), "--out", prefix, "--overwrite", "-q"], model)
    monkeypatch.chdir(model)
    assert_refused(capsys, ["export", str(model), "--out", "", "-q"], model)
    with pytest.raises(UnsafeOutputError, match="prefix"):
        export_model_dir(model, model / "tf.ckpt", overwrite=True, progress=False)


# --- temp directories left by killed runs -------------------------------------------------
def dead_pid():
    """The PID of a process that has exited and been reaped: no process has it (until reused)."""
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def leftover(parent, name, pid, host=None, old=False, size=4096):
    """A temp directory named as an interrupted writer of parent/name would have left it."""
    entry = f".{name}.tmp-{pid}-{uuid.uuid4().hex[:12]}"
    if host:
        entry += f"@{host}"
    if old:
        entry += ".old"
    path = parent / entry
    path.mkdir()
    (path / "model.safetensors").write_bytes(b"\0" * size)
    return path


def test_stale_temp_directories_of_dead_processes_are_removed(tmp_path):
    pid = dead_pid()
    here = socket.gethostname()
    assert os.path.basename(temp_name_for(tmp_path / "out")).startswith(".out.tmp-")
    assert temp_name_for(tmp_path / "out").endswith("@" + here)  # new names carry the host
    stale_old_style = leftover(tmp_path, "out", pid)              # before host names
    stale = leftover(tmp_path, "out", pid, host=here)
    alive = leftover(tmp_path, "out", os.getpid(), host=here)     # a writer still running
    elsewhere = leftover(tmp_path, "out", pid, host="another-host.example")  # NFS neighbour
    other_output = leftover(tmp_path, "other", pid, host=here)    # not this destination
    mid_swap = leftover(tmp_path, "out", pid, host=here, old=True)  # the only old copy
    convert_checkpoint(ckpt("base"), tmp_path / "out", progress=False)
    assert not stale_old_style.exists() and not stale.exists()
    assert alive.exists() and elsewhere.exists() and other_output.exists()
    assert mid_swap.exists()  # out did not exist when the run started: kept, never lost
    # Once out exists again, the stale .old directory is removed by the next run.
    convert_checkpoint(ckpt("base"), tmp_path / "out", overwrite=True, progress=False)
    assert not mid_swap.exists() and alive.exists()
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".out.")) == \
        sorted([alive.name, elsewhere.name])


def test_stale_temp_files_of_the_legacy_command_are_removed(tmp_path):
    pid = dead_pid()
    target = tmp_path / "pytorch_model.bin"
    stale = tmp_path / f".pytorch_model.bin.tmp-{pid}-{uuid.uuid4().hex[:12]}"
    stale.write_bytes(b"\0" * 1000)
    assert remove_stale_temps(target) == [str(stale)]
    stale.write_bytes(b"\0" * 1000)
    convert_to_pytorch_file(ckpt("base"), None, str(target), progress=False)
    assert not stale.exists() and target.is_file()


_KILLABLE = r"""
import sys, time
import bertconvert.convert.outputs as outputs
import bertconvert.convert.run as convert

real = outputs.write_weights

def pause(directory, *args, **kwargs):
    real(directory, *args, **kwargs)   # the weights are in the temp directory now
    print("WRITTEN", directory, flush=True)
    time.sleep(600)                    # killed here, before anything is published

outputs.write_weights = pause
convert.convert_checkpoint(sys.argv[1], sys.argv[2], progress=False)
"""


def test_sigkill_mid_conversion_publishes_nothing_and_the_next_run_cleans_up(tmp_path):
    out = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, "-c", _KILLABLE, ckpt("base"), str(out)],
                            stdout=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        assert line.startswith("WRITTEN "), line
        temp = line.split(" ", 1)[1].strip()
        assert os.path.basename(temp).startswith(".out.tmp-")
        assert os.path.isfile(os.path.join(temp, "model.safetensors"))
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        proc.stdout.close()
    assert os.path.isdir(temp) and not out.exists()  # nothing published, the temp left
    convert_checkpoint(ckpt("base"), out, progress=False)
    assert not os.path.exists(temp) and (out / "model.safetensors").is_file()
