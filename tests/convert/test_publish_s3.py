"""``--out s3://bucket/prefix/``: complete-or-nothing, once (bertconvert/convert/publish.py),
against moto's S3 server on loopback, reached through boto3's standard configuration."""
import hashlib
import json
import os
import shutil
import subprocess
import sys

import pytest

from bertconvert import convert_checkpoint
from bertconvert.cli import main
from bertconvert.errors import OutputExistsError, PublishConflictError, UnsupportedURLError
from ..cache.servers import _moto_endpoint, cache_env, s3_calls, s3_env  # noqa: F401 (fixtures)
from ..conftest import fixture_checkpoint

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MARKER = "conversion.json"


@pytest.fixture
def ckpt(tmp_path):
    """A private copy of a checkpoint with Adam slots (tests may spoil its shard)."""
    return str(shutil.copytree(fixture_checkpoint("pretraining-adam"), tmp_path / "ckpt"))


def _objects(env, prefix):
    client = env.client()
    listing = client.list_objects_v2(Bucket=env.bucket, Prefix=prefix).get("Contents", [])
    return {o["Key"][len(prefix):]:
            client.get_object(Bucket=env.bucket, Key=o["Key"])["Body"].read() for o in listing}


def _marker(env, prefix):
    return json.loads(_objects(env, prefix)[MARKER])


def _sha(data):
    return hashlib.sha256(data).hexdigest()


def test_publish_uploads_the_local_directory_marker_last(s3_env, s3_calls, ckpt, tmp_path):
    url = s3_env.url("models/tiny/")
    report = convert_checkpoint(ckpt, url, progress=False)
    assert report.publication["status"] == "published"
    local = tmp_path / "local"
    convert_checkpoint(ckpt, str(local), progress=False)
    objects = _objects(s3_env, "models/tiny/")
    assert sorted(objects) == sorted(os.listdir(local))
    for name in objects:  # byte-identical to the local conversion (its marker aside)
        if name != MARKER:
            assert objects[name] == (local / name).read_bytes(), name
    marker = json.loads(objects[MARKER])
    assert marker["publication"]["url"] == url
    recorded = marker["publication"]["objects"]
    assert sorted(recorded) == sorted(n for n in objects if n != MARKER)
    assert all(recorded[n]["sha256"] == _sha(objects[n]) for n in recorded)
    puts = [p["Key"].rsplit("/", 1)[-1] for op, p in s3_calls if op == "PutObject"]
    assert puts[-1] == MARKER and sorted(puts[:-1]) == sorted(recorded)
    marker_put = [p for op, p in s3_calls if op == "PutObject" and p["Key"].endswith(MARKER)]
    assert marker_put[0]["IfNoneMatch"] == "*"  # the commit is conditional


@pytest.mark.parametrize("fixture, source_hash", [("pretraining", "auto"),
                                                  ("pretraining-adam", "auto"),
                                                  ("pretraining-adam", "full")])
def test_same_conversion_again_is_a_no_op_that_reads_no_shard(s3_env, s3_calls, tmp_path,
                                                               fixture, source_hash):
    # Without slots the shard would be hashed whole for conversion.json: not on a no-op;
    # nor with --source-hash full, which otherwise starts hashing before planning.
    ckpt = str(shutil.copytree(fixture_checkpoint(fixture), tmp_path / "ckpt"))
    url = s3_env.url("p/")
    convert_checkpoint(ckpt, url, progress=False, source_hash=source_hash)
    before = _objects(s3_env, "p/")
    # Spoil every byte of the data shard, keeping its size: a run that read the shard (to
    # convert, or to hash it) would fail its crc32c checks or see another sha256.
    shard = os.path.join(ckpt, "bert_model.ckpt.data-00000-of-00001")
    size = os.path.getsize(shard)
    with open(shard, "wb") as f:
        f.write(b"\xff" * size)
    del s3_calls[:]
    with _opened() as opened:
        report = convert_checkpoint(ckpt, url, progress=False, source_hash=source_hash)
    assert report.publication == {"status": "unchanged"}
    assert [op for op, _ in s3_calls] == ["GetObject"]  # the marker, nothing else
    assert _objects(s3_env, "p/") == before
    assert os.path.abspath(shard) not in opened
    assert os.path.abspath(shard[:-len(".data-00000-of-00001")] + ".index") in opened


