"""cached_path and `cache push` against moto's S3 server on loopback (boto3's normal config chain)."""
import hashlib
import json
import os

import pytest

from bertconvert import cached_path, url_to_filename
from bertconvert.cli import main
from bertconvert.errors import IntegrityError, OfflineError, RemoteNotFoundError
from bertconvert.pretrained import resolve_model_dir, resolve_vocab_file
from cache_servers import _moto_endpoint, cache_env, entry_names, s3_env  # noqa: F401

pytestmark = pytest.mark.usefixtures("cache_env")


def _sha(b):
    return hashlib.sha256(b).hexdigest()


def test_fetch_verifies_and_hits(s3_env, cache_env):
    body = os.urandom(200_000)
    client = s3_env.client()
    client.put_object(Bucket=s3_env.bucket, Key="w/model.bin", Body=body)
    etag = client.head_object(Bucket=s3_env.bucket, Key="w/model.bin")["ETag"]
    url = s3_env.url("w/model.bin")
    path = cached_path(url, progress=False)
    assert os.path.basename(path) == url_to_filename(url, etag)
    with open(path, "rb") as f:
        assert f.read() == body
    meta = json.load(open(path + ".json"))
    assert meta["sha256"] == _sha(body) and "md5" in meta["verified"]
    assert cached_path(url, progress=False) == path
    assert cached_path(url, local_files_only=True) == path


@pytest.mark.parametrize("key", ["missing/key.bin", None])
def test_missing_key_or_bucket_is_named_and_nothing_cached(s3_env, cache_env, key):
    url = s3_env.url(key) if key else "s3://no-such-bucket-bertconvert/k.bin"
    with pytest.raises(RemoteNotFoundError) as err:
        cached_path(url, progress=False)
    assert url in str(err.value)
    assert entry_names(cache_env) == []
    with pytest.raises(OfflineError):
        cached_path(url, local_files_only=True)


def test_sha256_metadata_mismatch_is_an_integrity_error(s3_env, cache_env):
    s3_env.client().put_object(Bucket=s3_env.bucket, Key="bad.bin", Body=b"actual bytes",
                               Metadata={"sha256": _sha(b"what the uploader meant")})
    with pytest.raises(IntegrityError, match="sha256 metadata"):
        cached_path(s3_env.url("bad.bin"), progress=False)
    assert entry_names(cache_env) == []


@pytest.mark.slow
def test_cli_push_multipart_with_sha256_that_cached_path_checks(s3_env, tmp_path, capsys):
    model = tmp_path / "bert-tiny"
    model.mkdir()
    big = os.urandom(11 * 1024 * 1024)  # three 5 MiB parts
    (model / "pytorch_model.bin").write_bytes(big)
    (model / "config.json").write_text('{"vocab_size": 5}')
    dest = f"s3://{s3_env.bucket}/team/bert-tiny"
    assert main(["--quiet", "cache", "push", str(model), dest, "--multipart-threshold", "5M",
                 "--multipart-chunksize", "5M"]) == 0
    out = capsys.readouterr().out
    assert f"{dest}/pytorch_model.bin" in out and _sha(big) in out
    client = s3_env.client()
    head = client.head_object(Bucket=s3_env.bucket, Key="team/bert-tiny/pytorch_model.bin")
    assert head["ETag"].strip('"').endswith("-3")  # multipart: the ETag is no MD5
    assert head["Metadata"]["sha256"] == _sha(big)

    path = cached_path(f"{dest}/pytorch_model.bin", progress=False)
    assert json.load(open(path + ".json"))["verified"] == ["sha256"]
    with open(path, "rb") as f:
        assert f.read() == big

    # Someone overwrites the bytes but keeps the old metadata: the new ETag misses the cache
    # and the sha256 check catches the mismatch.
    client.put_object(Bucket=s3_env.bucket, Key="team/bert-tiny/config.json", Body=b"{}",
                      Metadata={"sha256": _sha(b'{"vocab_size": 5}')})
    with pytest.raises(IntegrityError):
        cached_path(f"{dest}/config.json", progress=False)


def test_s3_mirror_serves_model_names(s3_env, tmp_path, monkeypatch):
    model = tmp_path / "bert-base-uncased"
    model.mkdir()
    (model / "bert_config.json").write_text('{"vocab_size": 5}')
    (model / "pytorch_model.bin").write_bytes(b"weights")
    (model / "vocab.txt").write_text("[PAD]\n[UNK]\n")
    mirror = f"s3://{s3_env.bucket}/mirror/bert"
    # --name also uploads NAME.tar.gz and NAME-vocab.txt under the prefix: a ready mirror.
    assert main(["--quiet", "cache", "push", str(model), mirror, "--name", "bert-base-uncased"]) == 0
    monkeypatch.setenv("BERTCONVERT_MIRROR", mirror + "/")
    model_dir = resolve_model_dir("bert-base-uncased")
    assert sorted(os.listdir(model_dir)) == ["bert_config.json", "pytorch_model.bin", "vocab.txt"]
    vocab = resolve_vocab_file("bert-base-uncased")
    with open(vocab) as f:
        assert f.read() == "[PAD]\n[UNK]\n"
