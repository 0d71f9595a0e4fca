"""Limits of a fetch (size, deadline, speed) and of an extraction (total, ratio), against a
real loopback server, with small overridden limits. Errors are asserted, never times."""
import gzip
import io
import os
import tarfile
import zipfile

import pytest

from bertconvert import cached_path
from bertconvert.cache.archives import extract_archive
from bertconvert.cli import main
from bertconvert.errors import (ArchiveTooLargeError, CacheError, CacheSettingError,
                                DownloadTimeoutError, DownloadTooLargeError, UnsafeArchiveError)
from .servers import cache_files, entry_names

pytestmark = pytest.mark.usefixtures("cache_env")

TWO_MB = os.urandom(2 << 20)


def _no_content_left(cache_dir):
    """No entry, no partial download, no extraction temp: only lock files."""
    return [n for n in cache_files(cache_dir) if not n.endswith(".lock")] == []


# --- maximum download size -------------------------------------------------------------------
def test_announced_size_over_the_limit_is_refused_before_downloading(http_server, cache_env,
                                                                     monkeypatch):
    monkeypatch.setenv("BERTCONVERT_MAX_DOWNLOAD_SIZE", "1M")
    http_server.add("/big.bin", TWO_MB)
    with pytest.raises(DownloadTooLargeError, match="BERTCONVERT_MAX_DOWNLOAD_SIZE") as err:
        cached_path(http_server.url("/big.bin"), progress=False)
    assert isinstance(err.value, CacheError)
    assert http_server.count("GET") == 0
    assert _no_content_left(cache_env)


@pytest.mark.parametrize("framing", ["close", "chunked"])
def test_body_without_length_is_stopped_at_the_limit(http_server, cache_env, framing):
    http_server.add("/big.bin", TWO_MB, chunk=64 << 10, content_length=False,
                    chunked=framing == "chunked")
    with pytest.raises(DownloadTooLargeError, match="grown past"):
        cached_path(http_server.url("/big.bin"), progress=False, max_download_size=1 << 20)
    assert _no_content_left(cache_env)


def test_s3_object_over_the_limit_is_refused(s3_env, cache_env):
    s3_env.client().put_object(Bucket=s3_env.bucket, Key="big.bin", Body=TWO_MB)
    with pytest.raises(DownloadTooLargeError, match="max_download_size"):
        cached_path(s3_env.url("big.bin"), progress=False, max_download_size="1M")
    assert _no_content_left(cache_env)


def test_keyword_wins_over_the_environment(http_server, monkeypatch):
    http_server.add("/big.bin", TWO_MB)
    url = http_server.url("/big.bin")
    monkeypatch.setenv("BERTCONVERT_MAX_DOWNLOAD_SIZE", "10M")
    with pytest.raises(DownloadTooLargeError, match="max_download_size"):
        cached_path(url, progress=False, max_download_size="1M")
    monkeypatch.setenv("BERTCONVERT_MAX_DOWNLOAD_SIZE", "1M")
    with open(cached_path(url, progress=False, max_download_size="3M"), "rb") as f:
        assert f.read() == TWO_MB


def test_gzip_content_encoding_bomb_is_refused(http_server, cache_env):
    """8 MiB of zeros sent gzip-encoded (8 KiB on the wire) expand a thousandfold, beyond
    the default ratio of 100."""
    body = gzip.compress(bytes(8 << 20))
    http_server.add("/bomb.bin", body, headers={"Content-Encoding": "gzip"})
    with pytest.raises(DownloadTooLargeError, match="BERTCONVERT_MAX_EXTRACT_RATIO"):
        cached_path(http_server.url("/bomb.bin"), progress=False)
    assert _no_content_left(cache_env)
    # A ratio raised for a trusted source lets it through.
    path = cached_path(http_server.url("/bomb.bin"), progress=False, max_extract_ratio=5000)
    assert os.path.getsize(path) == 8 << 20


# --- deadline and minimum speed ---------------------------------------------------------------
def test_trickling_server_hits_the_deadline(http_server, cache_env, monkeypatch):
    monkeypatch.setenv("BERTCONVERT_FETCH_DEADLINE", "1.5")
    # One byte every 0.3 s: the read timeout never fires, and the whole body would take 30 s.
    http_server.add("/slow.bin", os.urandom(100), chunk=1, delay=0.3, etag=None)
    with pytest.raises(DownloadTimeoutError, match="deadline"):
        cached_path(http_server.url("/slow.bin"), progress=False)
    assert entry_names(cache_env) == []


def test_transfer_below_the_minimum_speed_stops_and_keeps_a_resumable_partial(
        http_server, cache_env, monkeypatch):
    # The window speed is judged over. The server sends at most ~1 KB/s (sleeps only make it
    # slower), far below 10K/s, so the first full window always fails the check.
    monkeypatch.setenv("BERTCONVERT_HTTP_TIMEOUT", "1")
    data = os.urandom(50_000)
    res = http_server.add("/slow.bin", data, chunk=20, delay=0.02)  # ~1 KB/s
    url = http_server.url("/slow.bin")
    with pytest.raises(DownloadTimeoutError, match="minimum speed"):
        cached_path(url, progress=False, min_speed="10K")
    assert [n for n in entry_names(cache_env) if not n.startswith(".")] == []
    assert any(".part-" in n for n in cache_files(cache_env))
    res.delay, res.chunk = 0.0, 1 << 20
    # The resume at full speed: judged over the default 60 s window, so a pause of the test
    # machine cannot fail it.
    monkeypatch.delenv("BERTCONVERT_HTTP_TIMEOUT")
    with open(cached_path(url, progress=False, min_speed="10K"), "rb") as f:
        assert f.read() == data
    assert http_server.log("GET")[-1].headers["range"].startswith("bytes=")


