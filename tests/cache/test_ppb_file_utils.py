"""``bertconvert.file_utils``: pytorch-pretrained-bert 0.6.2's ``file_utils`` names over our
cache, against loopback HTTP and moto's S3 -- and 0.6.2's own functions where results can
be compared."""
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

import bertconvert
from bertconvert import file_utils
from bertconvert.errors import RemoteNotFoundError, UnsupportedURLError

ppb = pytest.importorskip("pytorch_pretrained_bert.file_utils",
                          reason="pytorch-pretrained-bert 0.6.2 is the reference")

pytestmark = pytest.mark.usefixtures("cache_env")

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DATA = os.urandom(200_003)


def test_every_public_name_of_0_6_2_file_utils_is_importable():
    names = sorted(n for n, v in vars(ppb).items() if not n.startswith("_") and (
        n.isupper() or (getattr(v, "__module__", None) or "").startswith("pytorch_pretrained_bert")))
    assert {"cached_path", "get_from_cache", "PYTORCH_PRETRAINED_BERT_CACHE", "s3_etag"} <= set(names)
    assert [n for n in names if not hasattr(file_utils, n)] == []
    exec(f"from bertconvert.file_utils import {', '.join(names)}", {})
    assert file_utils.cached_path is bertconvert.cached_path
    assert (file_utils.WEIGHTS_NAME, file_utils.CONFIG_NAME) == (ppb.WEIGHTS_NAME, ppb.CONFIG_NAME)


def _cache_constant(env):
    code = ("import pathlib, bertconvert.file_utils as f; from bertconvert.cache.entries import "
            "default_cache_dir as d; c = f.PYTORCH_PRETRAINED_BERT_CACHE; "
            "print(isinstance(c, pathlib.Path), c, c == pathlib.Path(d()))")
    clean = {k: v for k, v in os.environ.items()
             if k not in ("BERTCONVERT_CACHE", "PYTORCH_PRETRAINED_BERT_CACHE")}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                         env=dict(clean, PYTHONPATH=ROOT, **env), check=True)
    return out.stdout.split()


def test_cache_constant_is_a_path_to_the_caches_default_directory(tmp_path):
    assert _cache_constant({"PYTORCH_PRETRAINED_BERT_CACHE": str(tmp_path / "ppb")}) == \
        ["True", str(tmp_path / "ppb"), "True"]
    assert _cache_constant({"HOME": str(tmp_path)}) == \
        ["True", str(tmp_path / ".cache" / "bertconvert"), "True"]


def test_url_to_filename_is_0_6_2s():
    for url, etag in [("https://host/a.bin", None), ("s3://b/k", '"abc-2"'), ("http://x/ü", "W/1")]:
        assert file_utils.url_to_filename(url, etag) == ppb.url_to_filename(url, etag)


def test_get_from_cache_and_filename_to_url_over_http(http_server, cache_env):
    res = http_server.add("/vocab.txt", DATA)
    url = http_server.url("/vocab.txt")
    path = file_utils.get_from_cache(url, cache_dir=Path(cache_env))  # a Path, as 0.6.2 took
    assert open(path, "rb").read() == DATA
    assert path == file_utils.cached_path(url) == file_utils.get_from_cache(url)
    name = os.path.basename(path)
    assert name == ppb.url_to_filename(url, res.etag_header)
    assert file_utils.filename_to_url(name) == (url, res.etag_header)
    assert ppb.filename_to_url(name, cache_dir=Path(cache_env)) == (url, res.etag_header)
    for missing in (lambda: file_utils.filename_to_url("0" * 64),
                    lambda: file_utils.cached_path(str(cache_env / "absent.txt"))):
        with pytest.raises(EnvironmentError):  # 0.6.2's exception class
            missing()
    with pytest.raises(ValueError):
        file_utils.cached_path("ftp://host/file.txt")
    with pytest.raises(UnsupportedURLError):
        file_utils.get_from_cache(str(cache_env / "absent.txt"))


def test_http_get_writes_the_body_into_the_given_file(http_server):
    http_server.add("/w.bin", DATA)
    with tempfile.TemporaryFile() as f:
        file_utils.http_get(http_server.url("/w.bin"), f)
        f.seek(0)
        assert f.read() == DATA
    http_server.add("/gone.bin", b"", status=404)
    with tempfile.TemporaryFile() as f:
        with pytest.raises(RemoteNotFoundError):  # 0.6.2 wrote the error page as the file
            file_utils.http_get(http_server.url("/gone.bin"), f)
    with pytest.raises(UnsupportedURLError):
        file_utils.http_get("s3://bucket/key", None)


def test_s3_etag_s3_get_and_s3_request(s3_env):
    client = s3_env.client()
    client.put_object(Bucket=s3_env.bucket, Key="m/model.bin", Body=DATA)
    url = s3_env.url("m/model.bin")
    assert file_utils.s3_etag(url) == client.head_object(Bucket=s3_env.bucket,
                                                         Key="m/model.bin")["ETag"]
    with tempfile.TemporaryFile() as f:
        file_utils.s3_get(url, f)
        f.seek(0)
        assert f.read() == DATA
    with pytest.raises(RemoteNotFoundError):
        file_utils.s3_etag(s3_env.url("m/absent.bin"))

    @file_utils.s3_request
    def body(url):
        bucket, key = file_utils.split_s3_path(url)
        return client.get_object(Bucket=bucket, Key=key)["Body"].read()

    assert body(url) == DATA and body.__name__ == "body"
    with pytest.raises(RemoteNotFoundError, match="m/absent.bin"):
        body(s3_env.url("m/absent.bin"))


def test_small_helpers_are_0_6_2s(tmp_path):
    for url in ("s3://bucket/a/b.txt", "s3://bucket//lead"):
        assert file_utils.split_s3_path(url) == ppb.split_s3_path(url)
    for bad in ("s3://bucket", "s3://bucket/", "s3:///key", "https://bucket/key"):
        with pytest.raises(ValueError):
            file_utils.split_s3_path(bad)
    lines = tmp_path / "words.txt"
    lines.write_text("a \nb\na\n\nü\t\n", encoding="utf-8")
    assert file_utils.read_set_from_file(str(lines)) == ppb.read_set_from_file(str(lines)) == \
        {"a", "b", "", "ü"}
    for path in ("x/Model.TAR.GZ", "vocab.txt", "noext", ".hidden", "a.b/c"):
        for dot in (True, False):
            for lower in (True, False):
                assert file_utils.get_file_extension(path, dot, lower) == \
                    ppb.get_file_extension(path, dot=dot, lower=lower)
