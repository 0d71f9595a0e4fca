"""cached_path and `cache push` against moto's S3 server on loopback (boto3's normal config chain)."""
import hashlib
import json
import os

import pytest

from bertconvert import cached_path
from bertconvert.cli import main
from bertconvert.errors import IntegrityError, OfflineError, RemoteNotFoundError
from bertconvert.cache.names import resolve_model_dir, resolve_vocab_file
from .servers import entry_names
from .keys import expected_key

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
    assert os.path.basename(path) == expected_key(url, etag)
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


def test_parallel_ranged_download_is_written_in_order(s3_env, cache_env, monkeypatch):
    """Objects above the multipart threshold come down as parallel ranged GETs; s3transfer
    hands them to our non-seekable sink in order, so they are hashed as they arrive."""
    from bertconvert.cache import s3 as transfer_s3

    monkeypatch.setattr(transfer_s3, "DEFAULT_MULTIPART_THRESHOLD", 5 << 20)
    monkeypatch.setattr(transfer_s3, "DEFAULT_MULTIPART_CHUNKSIZE", 5 << 20)
    body = os.urandom(23 << 20)  # five ranges, the last one short
    client = s3_env.client()
    client.put_object(Bucket=s3_env.bucket, Key="big.bin", Body=body)  # single part: MD5 ETag
    path = cached_path(s3_env.url("big.bin"), progress=False)
    with open(path, "rb") as f:
        assert f.read() == body
    meta = json.load(open(path + ".json"))
    assert meta["sha256"] == _sha(body) and "md5" in meta["verified"]


def _abandoned_partial(cache_env, url, etag, data):
    """What a killed download leaves: a hidden partial named after a process that is gone."""
    import subprocess

    from bertconvert.cache.locks import _HOST, PARTIAL_MARKER

    dead = subprocess.Popen(["true"])
    dead.wait()
    cache_env.mkdir(parents=True, exist_ok=True)
    key = expected_key(url, etag)
    partial = cache_env / f".{key}{PARTIAL_MARKER}{_HOST}-{dead.pid}-0123456789ab"
    partial.write_bytes(data)
    return partial


@pytest.mark.parametrize("prefix_ok", [True, False])
def test_abandoned_partial_is_resumed_with_a_ranged_get(s3_env, cache_env, prefix_ok):
    body = os.urandom(3_000_000)
    client = s3_env.client()
    client.put_object(Bucket=s3_env.bucket, Key="r.bin", Body=body)
    etag = client.head_object(Bucket=s3_env.bucket, Key="r.bin")["ETag"]
    url = s3_env.url("r.bin")
    prefix = body[:1_234_567] if prefix_ok else os.urandom(1_234_567)
    _abandoned_partial(cache_env, url, etag, prefix)
    if prefix_ok:
        with open(cached_path(url, progress=False), "rb") as f:
            assert f.read() == body
    else:  # the kept prefix really was used: the checksums then catch the bad bytes
        with pytest.raises(IntegrityError, match="corrupt download was deleted"):
            cached_path(url, progress=False)
    assert not [n for n in os.listdir(cache_env) if ".part-" in n]


@pytest.mark.parametrize("algo", ["CRC32C", "SHA256", "CRC64NVME"])
def test_s3_checksums_are_verified_for_single_and_multipart_objects(s3_env, cache_env, algo):
    import io

    from boto3.s3.transfer import TransferConfig

    client = s3_env.client()
    small = os.urandom(100_000)
    client.put_object(Bucket=s3_env.bucket, Key="s.bin", Body=small, ChecksumAlgorithm=algo)
    meta = json.load(open(cached_path(s3_env.url("s.bin"), progress=False) + ".json"))
    assert algo.lower() in meta["verified"]

    big = os.urandom(11 << 20)
    client.upload_fileobj(io.BytesIO(big), s3_env.bucket, "m.bin", ExtraArgs={"ChecksumAlgorithm": algo},
                          Config=TransferConfig(multipart_threshold=5 << 20, multipart_chunksize=5 << 20))
    path = cached_path(s3_env.url("m.bin"), progress=False)
    with open(path, "rb") as f:
        assert f.read() == big
    verified = json.load(open(path + ".json"))["verified"]
    # Multipart CRC32C/SHA256 are checksums of part checksums unless S3 marks them
    # FULL_OBJECT; CRC64NVME is always a full-object checksum.
    assert ("crc64nvme" in verified) == (algo == "CRC64NVME")


def test_multipart_etag_is_recomputed_when_nothing_better_is_offered(s3_env, cache_env):
    """A multipart object with no full-object checksum (uploaded before S3 added CRC64NVME,
    or by a client that sent none): its ETag, the MD5 of the parts' MD5s, is checked."""
    import io

    from boto3.s3.transfer import TransferConfig

    client = s3_env.client()
    big = os.urandom((12 << 20) + 12345)
    client.upload_fileobj(io.BytesIO(big), s3_env.bucket, "old.bin",
                          Config=TransferConfig(multipart_threshold=5 << 20, multipart_chunksize=5 << 20))
    head = client.head_object(Bucket=s3_env.bucket, Key="old.bin", ChecksumMode="ENABLED")
    assert head["ETag"].endswith('-3"') and "ChecksumCRC64NVME" not in head
    path = cached_path(s3_env.url("old.bin"), progress=False)
    with open(path, "rb") as f:
        assert f.read() == big
    assert json.load(open(path + ".json"))["verified"] == [f"md5-parts:{5 << 20}"]


def test_parts_md5_matches_s3_and_catches_a_flipped_byte():
    from bertconvert.cache.checks import multipart_md5_expectation
    from bertconvert.cache.digests import StreamHasher

    data = os.urandom(3 * 1000 + 17)
    parts = [data[i:i + 1000] for i in range(0, len(data), 1000)]
    etag = '"%s-%d"' % (hashlib.md5(b"".join(hashlib.md5(p).digest() for p in parts)).hexdigest(),
                        len(parts))
    exp = multipart_md5_expectation(etag, 1000, "test")
    for split in (1, 999, 1000, 1001, len(data)):  # blocks crossing part boundaries anyhow
        hasher = StreamHasher([exp.algorithm])
        hasher.update(data[:split])
        hasher.update(data[split:])
        assert hasher.hexdigests()[exp.algorithm] == exp.hexdigest
    bad = StreamHasher([exp.algorithm])
    bad.update(data[:500] + bytes([data[500] ^ 1]) + data[501:])
    assert bad.hexdigests()[exp.algorithm] != exp.hexdigest
