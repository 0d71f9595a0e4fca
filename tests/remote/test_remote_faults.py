"""Remote sources under injected faults (real loopback servers): retried, fallen back from,
or refused with one line and exit 2 -- never a partial model directory."""
import os
import shutil

import pytest

from bertconvert.checkpoint import load_checkpoint
from bertconvert.cli import main
from .helpers import serve, upload

SHARD = "model.ckpt-1000.data-00000-of-00001"


def convert(capsys, source, out, *extra):
    code = main(["convert", source, "--out", str(out), *extra])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture(scope="module")
def reference(adam_checkpoint, tmp_path_factory):
    """model.safetensors of the local conversion."""
    from bertconvert.convert.run import convert_checkpoint

    out = tmp_path_factory.mktemp("local") / "model"
    convert_checkpoint(adam_checkpoint[1], out, progress=False)
    return (out / "model.safetensors").read_bytes()


def first_read_offset(prefix):
    """Where the first range read starts: the first tensor the safetensors writer takes."""
    from bertconvert.convert.plan import plan_conversion
    from bertconvert.convert.outputs import read_order
    from bertconvert.convert.source import describe_source

    with load_checkpoint(prefix) as reader:
        cfg, path, _ = describe_source(None, reader)
        plan = plan_conversion(reader, cfg, config_path=path)
        return reader.entry(read_order(plan, "safetensors", "float32")[0].name).offset


def refused(code, err, out_dir, *words):
    """Exit 2, one line naming what went wrong, and no output directory."""
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    for word in words:
        assert word in err, (word, err)
    assert not os.path.exists(out_dir)


# --- retried -----------------------------------------------------------------------------
def test_5xx_and_a_dropped_connection_are_retried(capsys, http_server, cache_env, adam_checkpoint,
                                                   reference, tmp_path):
    directory, prefix, _ = adam_checkpoint
    drop = first_read_offset(prefix) + 200  # the connection drops mid-range, once
    url, res = serve(http_server, directory, "/run", fail_first=2, drop_after=drop)
    code, _, err = convert(capsys, url + "model.ckpt-1000", tmp_path / "out")
    assert code == 0, err
    assert (tmp_path / "out" / "model.safetensors").read_bytes() == reference
    log = http_server.log(None, "/run/" + SHARD)
    assert [r.status for r in log].count(500) == 2
    gets = [r for r in log if r.method == "GET" and r.status == 206]
    assert gets[0].body_bytes == 200 and gets[1].headers["range"] == gets[0].headers["range"]


# --- the documented fallback ---------------------------------------------------------------
def test_a_server_ignoring_range_is_read_once_whole(capsys, caplog, http_server, cache_env,
                                                    adam_checkpoint, reference, tmp_path):
    directory, prefix, _ = adam_checkpoint
    url, _ = serve(http_server, directory, "/run", ignore_range=True)
    code, _, err = convert(capsys, url + "model.ckpt-1000", tmp_path / "out")
    assert code == 0, err
    assert "ignores byte ranges" in caplog.text  # said, as a warning
    assert (tmp_path / "out" / "model.safetensors").read_bytes() == reference
    gets = http_server.log("GET", "/run/" + SHARD)
    assert len(gets) == 1 and gets[0].status == 200
    assert gets[0].body_bytes == os.path.getsize(os.path.join(directory, SHARD))


# --- refused ---------------------------------------------------------------------------
@pytest.mark.parametrize("ignore_if_match", [False, True])
def test_a_shard_that_changes_is_an_error(capsys, http_server, cache_env, adam_checkpoint,
                                          tmp_path, ignore_if_match):
    directory, _, _ = adam_checkpoint
    data = open(os.path.join(directory, SHARD), "rb").read()
    url, _ = serve(http_server, directory, "/run")
    http_server.add("/run/" + SHARD, data, ignore_if_match=ignore_if_match,
                    replace_after_head=data[::-1])  # re-uploaded right after we looked at it
    code, _, err = convert(capsys, url + "model.ckpt-1000", tmp_path / "out")
    refused(code, err, tmp_path / "out", "changed while it was being converted", SHARD)
    statuses = {r.status for r in http_server.log("GET", "/run/" + SHARD)}
    assert statuses == ({206} if ignore_if_match else {412})  # then caught by its ETag


def test_a_lying_content_length_is_an_error(capsys, http_server, cache_env, adam_checkpoint,
                                            tmp_path):
    directory, _, _ = adam_checkpoint
    url, _ = serve(http_server, directory, "/run", length_lie=100)
    code, _, err = convert(capsys, url + "model.ckpt-1000", tmp_path / "out")
    refused(code, err, tmp_path / "out", "Content-Length", SHARD)


def test_missing_prefix_and_missing_shard(capsys, http_server, cache_env, adam_checkpoint,
                                          tmp_path):
    directory, _, _ = adam_checkpoint
    url, _ = serve(http_server, directory, "/run")
    code, _, err = convert(capsys, url + "nothing.ckpt", tmp_path / "a")
    refused(code, err, tmp_path / "a", "nothing.ckpt")
    del http_server.resources["/run/" + SHARD]
    code, _, err = convert(capsys, url + "model.ckpt-1000", tmp_path / "b")
    refused(code, err, tmp_path / "b", "missing data shard", SHARD)


