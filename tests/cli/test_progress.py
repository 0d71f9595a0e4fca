"""Progress bars only where a person watches.

With stderr a pipe (CI logs, ``2> file``) no command draws a bar: no ``%|``, no carriage
return for the next message to land behind. ``--progress`` forces them; a terminal (a
pseudo-terminal here, from the ``pty`` module) gets them by default. The CLI runs in a
subprocess, so its stderr is a real pipe or a real terminal, never pytest's capture.
"""
import fcntl
import os
import pty
import struct
import subprocess
import sys
import termios

import numpy as np
import pytest

from bertconvert.cache.digests import hash_file
from bertconvert.checkpoint import save_checkpoint
from bertconvert.convert.run import convert_checkpoint
from bertconvert.terminal.progress import ALWAYS, bars_shown
from ..cache.servers import cache_env, http_server  # noqa: F401 (fixtures)

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CKPT = os.path.join(REPO, "fixtures", "checkpoints", "masked-lm")
BAR = "%|"  # what every tqdm bar draws, at 0% already


def _env():
    env = dict(os.environ)
    env["PYTHONPATH"] = REPO + os.pathsep + env.get("PYTHONPATH", "")
    env.pop("TQDM_DISABLE", None)
    return env


def run_piped(*args):
    """The CLI with stdout and stderr pipes: ``(exit code, stdout, stderr)``."""
    done = subprocess.run([sys.executable, "-m", "bertconvert", *args], cwd=REPO, env=_env(),
                          capture_output=True, text=True, timeout=300)
    return done.returncode, done.stdout, done.stderr


def run_on_terminal(*args):
    """The CLI with stderr on a pseudo-terminal (stdout a pipe): ``(exit code, stderr)``."""
    master, slave = pty.openpty()
    # A terminal 80 columns wide, as a person's is (a fresh pty is 0x0, where tqdm draws nothing).
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
    proc = subprocess.Popen([sys.executable, "-m", "bertconvert", *args], cwd=REPO, env=_env(),
                            stdout=subprocess.DEVNULL, stderr=slave)
    os.close(slave)
    chunks = []
    while True:  # read while it runs, so a full terminal buffer never blocks the child
        try:
            data = os.read(master, 4096)
        except OSError:  # EIO: the child closed its end
            break
        if not data:
            break
        chunks.append(data)
    os.close(master)
    return proc.wait(timeout=300), b"".join(chunks).decode("utf-8", "replace")


def assert_no_bars(stderr):
    assert BAR not in stderr and "\r" not in stderr, repr(stderr)


def test_piped_stderr_gets_no_bars(tmp_path):
    code, out, err = run_piped("convert", CKPT, "--out", str(tmp_path / "pt"))
    assert code == 0 and "written" in out
    assert_no_bars(err)
    code, out, err = run_piped("export", str(tmp_path / "pt"), "--out",
                               str(tmp_path / "tf" / "bert_model.ckpt"))
    assert code == 0 and "bert_model.ckpt.index" in out
    assert_no_bars(err)
    # What is on stderr is whole lines (the export's warning), not bar debris.
    assert err.startswith("WARNING ") and err.endswith("\n")


def test_progress_forces_bars_into_a_pipe(tmp_path):
    code, _, err = run_piped("--progress", "convert", CKPT, "--out", str(tmp_path / "a"))
    assert code == 0 and "converting" in err and BAR in err
    # also after the sub-command, like --quiet and --debug
    code, _, err = run_piped("export", str(tmp_path / "a"), "--out",
                             str(tmp_path / "tf" / "bert_model.ckpt"), "--progress")
    assert code == 0 and "writing bert_model.ckpt" in err and BAR in err


def test_quiet_wins_over_progress(tmp_path):
    """-q promises no progress bars; --progress beside it does not break that promise."""
    code, _, err = run_piped("-q", "--progress", "convert", CKPT, "--out", str(tmp_path / "a"))
    assert code == 0
    assert_no_bars(err)


def test_a_terminal_gets_bars_by_default_and_none_with_quiet(tmp_path):
    code, err = run_on_terminal("convert", CKPT, "--out", str(tmp_path / "a"))
    assert code == 0 and "converting" in err and BAR in err
    code, err = run_on_terminal("-q", "convert", CKPT, "--out", str(tmp_path / "b"))
    assert code == 0 and BAR not in err


def test_downloads_and_cache_checks_draw_no_bars_into_a_pipe(cache_env, http_server):  # noqa: F811
    http_server.add("/model.bin", os.urandom(300_000))
    url = http_server.url("/model.bin")
    code, out, err = run_piped("cache", "fetch", url)
    assert code == 0, err
    assert_no_bars(err)
    code, out, err = run_piped("cache", "verify")
    assert code == 0, err
    assert_no_bars(err)
    code, out, err = run_piped("cache", "fetch", url, "--force-download", "--progress")
    assert code == 0 and BAR in err


class _Stream:
    def __init__(self, tty):
        self.tty = tty

    def isatty(self):
        return self.tty


class _Closed:
    def isatty(self):
        raise ValueError("I/O operation on closed file")


@pytest.mark.parametrize("progress, stream, shown", [
    (True, _Stream(True), True), (True, _Stream(False), False),
    (False, _Stream(True), False), (None, _Stream(True), False),
    (ALWAYS, _Stream(False), True), (True, _Closed(), False), (True, object(), False)])
def test_one_decision(progress, stream, shown):
    assert bars_shown(progress, stream) is shown


def test_library_calls_draw_nothing_on_a_captured_stderr(tmp_path, capsys):
    """Library defaults (progress=True) under pytest's capture, which is no terminal."""
    convert_checkpoint(CKPT, tmp_path / "pt", progress=True)
    save_checkpoint(str(tmp_path / "tf" / "model.ckpt"),
                    {"a": np.zeros(1000, "float32")}, progress=True)
    hash_file(str(tmp_path / "pt" / "model.safetensors"), progress=True)
    assert_no_bars(capsys.readouterr().err)
    hash_file(str(tmp_path / "pt" / "model.safetensors"), progress=ALWAYS)
    assert BAR in capsys.readouterr().err
