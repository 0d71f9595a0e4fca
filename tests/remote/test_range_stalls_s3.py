"""The stall bound of remote range reads holds on S3 too: a store that goes silent mid-body is
given up after ``max_stalls`` read timeouts (2), not after every one of the policy's attempts.
moto is reached through a proxy that stops forwarding a connection's answer after 16 KiB
until the test ends; a short read timeout keeps it fast, nothing is timed."""
import os
import socket
import threading
from urllib.parse import urlsplit

import numpy as np
import pytest

from bertconvert.cache.objects import S3Objects
from bertconvert.errors import DownloadError
from .proxy import CountingProxy

DATA = os.urandom(256 << 10)
STALL_AFTER = 16 << 10


class StallingProxy(CountingProxy):
    """Forwards each connection's answer up to STALL_AFTER bytes, then holds it until
    ``release`` is set (the client times out meanwhile)."""

    def __init__(self, upstream_port):
        super().__init__(upstream_port)
        self.release = threading.Event()
        self.stalled = 0

    def _pump(self, src, dst, count):
        if not count:
            return super()._pump(src, dst, count)
        forwarded = 0
        try:
            while True:
                data = src.recv(1 << 16)
                if not data:
                    break
                room = STALL_AFTER - forwarded
                if len(data) > room:
                    dst.sendall(data[:max(room, 0)])
                    with self._lock:
                        self.stalled += 1
                    self.release.wait(60)  # a hang guard
                    break
                forwarded += len(data)
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass


def test_a_stalling_s3_range_is_given_up_after_two_stalls(s3_env, monkeypatch):
    s3_env.client().put_object(Bucket=s3_env.bucket, Key="shard", Body=DATA)
    monkeypatch.setenv("BERTCONVERT_HTTP_TIMEOUT", "1")
    monkeypatch.setenv("BERTCONVERT_HTTP_BACKOFF", "0.01")
    proxy = StallingProxy(urlsplit(s3_env.endpoint).port)
    with proxy:
        monkeypatch.setenv("AWS_ENDPOINT_URL_S3", f"http://127.0.0.1:{proxy.port}")
        objects = S3Objects()
        try:
            pin = objects.head(s3_env.url("shard"))
            into = memoryview(np.empty(128 << 10, np.uint8))
            with pytest.raises(DownloadError) as e:
                objects.read_range(pin, 0, into, lambda chunks, length: None)
        finally:
            proxy.release.set()
    assert "stalled" in str(e.value) and "2 times" in str(e.value)
    assert proxy.stalled == 2  # not the policy's 5 attempts
