"""examples/convert_bucket_dask.py (dask.distributed ``Client.map`` on a ``LocalCluster`` of
worker processes) and examples/convert_bucket_futures.py: every checkpoint under a folder
converted and published to S3 (moto on loopback), idempotently."""
import json
import os
import shutil
import subprocess
import sys

import pytest

from bertconvert import convert_checkpoint
from ..cache.servers import _moto_endpoint, cache_env, s3_env  # noqa: F401 (fixtures)
from ..conftest import fixture_checkpoint

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
EXAMPLES = os.path.join(ROOT, "examples")
SOURCES = {"run-a/bert_model.ckpt": "pretraining", "run-a/late/bert_model.ckpt":
           "pretraining-adam", "run-b/bert_model.ckpt": "sequence-classification"}


@pytest.fixture
def runs(tmp_path):
    """A folder of training runs: three checkpoints at different depths."""
    root = tmp_path / "runs"
    for prefix, fixture in SOURCES.items():
        shutil.copytree(fixture_checkpoint(fixture), root / os.path.dirname(prefix))
    return str(root)


def _run(script, *args):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([ROOT, os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.run([sys.executable, os.path.join(EXAMPLES, script), *args], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=600)
    lines = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    return proc.returncode, {r["checkpoint"]: r for r in lines}, proc.stderr


def _check_published(s3_env, runs, tmp_path, prefix):
    client = s3_env.client()
    for relative, fixture in SOURCES.items():
        key = f"{prefix}{relative}/"
        names = {o["Key"][len(key):] for o in client.list_objects_v2(
            Bucket=s3_env.bucket, Prefix=key)["Contents"]}
        assert "conversion.json" in names, relative
        local = tmp_path / "local" / relative
        convert_checkpoint(os.path.join(runs, relative), str(local), progress=False)
        body = client.get_object(Bucket=s3_env.bucket, Key=key + "model.safetensors")["Body"]
        assert body.read() == (local / "model.safetensors").read_bytes(), relative


@pytest.mark.slow
def test_dask_example_converts_every_checkpoint_once(s3_env, runs, tmp_path):
    pytest.importorskip("distributed", reason="dask[distributed] is not installed")
    out = s3_env.url("models/")
    code, results, err = _run("convert_bucket_dask.py", runs, out, "--workers", "3")
    assert code == 0, err
    assert sorted(results) == sorted(os.path.join(runs, p) for p in SOURCES)
    assert {r["status"] for r in results.values()} == {"published"}
    _check_published(s3_env, runs, tmp_path, "models/")
    # Again: every task finds its conversion published; nothing is uploaded.
    code, results, err = _run("convert_bucket_dask.py", runs, out, "--workers", "2")
    assert code == 0, err
    assert {r["status"] for r in results.values()} == {"unchanged"}


@pytest.mark.slow
def test_futures_example_converts_every_checkpoint(s3_env, runs, tmp_path):
    out = s3_env.url("fut/")
    code, results, err = _run("convert_bucket_futures.py", runs, out, "--workers", "2")
    assert code == 0, err
    assert len(results) == len(SOURCES)
    assert {r["status"] for r in results.values()} == {"published"}
    _check_published(s3_env, runs, tmp_path, "fut/")


def test_futures_example_reports_a_bad_checkpoint_and_converts_the_rest(runs, tmp_path):
    bad = os.path.join(runs, "run-c")
    os.makedirs(bad)
    with open(os.path.join(bad, "model.ckpt.index"), "wb") as f:
        f.write(b"not a table")
    code, results, err = _run("convert_bucket_futures.py", runs, str(tmp_path / "out"),
                              "--workers", "2")
    assert code == 1
    assert results[os.path.join(bad, "model.ckpt")]["error"]
    assert sum("status" in r for r in results.values()) == len(SOURCES)
    assert os.path.isfile(tmp_path / "out" / "run-b" / "bert_model.ckpt" / "config.json")


def test_futures_example_again_keeps_existing_local_outputs(runs, tmp_path):
    out = str(tmp_path / "out")
    assert _run("convert_bucket_futures.py", runs, out, "--workers", "2")[0] == 0
    code, results, err = _run("convert_bucket_futures.py", runs, out, "--workers", "2")
    assert code == 0, err
    assert {r["status"] for r in results.values()} == {"exists"}
