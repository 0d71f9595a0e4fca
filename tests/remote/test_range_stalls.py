"""A remote checkpoint's byte ranges obey the cache's stall bound: a server that goes silent
mid-range is given up after ``max_stalls`` read timeouts (2), as a download is, not after
every one of the policy's attempts. A short read timeout keeps it fast; nothing is timed."""
import os
import threading

import numpy as np
import pytest

from bertconvert.cache.objects import HttpObjects
from bertconvert.errors import DownloadError

DATA = os.urandom(256 << 10)


def test_a_stalling_range_is_given_up_after_two_stalls(http_server, monkeypatch):
    monkeypatch.setenv("BERTCONVERT_HTTP_TIMEOUT", "1")
    monkeypatch.setenv("BERTCONVERT_HTTP_BACKOFF", "0.01")
    release = threading.Event()
    http_server.add("/shard", DATA, stall_after=16 << 10, stall_each=True, stall_times=100,
                    stall_until=release, chunk=4 << 10)
    objects = HttpObjects()
    try:
        pin = objects.head(http_server.url("/shard"))
        into = memoryview(np.empty(128 << 10, np.uint8))
        with pytest.raises(DownloadError) as e:
            objects.read_range(pin, 0, into, lambda chunks, length: None)
    finally:
        release.set()
        objects.close()
    assert "stalled" in str(e.value) and "2 times" in str(e.value)
    assert len(http_server.log("GET", "/shard")) == 2  # not the policy's 5 attempts