def test_credentials_in_the_url_are_never_shown(capsys, http_server, cache_env, adam_checkpoint,
                                                tmp_path):
    directory, _, _ = adam_checkpoint
    serve(http_server, directory, "/run")
    base = f"http://alice:s3cr3tpassw0rd@127.0.0.1:{http_server.port}/run/"
    code, out, err = convert(capsys, base + "model.ckpt-1000", tmp_path / "ok")
    assert code == 0, err
    assert "s3cr3t" not in out + err
    assert "s3cr3t" not in (tmp_path / "ok" / "conversion.json").read_text()
    code, _, err = convert(capsys, base + "missing.ckpt", tmp_path / "no")
    refused(code, err, tmp_path / "no", "***")
    assert "s3cr3t" not in err


@pytest.mark.parametrize("source, words", [
    ("ftp://127.0.0.1/run/model.ckpt", ["unsupported scheme ftp://"]),
    ("s3://bucket-only", ["names no object"]),
    ("https://127.0.0.1/", ["names no object"]),
])
def test_urls_that_name_no_checkpoint(capsys, tmp_path, source, words):
    code, _, err = convert(capsys, source, tmp_path / "out")
    refused(code, err, tmp_path / "out", *words)


def test_s3_prefix_without_index_missing_bucket_missing_shards(capsys, s3_env, cache_env,
                                                                adam_checkpoint, tmp_path):
    directory, prefix, _ = adam_checkpoint
    client = s3_env.client()
    client.put_object(Bucket=s3_env.bucket, Key="empty/README", Body=b"x")
    code, _, err = convert(capsys, s3_env.url("empty/"), tmp_path / "a")
    refused(code, err, tmp_path / "a", "holds no checkpoint", "README")
    code, _, err = convert(capsys, "s3://no-such-bucket-here/run/model.ckpt-1000", tmp_path / "b")
    refused(code, err, tmp_path / "b", "no-such-bucket-here")
    client.upload_file(prefix + ".index", s3_env.bucket, "half/model.ckpt-1000.index")
    code, _, err = convert(capsys, s3_env.url("half/model.ckpt-1000"), tmp_path / "c")
    refused(code, err, tmp_path / "c", "missing data shard", SHARD)


def test_s3_reads_are_pinned_to_the_version_seen_first(s3_env, cache_env, adam_checkpoint):
    from bertconvert.cache.remote_checkpoint import open_remote_checkpoint
    from bertconvert.errors import SourceChangedError

    directory, _, _ = adam_checkpoint
    base = upload(s3_env, directory, "run")
    with open_remote_checkpoint(base + "model.ckpt-1000") as reader:
        s3_env.client().put_object(Bucket=s3_env.bucket, Key="run/" + SHARD, Body=b"\0" * 64)
        with pytest.raises(SourceChangedError, match="changed while it was being converted"):
            reader.get_tensor("bert/embeddings/LayerNorm/gamma")


def test_corrupt_bytes_in_a_range_fail_the_crc(capsys, http_server, cache_env, adam_checkpoint,
                                               tmp_path):
    directory, prefix, _ = adam_checkpoint
    copy = tmp_path / "corrupt"
    shutil.copytree(directory, copy)
    with load_checkpoint(prefix) as reader:
        entry = reader.entry("bert/encoder/layer_1/output/dense/kernel")
    with open(copy / SHARD, "r+b") as f:  # one flipped byte inside a converted tensor
        f.seek(entry.offset + entry.size // 2)
        byte = f.read(1)
        f.seek(-1, 1)
        f.write(bytes([byte[0] ^ 0x40]))
    url, _ = serve(http_server, str(copy), "/bad")
    code, _, err = convert(capsys, url + "model.ckpt-1000", tmp_path / "out")
    refused(code, err, tmp_path / "out", "crc32c", "layer_1/output/dense/kernel")


def test_a_versioned_bucket_keeps_reading_the_version_seen_first(s3_env, cache_env,
                                                                  adam_checkpoint):
    """With a VersionId the reads stay on the pinned version even after a new upload."""
    from bertconvert.cache.remote_checkpoint import open_remote_checkpoint

    directory, prefix, _ = adam_checkpoint
    client = s3_env.client()
    client.put_bucket_versioning(Bucket=s3_env.bucket,
                                 VersioningConfiguration={"Status": "Enabled"})
    base = upload(s3_env, directory, "run")
    name = "bert/encoder/layer_0/attention/self/query/kernel"
    with load_checkpoint(prefix) as local:
        expected = local.get_tensor(name)
    with open_remote_checkpoint(base + "model.ckpt-1000") as reader:
        pins = [p for p in reader.store.pins.values() if p.url.endswith(SHARD)]
        assert pins and pins[0].version_id
        client.put_object(Bucket=s3_env.bucket, Key="run/" + SHARD, Body=b"\0" * 64)
        assert (reader.get_tensor(name) == expected).all()
