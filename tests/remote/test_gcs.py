"""gs:// goes through the same code: Cloud Storage's S3-compatible API where an S3 endpoint is
configured (HMAC keys as AWS credentials), anonymous HTTPS for public buckets otherwise."""
from bertconvert.cache.remote_checkpoint import through_transport
from bertconvert.cli import main
from .helpers import upload


def test_gs_url_through_an_s3_endpoint_converts_like_s3(capsys, s3_env, cache_env,
                                                        adam_checkpoint, tmp_path):
    directory, prefix, _ = adam_checkpoint
    upload(s3_env, directory, "run")  # s3_env sets AWS_ENDPOINT_URL_S3 to moto on loopback
    gs = f"gs://{s3_env.bucket}/run/model.ckpt-1000"
    assert main(["convert", gs, "--out", str(tmp_path / "gs")]) == 0, capsys.readouterr().err
    assert main(["convert", prefix, "--out", str(tmp_path / "local")]) == 0
    capsys.readouterr()
    assert (tmp_path / "gs" / "model.safetensors").read_bytes() == \
        (tmp_path / "local" / "model.safetensors").read_bytes()


def test_gs_url_without_an_s3_endpoint_is_read_over_public_https(monkeypatch):
    monkeypatch.delenv("AWS_ENDPOINT_URL_S3", raising=False)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    assert through_transport("gs://bert_models/2020_02_20/uncased.zip") == \
        "https://storage.googleapis.com/bert_models/2020_02_20/uncased.zip"
    monkeypatch.setenv("AWS_ENDPOINT_URL", "https://storage.googleapis.com")
    assert through_transport("gs://bucket/run/model.ckpt") == "s3://bucket/run/model.ckpt"
    assert through_transport("https://host/x") == "https://host/x"
    assert through_transport("/local/gs://odd") == "/local/gs://odd"
