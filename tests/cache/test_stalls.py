"""A server that sends part of a body and then stalls fails after ``max_stalls`` read
timeouts (2), not after every attempt's: DownloadTimeoutError, partial kept for a resume.
Small read timeouts (BERTCONVERT_HTTP_TIMEOUT) keep the tests fast; nothing is timed."""
import os
import socket
import subprocess
import sys
import threading

import pytest

from bertconvert import cached_path
from bertconvert.cache.retry import RetryPolicy
from bertconvert.errors import DownloadTimeoutError, NetworkUnavailableError
from .servers import cache_files

pytestmark = pytest.mark.usefixtures("cache_env")

DATA = os.urandom(1 << 20)


@pytest.fixture
def short_timeout(monkeypatch):
    monkeypatch.setenv("BERTCONVERT_HTTP_TIMEOUT", "1")


def test_default_bound_is_well_under_a_minute():
    policy = RetryPolicy()
    assert policy.max_stalls == 2 and policy.read_timeout == 20.0
    # max_stalls read timeouts, and the backoff sleeps between them
    assert policy.max_stalls * policy.read_timeout + policy.backoff * 2 ** (policy.max_stalls - 1) < 45


def test_every_get_stalls(http_server, cache_env, short_timeout):
    res = http_server.add("/w.bin", DATA, stall_after=64 << 10, stall_each=True, stall=6.0,
                          stall_times=100, chunk=16 << 10)
    url = http_server.url("/w.bin")
    with pytest.raises(DownloadTimeoutError) as err:
        cached_path(url, progress=False)
    assert "stalled" in str(err.value) and "2 times" in str(err.value)
    gets = http_server.log("GET")
    assert len(gets) == 2  # one resume after the first stall, then given up (not 5 attempts)
    assert gets[1].headers["range"] == f"bytes={64 << 10}-"
    (partial,) = [n for n in cache_files(cache_env) if ".part-" in n]
    assert os.path.getsize(cache_env / partial) == 128 << 10  # kept: the next fetch resumes

    res.stall_after = None
    http_server.reset_log()
    path = cached_path(url, progress=False)
    assert open(path, "rb").read() == DATA
    assert http_server.log("GET")[0].headers["range"] == f"bytes={128 << 10}-"


def test_stall_after_much_progress_is_forgiven(http_server, short_timeout):
    big = os.urandom(20 << 20)
    http_server.add("/big.bin", big, stall_after=9 << 20, stall_each=True, stall=6.0,
                    stall_times=100, chunk=1 << 20)
    path = cached_path(http_server.url("/big.bin"), progress=False)
    assert open(path, "rb").read() == big
    assert len(http_server.log("GET")) == 3  # stalled at 9 MiB and 18 MiB, both resumed


def test_cli_stall_is_one_line(http_server, cache_env):
    http_server.add("/w.bin", DATA, stall_after=64 << 10, stall_each=True, stall=6.0,
                    stall_times=100, chunk=16 << 10)
    proc = subprocess.run([sys.executable, "-m", "bertconvert", "cache", "fetch", "-q",
                           http_server.url("/w.bin")], capture_output=True, text=True,
                          timeout=120, env=dict(os.environ, BERTCONVERT_CACHE=str(cache_env),
                                                BERTCONVERT_HTTP_TIMEOUT="1"))
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "stalled" in lines[0] and "Traceback" not in proc.stderr


class _SilentServer:
    """Accepts connections on loopback, reads the request, never answers."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.accepted = 0
        self.held = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.accepted += 1
            self.held.append(conn)

    def close(self):
        self.sock.close()
        for conn in self.held:
            conn.close()


def test_head_that_never_answers(cache_env, short_timeout):
    server = _SilentServer()
    try:
        with pytest.raises(NetworkUnavailableError) as err:
            cached_path(f"http://127.0.0.1:{server.sock.getsockname()[1]}/w.bin", progress=False)
        assert "no answer within 1 s, 2 times" in str(err.value)
        assert server.accepted == 2
    finally:
        server.close()
