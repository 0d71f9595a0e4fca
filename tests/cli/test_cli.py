"""The CLI frame: entry points, error mapping, global flags (sub-commands have their own tests)."""
import os
import subprocess
import sys

import pytest

from bertconvert import __version__
from bertconvert.cli import main
from bertconvert.commands import COMMAND_MODULES

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def run(*args, **kw):
    return subprocess.run([sys.executable, "-m", "bertconvert", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=120, **kw)


def test_python_dash_m_and_console_script_agree_on_version():
    out = run("--version")
    assert out.returncode == 0 and out.stdout.strip() == f"bertconvert {__version__}"
    script = os.path.join(os.path.dirname(sys.executable), "bertconvert")
    assert os.path.exists(script), "console script not installed by setup.cfg entry_points"
    assert subprocess.run([script, "--version"], capture_output=True, text=True).stdout.strip() \
        == f"bertconvert {__version__}"


@pytest.mark.parametrize("command", ["convert", "inspect", "export", "verify", "cache",
                                     "convert_tf_checkpoint_to_pytorch"])
def test_every_documented_command_has_help(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0
    assert command in capsys.readouterr().out


def test_each_registered_module_adds_a_command():
    assert len(COMMAND_MODULES) == len(set(COMMAND_MODULES)) >= 6


def test_input_error_is_one_line_exit_2_without_traceback(tmp_path):
    out = run("convert", str(tmp_path / "nope" / "bert_model.ckpt"), "--out", str(tmp_path / "o"))
    assert out.returncode == 2
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, out.stderr
    assert lines[0].startswith("bertconvert convert: error:")
    assert "Traceback" not in out.stderr
    assert not (tmp_path / "o").exists()


def test_debug_shows_the_traceback(tmp_path):
    out = run("--debug", "inspect", str(tmp_path / "missing.ckpt"))
    assert out.returncode != 0
    assert "Traceback" in out.stderr


def test_global_flags_are_accepted_after_the_subcommand(tmp_path):
    out = run("inspect", str(tmp_path / "missing.ckpt"), "--debug")
    assert "Traceback" in out.stderr


def test_usage_error_exits_2():
    out = run("convert")
    assert out.returncode == 2 and "usage:" in out.stderr
