"""Interrupts are consistent: before the output is published, SIGINT/SIGTERM leave nothing
behind (exit 130 / 143); from the publishing step on, the command completes with exit 0.

Each test runs the real command line in a subprocess that pauses at a chosen point (a
function of the library wrapped by the child script below). The child says where it is on
stdout and then blocks reading stdin; the test sends a real signal and then lets it go on.
Nothing depends on timing: the signal is sent only once the child has said it is paused,
and the child goes on only when told to.
"""
import json
import os
import signal
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CKPT = os.path.join(ROOT, "fixtures", "checkpoints", "base")

_CHILD = r"""
import os, signal, sys
import bertconvert.atomic as atomic
import bertconvert.cli as cli
import bertconvert.commands.convert as convert_command
import bertconvert.convert.export as export
import bertconvert.convert.outputs as outputs
import bertconvert.convert.run as run

# As from an interactive shell, whatever the test runner's own dispositions are.
signal.signal(signal.SIGINT, signal.default_int_handler)
signal.signal(signal.SIGTERM, signal.SIG_DFL)
point, argv = sys.argv[1], sys.argv[2:]


def pause(tag):
    print(tag, flush=True)
    sys.stdin.readline()   # the signal arrives while we wait here


def after(module, name, tag):
    real = getattr(module, name)
    def wrapper(*args, **kwargs):
        result = real(*args, **kwargs)
        pause(tag)
        return result
    setattr(module, name, wrapper)


def before(module, name, tag):
    real = getattr(module, name)
    def wrapper(*args, **kwargs):
        pause(tag)
        return real(*args, **kwargs)
    setattr(module, name, wrapper)


if point == "writing":            # weights written into the temp directory, not published
    after(outputs, "write_weights", "PAUSED")
elif point == "exchange":         # the new directory complete, about to be swapped in
    before(atomic, "exchange_paths", "PAUSED")
elif point == "between-renames":  # no renameat2: the old output moved aside, the new not in
    atomic.exchange_paths = lambda a, b: False
    real_rename = os.rename
    def rename(src, dst, *args, **kwargs):
        real_rename(src, dst, *args, **kwargs)
        if str(dst).endswith(".old"):
            pause("PAUSED")
    os.rename = rename
elif point == "published":        # published, the summary not printed yet
    before(convert_command, "print_summary", "PAUSED")
elif point == "export-staged":    # checkpoint written under temp names, side files next
    before(export, "_write_side_file", "PAUSED")
elif point == "legacy-writing":   # the state dict being written under its temp name
    real_iter = run.iter_tensors
    def iter_tensors(*args, **kwargs):
        yield from real_iter(*args, **kwargs)
        pause("PAUSED")
    run.iter_tensors = iter_tensors
sys.exit(cli.main(argv))
"""


