"""RangeReader's promises, against the HTTP test server: only truly adjacent ranges are
coalesced, large ranges are split into parts, the bytes fetched ahead stay within the budget
and the requests in flight within the connection count."""
import os

import numpy as np

from bertconvert.cache.objects import HttpObjects
from bertconvert.cache.ranged import RangeReader


def make_reader(http_server, data, **settings):
    http_server.add("/blob", data)
    objects = HttpObjects()
    url = http_server.url("/blob")
    return RangeReader(objects, {"blob": objects.head(url)}, **settings)


def test_adjacent_ranges_coalesce_gaps_are_never_read(http_server):
    data = os.urandom(10_000)
    reader = make_reader(http_server, data, part_bytes=1 << 20)
    wanted = [(0, 100), (100, 50), (400, 100), (500, 100), (900, 10)]  # gaps: 150-400, 600-900
    reader.schedule([("blob", o, n) for o, n in wanted])
    for offset, size in wanted:
        assert bytes(reader.read("blob", offset, size)) == data[offset:offset + size]
    reader.close()
    ranges = sorted(r.headers["range"] for r in http_server.log("GET", "/blob"))
    assert ranges == ["bytes=0-149", "bytes=400-599", "bytes=900-909"]
    assert sum(r.body_bytes for r in http_server.log("GET", "/blob")) == 360


def test_fetch_ahead_stays_within_budget_and_connections(http_server):
    data = os.urandom(64 * 1000)
    reader = make_reader(http_server, data, connections=3, budget_bytes=4000, part_bytes=1000)
    wanted = [(i * 2000, 1000) for i in range(32)]  # 32 separate 1000-byte units
    wanted.append((1000, 1000 * 5))  # ... and one of 5 parts (overlapping others: its own unit)
    reader.schedule([("blob", o, n) for o, n in wanted])
    for offset, size in wanted:
        got = reader.read("blob", offset, size)
        assert np.array_equal(got, np.frombuffer(data[offset:offset + size], np.uint8))
    reader.close()
    assert reader.peak_ahead <= 5000  # the budget, or one unit larger than it
    assert 1 <= reader.peak_requests <= 3
    parts = [r for r in http_server.log("GET", "/blob") if r.body_bytes == 1000]
    assert len(parts) == len(http_server.log("GET", "/blob"))  # every request one part
