"""convert --optimizer-state: optimizer.safetensors beside the weights, and resuming from it."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

import bertconvert
from bertconvert.checkpoint import load_checkpoint
from bertconvert.convert.optimizer_state import read_optimizer_file
from bertconvert.layout import OPTIMIZER_NAME, REPORT_NAME

from ..conftest import fixture_checkpoint
from .resume_fixture import (checkpoint, continue_run, expected, resume_kwargs, run_of)

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def cli(*args):
    env = dict(os.environ, PYTHONPATH=REPO)
    return subprocess.run([sys.executable, "-m", "bertconvert", *args], cwd=REPO, env=env,
                          capture_output=True, text=True)


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    out = tmp_path_factory.mktemp("opt") / "model"
    result = cli("convert", checkpoint(), "--optimizer-state", "--out", str(out))
    assert result.returncode == 0, result.stderr
    return out


def test_the_slots_are_written_in_the_parameters_layout(converted):
    slots, step = read_optimizer_file(converted / OPTIMIZER_NAME)
    with load_checkpoint(checkpoint()) as reader:
        assert step == int(reader.get_tensor("global_step")) == run_of()["K"]
        query = reader.get_tensor("bert/encoder/layer_0/attention/self/query/kernel/adam_v")
        bias = reader.get_tensor("output_bias/adam_m")
    np.testing.assert_array_equal(slots["bert.encoder.layer.0.attention.self.query.weight"][1], query.T)
    np.testing.assert_array_equal(slots["classifier.bias"][0], bias)
    report = json.loads((converted / REPORT_NAME).read_text())
    assert OPTIMIZER_NAME in report["files"]
    state = report["optimizer_state"]
    assert state["global_step"] == step and state["file"] == OPTIMIZER_NAME
    assert state["slots"]["classifier.weight"] == ["output_weights/adam_m", "output_weights/adam_v"]
    assert set(state["slots"]) == set(slots) == {v["key"] for v in report["variables"]}


def test_without_the_flag_nothing_changes(tmp_path):
    out = tmp_path / "plain"
    bertconvert.convert_checkpoint(checkpoint(), out, progress=False)
    assert not (out / OPTIMIZER_NAME).exists()
    report = json.loads((out / REPORT_NAME).read_text())
    assert "optimizer_state" not in report and OPTIMIZER_NAME not in report["files"]


def test_resuming_from_the_converted_directory_matches_tensorflow(converted):
    run, exp = run_of(), expected()
    model, optimizer, scheduler = bertconvert.resume_from_tf(str(converted), **resume_kwargs())
    steps = range(run["K"], run["K"] + run["M"])
    for i, (loss, _, weights) in zip(steps, continue_run(model, optimizer, scheduler, exp, steps)):
        assert abs(loss - float(exp[f"loss_{i}"])) <= 1e-5
        assert weights <= 1e-5


@pytest.mark.parametrize("name, found", [("pretraining-lamb", "LAMB slots"),
                                         ("tf2-pretraining", "Keras/TF2 optimizer slots")])
def test_another_optimizers_slots_are_a_one_line_error(tmp_path, name, found):
    out = tmp_path / "out"
    result = cli("convert", fixture_checkpoint(name), "--optimizer-state", "--out", str(out))
    assert result.returncode == 2
    assert found in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not out.exists()
