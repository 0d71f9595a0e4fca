"""TF1 serving exports (``export/<version>/saved_model.pb`` + ``variables/`` with Google's TF1
names, no config, no vocabulary) convert like TF1 checkpoints.

The exports in fixtures/tf1_serving/ were written by TensorFlow from Google's modeling.py and
run_classifier's head (fixtures/make_tf1_serving_fixture.py), with the producer's own logits
for a fixed batch under both GELU forms. Our conversion must reproduce the exact-GELU logits
within float32 error and must not reproduce the tanh ones (the two differ by 5e-4..2e-3, far
more than the 2e-5 tolerance a 2-layer float32 forward pass needs).
"""
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch

from bertconvert.models.heads import HEADS

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FIXTURE = os.path.join(ROOT, "fixtures", "tf1_serving")
EXPORT = os.path.join(FIXTURE, "export")
NEWEST, OLDER = "1700000000", "1699990000"
CONFIG = os.path.join(FIXTURE, "config.json")
#: float32 forward pass of a 2-layer, 32-wide model over logits of magnitude ~3.
ATOL = 2e-5


def cli(*args, cwd=ROOT):
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run([sys.executable, "-m", "bertconvert", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def expected():
    with np.load(os.path.join(FIXTURE, "expected.npz")) as data:
        return dict(data)


def logits_of(model_dir, batch):
    model = HEADS["sequence-classification"].from_pretrained(str(model_dir)).eval()
    with torch.no_grad():
        out = model(torch.as_tensor(batch["input_ids"], dtype=torch.long),
                    torch.as_tensor(batch["segment_ids"], dtype=torch.long),
                    torch.as_tensor(batch["input_mask"], dtype=torch.long))
    return out.numpy()


def assert_producer(model_dir, expected, version, form="exact"):
    ours = logits_of(model_dir, expected)
    other = "tanh" if form == "exact" else "exact"
    np.testing.assert_allclose(ours, expected[f"logits_{form}_{version}"], rtol=0, atol=ATOL)
    # The other GELU form is measurably different: the check above can tell them apart.
    assert np.abs(ours - expected[f"logits_{other}_{version}"]).max() > 10 * ATOL


def test_versioned_directory_without_config_converts_with_graph_head_count(tmp_path, expected):
    out = tmp_path / "model"
    proc = cli("convert", EXPORT, "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    # Says which version it took, and where the head count came from.
    assert f"highest version {NEWEST}" in proc.stdout and OLDER in proc.stdout
    assert "num_attention_heads 4 from" in proc.stdout and "saved_model.pb" in proc.stdout
    assert "gelu        exact (gelu)" in proc.stdout
    config = json.loads((out / "config.json").read_text())
    assert {k: config[k] for k in ("vocab_size", "hidden_size", "num_hidden_layers",
                                   "num_attention_heads", "intermediate_size",
                                   "max_position_embeddings", "type_vocab_size", "num_labels")} \
        == {"vocab_size": 99, "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4,
            "intermediate_size": 37, "max_position_embeddings": 24, "type_vocab_size": 2,
            "num_labels": 3}
    assert config["hidden_act"] == "gelu" and config["layer_norm_eps"] == 1e-12
    report = json.loads((out / "conversion.json").read_text())
    assert report["activation"]["gelu"] == "exact"
    assert "TF1 variable names" in report["activation"]["reason"]
    assert_producer(out, expected, NEWEST)


def test_versioned_directory_with_config(tmp_path, expected):
    out = tmp_path / "model"
    proc = cli("convert", EXPORT, "--config", CONFIG, "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    assert "gelu        exact (gelu)" in proc.stdout
    assert "inferred" not in proc.stdout  # the given config is taken
    assert_producer(out, expected, NEWEST)


def test_one_version_directly_and_tanh_on_request(tmp_path, expected):
    out = tmp_path / "older"
    proc = cli("convert", os.path.join(EXPORT, OLDER), "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    assert "highest version" not in proc.stdout
    assert_producer(out, expected, OLDER)
    tanh = tmp_path / "tanh"
    assert cli("convert", os.path.join(EXPORT, OLDER), "--gelu", "tanh", "--out",
               str(tanh)).returncode == 0
    assert_producer(tanh, expected, OLDER, form="tanh")


def test_versions_are_compared_as_numbers(tmp_path, expected):
    base = tmp_path / "export"
    base.mkdir()
    shutil.copytree(os.path.join(EXPORT, OLDER), base / "9")     # "9" > "10" as text
    shutil.copytree(os.path.join(EXPORT, NEWEST), base / "10")
    out = tmp_path / "model"
    proc = cli("convert", str(base), "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    assert "highest version 10 " in proc.stdout
    assert_producer(out, expected, NEWEST)


@pytest.mark.parametrize("graph", [b"", b"\x12\x03abc", os.urandom(64)],
                         ids=["empty-graph", "no-graph-def", "garbage"])
def test_graph_without_head_count_asks_for_config(tmp_path, graph):
    version = tmp_path / "export" / "1700000000"
    shutil.copytree(os.path.join(EXPORT, NEWEST), version)
    (version / "saved_model.pb").write_bytes(graph)
    out = tmp_path / "model"
    proc = cli("convert", str(tmp_path / "export"), "--out", str(out))
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    message = proc.stderr.strip().splitlines()[-1]
    assert "--config" in message and "num_attention_heads" in message
    for value in ("vocab_size 99", "hidden_size 32", "num_hidden_layers 2",
                  "intermediate_size 37", "max_position_embeddings 24", "type_vocab_size 2",
                  "num_labels 3"):
        assert value in message
    assert not out.exists()
    # ... and --config is then all it takes.
    proc = cli("convert", str(tmp_path / "export"), "--config", CONFIG, "--out", str(out))
    assert proc.returncode == 0, proc.stderr


def test_python_api_gelu_follows_names_not_container(expected):
    from bertconvert.checkpoint import load_checkpoint
    from bertconvert.convert.source import describe_source
    with load_checkpoint(EXPORT) as reader:
        cfg, path, info = describe_source(None, reader)
    assert info.kind == "saved_model" and info.naming == "tf1"
    assert info.activation["gelu"] == "exact" and cfg.hidden_act == "gelu"
    assert info.config_inferred and path is None and cfg.num_attention_heads == 4
    assert any("highest version 1700000000" in n for n in info.notes)


def test_tf2_savedmodel_keeps_tanh_default():
    """Model Garden's SavedModels (TF2 object-graph names) still default to tanh."""
    from bertconvert.checkpoint import load_checkpoint
    from bertconvert.convert.source import describe_source
    source = os.path.join(ROOT, "fixtures", "model_garden", "hub_encoder")
    with load_checkpoint(source) as reader:
        _, _, info = describe_source(None, reader)
    assert info.naming == "tf2" and info.activation["gelu"] == "tanh"
