"""Each command-line flag reaches the code it names: convert --gelu, verify --gelu (TF-free,
through a golden file), cache fetch --sha256, --force and --extract (a loopback HTTP server)."""
import hashlib
import json
import os

import numpy as np
import pytest

from bertconvert.cli import main
from ..cache.servers import cache_env, entry_names, http_server  # noqa: F401
from ..conftest import fixture_checkpoint


def _config(out):
    with open(os.path.join(out, "config.json"), encoding="utf-8") as f:
        return json.load(f)


# --- convert --gelu ------------------------------------------------------------------------------
def test_convert_gelu_flag_sets_hidden_act(tmp_path, capsys):
    ckpt = fixture_checkpoint("sequence-classification")  # TF1: exact GELU unless told otherwise
    assert main(["convert", ckpt, "--out", str(tmp_path / "default"), "-q"]) == 0
    assert _config(tmp_path / "default")["hidden_act"] == "gelu"
    assert main(["convert", ckpt, "--out", str(tmp_path / "tanh"), "--gelu", "tanh", "-q"]) == 0
    assert _config(tmp_path / "tanh")["hidden_act"] == "gelu_new"
    tf2 = fixture_checkpoint("tf2-pretraining")  # TF2: tanh unless told otherwise
    assert main(["convert", tf2, "--out", str(tmp_path / "exact"), "--gelu", "exact", "-q"]) == 0
    assert _config(tmp_path / "exact")["hidden_act"] == "gelu"
    capsys.readouterr()


# --- verify --gelu (no TensorFlow: a golden file states the form it was recorded with) -----------
def _golden(path, checkpoint, gelu):
    from bertconvert.verify.golden import save_golden
    from bertconvert.verify.inputs import VerifyInputs

    ids = np.array([[2, 5, 7, 3]], np.int64)
    inputs = VerifyInputs(ids, np.zeros_like(ids), np.ones_like(ids))
    outputs = {"embeddings": np.zeros((1, 4, 32), np.float32)}
    return save_golden(str(path), inputs, outputs, checkpoint=os.path.join(checkpoint, "bert_model.ckpt"),
                       head="sequence-classification", num_labels=3, gelu=gelu)


def test_verify_gelu_flag_is_checked_against_the_golden_files_form(tmp_path, capsys):
    ckpt = fixture_checkpoint("sequence-classification")
    model = tmp_path / "model"
    assert main(["convert", ckpt, "--out", str(model), "-q"]) == 0
    golden = _golden(tmp_path / "g.npz", ckpt, "exact")
    capsys.readouterr()
    code = main(["verify", ckpt, str(model), "--reference", golden, "--gelu", "tanh", "-q"])
    err = capsys.readouterr().err
    assert code == 2
    assert "recorded with the exact GELU form, not tanh" in err and "--gelu tanh" in err


# --- cache fetch --sha256 / --force / --extract ------------------------------------------------
def test_fetch_sha256_is_checked(http_server, cache_env, capsys):
    data = os.urandom(3000)
    http_server.add("/s.bin", data)
    url = http_server.url("/s.bin")
    wrong = hashlib.sha256(b"something else").hexdigest()
    assert main(["cache", "fetch", url, "--sha256", wrong, "-q"]) == 2
    assert "sha256" in capsys.readouterr().err
    assert [n for n in entry_names(cache_env) if not n.startswith(".")] == []  # nothing published
    assert main(["cache", "fetch", url, "--sha256", hashlib.sha256(data).hexdigest(), "-q"]) == 0
    path = capsys.readouterr().out.split("\t")[1].strip()
    with open(path, "rb") as f:
        assert f.read() == data


def test_fetch_force_downloads_again(http_server, cache_env, capsys):
    http_server.add("/f.bin", os.urandom(3000))
    url = http_server.url("/f.bin")
    assert main(["cache", "fetch", url, "-q"]) == 0
    assert main(["cache", "fetch", url, "-q"]) == 0
    assert len(http_server.log("GET")) == 1          # the second run was a cache hit
    assert main(["cache", "fetch", url, "--force", "-q"]) == 0
    assert len(http_server.log("GET")) == 2
    assert main(["cache", "fetch", url, "--force-download", "-q"]) == 0
    assert len(http_server.log("GET")) == 3
    capsys.readouterr()


def test_fetch_extract_returns_the_unpacked_directory(http_server, cache_env, tmp_path, capsys):
    from bertconvert.cache.archives import make_archive

    model = tmp_path / "m"
    model.mkdir()
    (model / "config.json").write_text('{"hidden_size": 32}')
    (model / "model.safetensors").write_bytes(b"weights")
    archive = make_archive(model, tmp_path / "m.tar.gz")
    http_server.add("/m.tar.gz", archive.read_bytes())
    url = http_server.url("/m.tar.gz")
    assert main(["cache", "fetch", url, "-q"]) == 0
    plain = capsys.readouterr().out.split("\t")[1].strip()
    assert os.path.isfile(plain)                      # without --extract: the archive itself
    assert main(["cache", "fetch", url, "--extract", "-q"]) == 0
    unpacked = capsys.readouterr().out.split("\t")[1].strip()
    assert os.path.isdir(unpacked)
    found = {os.path.relpath(os.path.join(d, f), unpacked) for d, _, fs in os.walk(unpacked) for f in fs}
    assert {os.path.basename(f) for f in found} == {"config.json", "model.safetensors"}
    config = next(os.path.join(unpacked, f) for f in found if f.endswith("config.json"))
    with open(config) as f:
        assert json.load(f) == {"hidden_size": 32}
