"""Shards of a server that ignores ``Range`` are each spooled whole into their own temporary
file, also when several are spooled at once (they once shared a file name: the bytes of one
shard were handed out for another's)."""
import os
import threading

from bertconvert.cache.objects import HttpObjects
from bertconvert.cache.ranged import RangeReader


class _SpoolTogether(HttpObjects):
    """HttpObjects whose whole-object answers start streaming only once ``parties`` of them
    are under way, and end only once all of them are streamed: the spools of different
    shards surely overlap, and no shard is read back before every spool is written."""

    def __init__(self, parties):
        super().__init__()
        self.barrier = threading.Barrier(parties, timeout=60)  # a hang guard, not a timing

    def read_range(self, pin, start, into, whole):
        def together(chunks, length):
            def gated():
                self.barrier.wait()
                yield from chunks
                self.barrier.wait()
            return whole(gated(), length)
        return super().read_range(pin, start, into, together)


def test_shards_spooled_at_once_keep_their_own_bytes(http_server):
    shards = {f"/s{i}": os.urandom(50_000) for i in range(2)}
    objects = _SpoolTogether(len(shards))
    pins = {}
    for path, data in shards.items():
        http_server.add(path, data, ignore_range=True)
        pins[path] = objects.head(http_server.url(path))
    reader = RangeReader(objects, pins, connections=4, part_bytes=1 << 20)
    wanted = [(path, offset, 1000) for path in shards for offset in (0, 20_000, 49_000)]
    reader.schedule(wanted)
    try:
        for path, offset, size in wanted:
            assert bytes(reader.read(path, offset, size)) == shards[path][offset:offset + size]
    finally:
        reader.close()
        objects.close()
    for path in shards:  # each shard was read whole, once
        assert [r.status for r in http_server.log("GET", path)] == [200]