_OPEN_LOG = []


def _audit(event, args):
    if event == "open" and _OPEN_LOG and isinstance(args[0], str):
        _OPEN_LOG[-1].add(os.path.abspath(args[0]))


class _opened:
    """The files this process opens within the block (Python's audit hook for ``open``:
    a public interface, nothing patched; it stays installed but idle outside the block)."""

    installed = False

    def __enter__(self):
        if not _opened.installed:
            sys.addaudithook(_audit)
            _opened.installed = True
        _OPEN_LOG.append(set())
        return _OPEN_LOG[-1]

    def __exit__(self, *exc):
        _OPEN_LOG.pop()


def test_cli_no_op_and_other_options_need_overwrite(s3_env, ckpt, capsys):
    url = s3_env.url("cli/model")  # no trailing slash: the same prefix
    assert main(["--quiet", "convert", ckpt, "--out", url, "--format", "both"]) == 0
    assert main(["--quiet", "convert", ckpt, "--out", url, "--format", "both"]) == 0
    assert "holds this conversion already" in capsys.readouterr().out
    assert main(["--quiet", "convert", ckpt, "--out", url, "--dtype", "float16"]) == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]  # the one-line error
    assert "--overwrite" in last and "holds another conversion" in last
    assert "pytorch_model.bin" in _objects(s3_env, "cli/model/")


def test_overwrite_replaces_and_removes_what_the_old_marker_listed(s3_env, s3_calls, ckpt):
    url = s3_env.url("ow/")
    convert_checkpoint(ckpt, url, progress=False, format="both")
    with pytest.raises(OutputExistsError, match="overwrite=True"):
        convert_checkpoint(ckpt, url, progress=False, dtype="float16")
    del s3_calls[:]
    report = convert_checkpoint(ckpt, url, progress=False, dtype="float16", overwrite=True)
    assert report.publication["status"] == "replaced"
    objects = _objects(s3_env, "ow/")
    assert "pytorch_model.bin" not in objects  # listed by the old marker only: removed
    marker = json.loads(objects[MARKER])
    assert marker["dtype"] == "float16"
    assert all(marker["publication"]["objects"][n]["sha256"] == _sha(objects[n])
               for n in objects if n != MARKER)
    ops = [(op, p["Key"].rsplit("/", 1)[-1]) for op, p in s3_calls
           if op in ("PutObject", "DeleteObject")]
    # The old marker goes first (readers then see no model, never a mixture), the new last.
    assert ops[0] == ("DeleteObject", MARKER)
    puts = [i for i, o in enumerate(ops) if o[0] == "PutObject"]
    assert ops.index(("PutObject", MARKER)) == max(puts)
    delete = [p for op, p in s3_calls if op == "DeleteObject" and p["Key"].endswith(MARKER)]
    assert delete[0]["IfMatch"]  # only the marker version that was read


def test_leftovers_of_another_conversion_are_a_conflict(s3_env, ckpt):
    client = s3_env.client()
    client.put_object(Bucket=s3_env.bucket, Key="left/model.safetensors", Body=b"not ours")
    with pytest.raises(PublishConflictError, match="no conversion.json marks it finished"):
        convert_checkpoint(ckpt, s3_env.url("left/"), progress=False)
    assert MARKER not in _objects(s3_env, "left/")
    assert _objects(s3_env, "left/")["model.safetensors"] == b"not ours"  # not ours to delete
    report = convert_checkpoint(ckpt, s3_env.url("left/"), progress=False, overwrite=True)
    assert report.publication["status"] == "published"


@pytest.mark.parametrize("url", ["s3://bucket-only", "s3://bucket/", "s3://k:s@bucket/p/"])
def test_output_url_needs_a_prefix_and_no_credentials(url, ckpt):
    with pytest.raises(UnsupportedURLError):
        convert_checkpoint(ckpt, url, progress=False)


