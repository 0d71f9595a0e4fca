"""Redirects: followed to http(s) only, a few hops at most; anything else is a one-line
RedirectError (exit 2 in the CLI), with nothing fetched and nothing cached."""
import os
import subprocess
import sys

import pytest

from bertconvert import cached_path
from bertconvert.cache.http import MAX_REDIRECTS
from bertconvert.errors import RedirectError
from .servers import LoopbackServer, cache_files

pytestmark = pytest.mark.usefixtures("cache_env")

CONTENT = b"the weights" * 50


def _cli_fetch(url, cache_dir):
    proc = subprocess.run([sys.executable, "-m", "bertconvert", "cache", "fetch", "-q", url],
                          capture_output=True, text=True, timeout=120,
                          env=dict(os.environ, BERTCONVERT_CACHE=str(cache_dir)))
    return proc.returncode, proc.stderr


def _nothing_cached(cache_dir):
    return [n for n in cache_files(cache_dir) if not n.endswith(".lock")] == []


@pytest.mark.parametrize("target", ["file:///etc/passwd", "ftp://127.0.0.1:9/w.bin",
                                    "s3://bucket/w.bin", "gopher://127.0.0.1:9/x",
                                    "http://:80/no-host"])
def test_redirect_to_another_scheme_is_refused(http_server, cache_env, target):
    http_server.add("/w.bin", redirect_to=target)
    url = http_server.url("/w.bin")
    with pytest.raises(RedirectError) as err:
        cached_path(url, progress=False)
    message = str(err.value)
    assert target.split("/")[0] in message and "\n" not in message
    assert http_server.count() == 1  # the one HEAD that was redirected; no retries
    assert _nothing_cached(cache_env)
    code, stderr = _cli_fetch(url, cache_env)
    assert code == 2 and "Traceback" not in stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("bertconvert cache: error:"), stderr
    assert _nothing_cached(cache_env)


def test_redirect_loop(http_server, cache_env):
    http_server.add("/a", redirect_to="/b")
    http_server.add("/b", redirect_to="/a")
    with pytest.raises(RedirectError, match="redirect loop") as err:
        cached_path(http_server.url("/a"), progress=False)
    assert f"more than {MAX_REDIRECTS} times" in str(err.value)
    assert http_server.count() == MAX_REDIRECTS + 1  # no retries of a loop
    code, stderr = _cli_fetch(http_server.url("/a"), cache_env)
    assert code == 2 and len(stderr.strip().splitlines()) == 1, stderr
    assert _nothing_cached(cache_env)


def test_forty_hop_chain(http_server, cache_env):
    for i in range(40):
        http_server.add(f"/h{i}", redirect_to=f"/h{i + 1}")
    http_server.add("/h40", CONTENT)
    with pytest.raises(RedirectError, match="chain too long"):
        cached_path(http_server.url("/h0"), progress=False)
    assert http_server.count(path="/h40") == 0  # never reached
    code, stderr = _cli_fetch(http_server.url("/h0"), cache_env)
    assert code == 2 and len(stderr.strip().splitlines()) == 1, stderr
    assert _nothing_cached(cache_env)


def test_short_chains_and_other_hosts_still_work(http_server, cache_env):
    with LoopbackServer() as other:
        other.add("/final.bin", CONTENT)
        for i in range(MAX_REDIRECTS - 1):
            http_server.add(f"/h{i}", redirect_to=f"/h{i + 1}")
        http_server.add(f"/h{MAX_REDIRECTS - 1}", redirect_to=other.url("/final.bin"))
        path = cached_path(http_server.url("/h0"), progress=False)
        assert open(path, "rb").read() == CONTENT