def start(point, *args, cwd):
    """The CLI, paused at ``point``: the child process (already paused)."""
    proc = subprocess.Popen([sys.executable, "-c", _CHILD, point, "-q", *map(str, args)],
                            cwd=cwd, env=dict(os.environ, PYTHONPATH=ROOT), text=True,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    lines = []
    for line in proc.stdout:  # until it says it is paused (or ends: then fail below)
        if line == "PAUSED\n":
            return proc
        lines.append(line)
    proc.wait()
    pytest.fail(f"the child never paused at {point}: {''.join(lines)}{proc.stderr.read()}")


def finish(proc, sig):
    """Send ``sig`` to the paused child, let it go on, and return (exit status, stderr)."""
    proc.send_signal(sig)
    try:
        out, err = proc.communicate("go\n", timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
    return proc.returncode, err


def entries(directory):
    return sorted(os.listdir(directory))


def convert_once(cwd, out="model"):
    code = subprocess.run([sys.executable, "-m", "bertconvert", "-q", "convert", CKPT,
                           "--out", out], cwd=cwd, env=dict(os.environ, PYTHONPATH=ROOT),
                          capture_output=True, text=True, timeout=300)
    assert code.returncode == 0, code.stderr


@pytest.mark.parametrize("sig, status", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_an_interrupt_before_publishing_leaves_nothing(tmp_path, sig, status):
    proc = start("writing", "convert", CKPT, "--out", "model", cwd=tmp_path)
    temps = entries(tmp_path)
    assert len(temps) == 1 and temps[0].startswith(".model.tmp-")  # the work in progress
    code, err = finish(proc, sig)
    assert code == status, err
    assert f"interrupted ({signal.Signals(sig).name})" in err and "Traceback" not in err
    assert entries(tmp_path) == []  # no output, no temp directory
    convert_once(tmp_path)  # and the next run is not refused
    assert "model.safetensors" in entries(tmp_path / "model")


def test_an_interrupted_overwrite_keeps_the_previous_output(tmp_path):
    convert_once(tmp_path)
    record = (tmp_path / "model" / "conversion.json").read_bytes()
    proc = start("writing", "convert", CKPT, "--out", "model", "--overwrite", cwd=tmp_path)
    code, err = finish(proc, signal.SIGINT)
    assert code == 130, err
    assert entries(tmp_path) == ["model"]
    assert (tmp_path / "model" / "conversion.json").read_bytes() == record


@pytest.mark.parametrize("point", ["exchange", "between-renames"])
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_an_interrupt_during_the_swap_completes_it(tmp_path, point, sig):
    """The swap of old and new is never split: --out is never left absent with the previous
    output only under a hidden name; the command then finishes with exit 0."""
    convert_once(tmp_path)
    (tmp_path / "model" / "model.safetensors").write_bytes(b"the previous weights")
    proc = start(point, "convert", CKPT, "--out", "model", "--overwrite", cwd=tmp_path)
    if point == "between-renames":
        assert not (tmp_path / "model").exists()  # paused where a split would have hurt
    code, err = finish(proc, sig)
    assert code == 0, err
    assert entries(tmp_path) == ["model"]  # no hidden .old or temp directory left
    assert (tmp_path / "model" / "model.safetensors").read_bytes() != b"the previous weights"
    assert json.loads((tmp_path / "model" / "conversion.json").read_text())["files"]


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_an_interrupt_after_publishing_is_ignored(tmp_path, sig):
    proc = start("published", "convert", CKPT, "--out", "model", cwd=tmp_path)
    assert "model.safetensors" in entries(tmp_path / "model")
    proc.send_signal(sig)
    out, err = proc.communicate("go\n", timeout=300)
    assert proc.returncode == 0, err
    assert "written     model:" in out  # the summary still printed
    assert entries(tmp_path) == ["model"]


def test_an_interrupted_export_publishes_none_of_its_files(tmp_path):
    convert_once(tmp_path)
    (tmp_path / "tf").mkdir()
    proc = start("export-staged", "export", "model", "--out", "tf/bert_model.ckpt", cwd=tmp_path)
    staged = entries(tmp_path / "tf")
    assert staged and all(e.startswith(".bert_model.ckpt.") for e in staged)  # temp names only
    code, err = finish(proc, signal.SIGINT)
    assert code == 130, err
    assert entries(tmp_path / "tf") == []


def test_an_interrupted_export_keeps_the_previous_checkpoint(tmp_path):
    convert_once(tmp_path)
    (tmp_path / "tf").mkdir()
    env = dict(os.environ, PYTHONPATH=ROOT)
    subprocess.run([sys.executable, "-m", "bertconvert", "-q", "export", "model", "--out",
                    "tf/bert_model.ckpt"], cwd=tmp_path, env=env, check=True, timeout=300)
    before = {e: (tmp_path / "tf" / e).read_bytes() for e in entries(tmp_path / "tf")}
    other = os.path.join(os.path.dirname(CKPT), "sequence-classification")
    subprocess.run([sys.executable, "-m", "bertconvert", "-q", "convert", other, "--out",
                    "other"], cwd=tmp_path, env=env, check=True, timeout=300)
    proc = start("export-staged", "export", "other", "--out", "tf/bert_model.ckpt",
                 "--overwrite", cwd=tmp_path)  # different weights: a partial export shows
    code, err = finish(proc, signal.SIGTERM)
    assert code == 143, err
    assert {e: (tmp_path / "tf" / e).read_bytes() for e in entries(tmp_path / "tf")} == before


def test_an_interrupted_legacy_conversion_leaves_no_temp_file(tmp_path):
    proc = start("legacy-writing", "convert_tf_checkpoint_to_pytorch",
                 os.path.join(CKPT, "bert_model.ckpt"), os.path.join(CKPT, "bert_config.json"),
                 "pytorch_model.bin", cwd=tmp_path)
    assert [e.startswith(".pytorch_model.bin.tmp-") for e in entries(tmp_path)] == [True]
    code, err = finish(proc, signal.SIGINT)
    assert code == 130, err
    assert entries(tmp_path) == []