# --- validation of the settings ----------------------------------------------------------------
LIMIT_VARS = ["BERTCONVERT_MAX_DOWNLOAD_SIZE", "BERTCONVERT_FETCH_DEADLINE",
              "BERTCONVERT_MIN_SPEED", "BERTCONVERT_MAX_EXTRACT_SIZE",
              "BERTCONVERT_MAX_EXTRACT_RATIO", "BERTCONVERT_HTTP_TIMEOUT"]


@pytest.mark.parametrize("value", ["0", "-1", "nan", "inf", "lots", "-0.5", "0x10"])
@pytest.mark.parametrize("var", LIMIT_VARS)
def test_invalid_environment_limit_is_a_named_error(http_server, monkeypatch, var, value):
    http_server.add("/w.bin", b"weights")
    monkeypatch.setenv(var, value)
    with pytest.raises(CacheSettingError, match=var):
        cached_path(http_server.url("/w.bin"), progress=False)
    assert http_server.count() == 0


def test_400_digit_values(http_server, monkeypatch):
    """A 400-digit byte count is merely large (exact integers); a 400-digit duration is no
    finite number of seconds."""
    http_server.add("/w.bin", b"weights")
    monkeypatch.setenv("BERTCONVERT_MAX_DOWNLOAD_SIZE", "9" * 400)
    assert cached_path(http_server.url("/w.bin"), progress=False)
    monkeypatch.setenv("BERTCONVERT_FETCH_DEADLINE", "9" * 400)
    with pytest.raises(CacheSettingError, match="BERTCONVERT_FETCH_DEADLINE"):
        cached_path(http_server.url("/w.bin"), progress=False)


@pytest.mark.parametrize("keyword", ["max_download_size", "fetch_deadline", "min_speed",
                                     "max_extract_size", "max_extract_ratio"])
@pytest.mark.parametrize("value", [0, -5, float("nan"), float("inf"), "garbage", True])
def test_invalid_keyword_limit_is_a_named_error(tmp_path, keyword, value):
    local = tmp_path / "vocab.txt"
    local.write_text("hello\n")
    with pytest.raises(CacheSettingError, match=f"{keyword}="):
        cached_path(str(local), **{keyword: value})


def test_invalid_settings_exit_2_on_the_command_line(http_server, monkeypatch, capsys):
    http_server.add("/w.bin", b"weights")
    for var, value in [("BERTCONVERT_HTTP_TIMEOUT", "0"), ("BERTCONVERT_HTTP_TIMEOUT", "nan"),
                       ("BERTCONVERT_MAX_DOWNLOAD_SIZE", "-1")]:
        monkeypatch.setenv(var, value)
        assert main(["cache", "fetch", http_server.url("/w.bin"), "-q"]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("bertconvert cache: error:") and var in err and "\n" not in err
        monkeypatch.delenv(var)


# --- archives ----------------------------------------------------------------------------------
def _tar_gz(members):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _zip(members):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


@pytest.mark.parametrize("kind", ["tar.gz", "zip"])
def test_zip_bomb_like_archive_is_refused_and_nothing_is_extracted(http_server, cache_env, kind):
    pack = _tar_gz if kind == "tar.gz" else _zip
    archive = pack({"model/pytorch_model.bin": bytes(6 << 20)})  # a few KB of compressed zeros
    http_server.add(f"/m.{kind}", archive)
    url = http_server.url(f"/m.{kind}")
    with pytest.raises(ArchiveTooLargeError, match="BERTCONVERT_MAX_EXTRACT_RATIO") as err:
        cached_path(url, extract=True, progress=False)
    assert isinstance(err.value, UnsafeArchiveError)
    assert not [n for n in cache_files(cache_env) if "extracted" in n or n.startswith(".")]
    model_dir = cached_path(url, extract=True, progress=False, max_extract_ratio=10_000)
    assert os.path.getsize(os.path.join(model_dir, "model", "pytorch_model.bin")) == 6 << 20


@pytest.mark.parametrize("kind", ["tar.gz", "zip"])
def test_extracted_total_is_capped(tmp_path, kind, monkeypatch):
    pack = _tar_gz if kind == "tar.gz" else _zip
    path = tmp_path / f"m.{kind}"
    path.write_bytes(pack({"a.bin": os.urandom(1 << 20), "b.bin": os.urandom(1 << 20)}))
    with pytest.raises(ArchiveTooLargeError, match="max_extract_size"):
        extract_archive(path, tmp_path / "out", max_size=1 << 20)
    assert not (tmp_path / "out").exists() and sorted(os.listdir(tmp_path)) == [path.name]
    monkeypatch.setenv("BERTCONVERT_MAX_EXTRACT_SIZE", "1M")
    with pytest.raises(ArchiveTooLargeError):
        cached_path(str(path), extract=True, cache_dir=tmp_path / "cache")
    # Incompressible model weights (a real archive's case) pass with the defaults.
    monkeypatch.delenv("BERTCONVERT_MAX_EXTRACT_SIZE")
    out = cached_path(str(path), extract=True, cache_dir=tmp_path / "cache")
    assert sorted(os.listdir(out)) == ["a.bin", "b.bin"]
