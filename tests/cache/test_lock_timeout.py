"""BERTCONVERT_LOCK_TIMEOUT is validated like the other cache settings: a value that is not a
finite duration of zero or more is a named error naming the variable (exit 2), also when
the entry's lock is held by another process -- where ``nan`` used to end in a traceback."""
import hashlib
import os
import subprocess
import sys

import pytest
from filelock import FileLock

from bertconvert import cached_path
from bertconvert.errors import CacheSettingError
from .servers import cache_files

pytestmark = pytest.mark.usefixtures("cache_env")


def _lock_path(cache_dir, url, etag):
    """``<key>.lock`` of an entry: key = sha256(url) + "." + sha256(etag), as in 0.6.2."""
    key = hashlib.sha256(url.encode()).hexdigest() + "." + hashlib.sha256(etag.encode()).hexdigest()
    return os.path.join(cache_dir, key + ".lock")


def _fetch(url, cache_dir, value):
    return subprocess.run([sys.executable, "-m", "bertconvert", "cache", "fetch", "-q", url],
                          capture_output=True, text=True, timeout=120,
                          env=dict(os.environ, BERTCONVERT_CACHE=str(cache_dir),
                                   BERTCONVERT_LOCK_TIMEOUT=value))


@pytest.mark.parametrize("value", ["nan", "-1", "inf", "soon", "1e400"])
def test_invalid_lock_timeout_with_the_lock_contended(http_server, cache_env, value):
    res = http_server.add("/w.bin", b"weights" * 100)
    url = http_server.url("/w.bin")
    os.makedirs(cache_env)
    with FileLock(_lock_path(cache_env, url, res.etag_header)):  # another holder
        proc = _fetch(url, cache_env, value)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "BERTCONVERT_LOCK_TIMEOUT" in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr
    assert http_server.count("GET") == 0
    assert [n for n in cache_files(cache_env) if not n.endswith(".lock")] == []


def test_invalid_lock_timeout_in_the_library(http_server, monkeypatch):
    http_server.add("/w.bin", b"weights")
    monkeypatch.setenv("BERTCONVERT_LOCK_TIMEOUT", "nan")
    with pytest.raises(CacheSettingError, match="BERTCONVERT_LOCK_TIMEOUT"):
        cached_path(http_server.url("/w.bin"), progress=False)


def test_zero_means_do_not_wait(http_server, cache_env):
    res = http_server.add("/w.bin", b"weights" * 100)
    url = http_server.url("/w.bin")
    os.makedirs(cache_env)
    with FileLock(_lock_path(cache_env, url, res.etag_header)):
        proc = _fetch(url, cache_env, "0")
    assert proc.returncode == 0, proc.stderr
    path = proc.stdout.split("\t")[1].strip()
    assert open(path, "rb").read() == b"weights" * 100