def _worker(ckpt, url, *extra):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([ROOT, os.environ.get("PYTHONPATH", "")]))
    return subprocess.Popen([sys.executable, "-m", "tests.convert.publish_worker", ckpt, url,
                             *extra], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _results(procs):
    out = []
    for proc in procs:
        stdout, stderr = proc.communicate(timeout=300)
        lines = stdout.strip().splitlines()
        assert lines, stderr
        out.append(json.loads(lines[-1]))
    return out


def _consistent(env, prefix):
    """A marker, if any, lists exactly the bytes that are there."""
    objects = _objects(env, prefix)
    if MARKER not in objects:
        return None
    marker = json.loads(objects[MARKER])
    for name, entry in marker["publication"]["objects"].items():
        assert _sha(objects[name]) == entry["sha256"], name
    return marker


@pytest.mark.slow
def test_concurrent_publishers_publish_once(s3_env, ckpt, tmp_path):
    url, count = s3_env.url("race/"), 4
    barrier = tmp_path / "barrier"
    barrier.mkdir()
    results = _results([_worker(ckpt, url, "--barrier", str(barrier), str(count))
                        for _ in range(count)])
    statuses = sorted(r.get("status") for r in results)
    assert statuses.count("published") == 1, results
    assert set(statuses) <= {"published", "unchanged", "already published by another run"}
    assert _consistent(s3_env, "race/")["dtype"] == "float32"


@pytest.mark.slow
def test_racing_conversions_with_other_options_never_mix(s3_env, ckpt, tmp_path):
    url = s3_env.url("mixed/")
    barrier = tmp_path / "barrier"
    barrier.mkdir()
    dtypes = ["float32", "float16", "float32", "float16"]
    results = _results([_worker(ckpt, url, "--dtype", d, "--barrier", str(barrier), "4")
                        for d in dtypes])
    marker = _consistent(s3_env, "mixed/")
    winners = [r for r in results if r.get("status") == "published"]
    assert len(winners) <= 1
    for r in results:
        assert r.get("status") or r["error"] in ("OutputExistsError", "PublishConflictError"), r
    if marker is not None:
        assert winners and marker["dtype"] == winners[0]["dtype"]


def test_killed_mid_upload_leaves_no_marker_and_a_rerun_completes(s3_env, s3_calls, ckpt,
                                                                  cache_env):
    url = s3_env.url("killed/")
    proc = _worker(ckpt, url, "--kill-before", "model.safetensors")
    proc.communicate(timeout=300)
    assert proc.returncode == -9
    left = _objects(s3_env, "killed/")
    assert left and MARKER not in left and "model.safetensors" not in left
    from bertconvert import BertForPreTraining
    from bertconvert.errors import BertConvertError
    with pytest.raises(BertConvertError, match="conversion.json"):
        BertForPreTraining.from_pretrained(url)
    report = convert_checkpoint(ckpt, url, progress=False)
    assert report.publication["status"] == "published"
    puts = [p["Key"].rsplit("/", 1)[-1] for op, p in s3_calls if op == "PutObject"]
    # What the killed run left was adopted, not uploaded again.
    assert sorted(puts[:-1]) == sorted(set(_objects(s3_env, "killed/")) - set(left) - {MARKER})
    assert "model.safetensors" in puts and puts[-1] == MARKER
    _consistent(s3_env, "killed/")


@pytest.fixture
def before_put():
    """``before_put(suffix, action)``: run ``action()`` once, just before our code sends the
    PutObject of a key ending in ``suffix`` -- another writer acting at that moment of a
    race, its requests real ones to the same server (botocore's public event system)."""
    import boto3

    boto3.setup_default_session()
    handlers = []

    def register(suffix, action):
        fired = []

        def handler(params, **kwargs):
            if str(params.get("Key", "")).endswith(suffix) and not fired:
                fired.append(True)
                action()

        boto3.DEFAULT_SESSION.events.register("provide-client-params.s3.PutObject", handler)
        handlers.append(handler)

    yield register
    for handler in handlers:
        boto3.DEFAULT_SESSION.events.unregister("provide-client-params.s3.PutObject", handler)


def test_losing_the_race_to_the_same_conversion_is_success(s3_env, before_put, ckpt):
    url = s3_env.url("same/")
    inner = []
    before_put("same/model.safetensors",
               lambda: inner.append(convert_checkpoint(ckpt, url, progress=False)))
    report = convert_checkpoint(ckpt, url, progress=False)
    assert inner[0].publication["status"] == "published"
    assert report.publication["status"] == "already published by another run"
    marker = _consistent(s3_env, "same/")
    assert marker["publication"]["objects"] == inner[0].publication["objects"]


def _foreign_marker(s3_env, key):
    """Another conversion's marker, written by a client of its own."""
    import boto3

    client = boto3.session.Session().client("s3")
    body = json.dumps({"files": [], "publication": {"identity": {"other": True},
                                                    "objects": {}}}).encode()
    return lambda: client.put_object(Bucket=s3_env.bucket, Key=key, Body=body)


def test_losing_the_race_to_another_conversion_removes_only_our_objects(s3_env, before_put,
                                                                        ckpt):
    before_put("other/conversion.json", _foreign_marker(s3_env, "other/conversion.json"))
    with pytest.raises(OutputExistsError, match="another run published a different"):
        convert_checkpoint(ckpt, s3_env.url("other/"), progress=False)
    # The winner's marker lists none of our objects: all of them (ours alone) are removed.
    assert sorted(_objects(s3_env, "other/")) == [MARKER]


def test_overwrite_replaces_a_marker_that_appeared_meanwhile(s3_env, before_put, ckpt):
    before_put("again/conversion.json", _foreign_marker(s3_env, "again/conversion.json"))
    report = convert_checkpoint(ckpt, s3_env.url("again/"), progress=False, overwrite=True)
    assert report.publication["status"] == "published"
    assert _consistent(s3_env, "again/")["head"] == "pretraining"


def test_big_files_go_up_in_parts_under_the_same_conditions(s3_env, s3_calls, ckpt,
                                                            monkeypatch):
    from bertconvert.convert import publish

    monkeypatch.setattr(publish, "MULTIPART_THRESHOLD", 64 << 10)  # the weights exceed it
    monkeypatch.setattr(publish, "PART_SIZE", 5 << 20)
    convert_checkpoint(ckpt, s3_env.url("parts/"), progress=False)
    completes = [p for op, p in s3_calls if op == "CompleteMultipartUpload"]
    assert [p["Key"] for p in completes] == ["parts/model.safetensors"]
    assert completes[0]["IfNoneMatch"] == "*"
    _consistent(s3_env, "parts/")
    head = s3_env.client().head_object(Bucket=s3_env.bucket, Key="parts/model.safetensors")
    assert head["Metadata"]["sha256"] == json.loads(
        _objects(s3_env, "parts/")[MARKER])["publication"]["objects"]["model.safetensors"]["sha256"]


@pytest.mark.parametrize("out", ["https://host/models/x/", "http://127.0.0.1:1/x"])
def test_http_outputs_are_refused_before_any_work(out, ckpt, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UnsupportedURLError, match="local directory or s3://"):
        convert_checkpoint(ckpt, out, progress=False)
    assert os.listdir(tmp_path) == ["ckpt"]  # no folder named "https:" or "http:"


def test_a_missing_bucket_is_named_before_anything_is_converted(s3_env, s3_calls, ckpt, capsys):
    from bertconvert.errors import RemoteNotFoundError

    with pytest.raises(RemoteNotFoundError, match="bucket 'no-such-bucket-i20' does not exist"):
        convert_checkpoint(ckpt, "s3://no-such-bucket-i20/models/x/", progress=False)
    assert [op for op, _ in s3_calls] == ["GetObject"]
    assert main(["convert", ckpt, "--out", "s3://no-such-bucket-i20/m/"]) == 2
    # (The moto server's own request log may also reach the captured stderr.)
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert "no-such-bucket-i20" in last and "nothing was uploaded" in last


def test_an_upload_the_store_refuses_publishes_nothing(s3_env, ckpt, capsys):
    """The store answers the weights' PutObject with an error (the request is sent to a
    bucket that does not exist: a real error from the real server, injected through
    botocore's events); the run stops, no marker, and a rerun completes."""
    import boto3

    boto3.setup_default_session()

    def misdirect(params, **kwargs):
        if str(params.get("Key", "")).endswith("model.safetensors"):
            params["Bucket"] = "no-such-bucket-i20-upload"

    events = boto3.DEFAULT_SESSION.events
    events.register("provide-client-params.s3.PutObject", misdirect)
    try:
        assert main(["--quiet", "convert", ckpt, "--out", s3_env.url("refused/")]) == 2
    finally:
        events.unregister("provide-client-params.s3.PutObject", misdirect)
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert "model.safetensors failed" in last and "nothing is published" in last
    assert MARKER not in _objects(s3_env, "refused/")
    assert convert_checkpoint(ckpt, s3_env.url("refused/"), progress=False) \
        .publication["status"] == "published"
