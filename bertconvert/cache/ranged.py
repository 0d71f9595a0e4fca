"""The planned tensors' bytes out of remote shards: coalesced ranges, fetched in parallel.

The converter knows from the ``.index`` which bytes it needs (shard, offset, size per
tensor) and in which order it will write them. :class:`RangeReader` turns that into
*units*: byte ranges of one shard, each one tensor or several whose bytes are truly
adjacent (TensorFlow sorts variables by name, so a model's tensors interleave with their
``adam_m``/``adam_v`` slots: a gap is never read over). A unit larger than ``part_bytes``
is fetched as several ranges at once. Units are fetched ahead in the order they will be
consumed, by at most ``connections`` threads, while the bytes fetched but not yet consumed
stay under ``budget_bytes`` (a unit the consumer waits for is always fetched, so a tensor
larger than the budget still converts). A unit is dropped as soon as every tensor in it has
been handed out: memory stays about the budget plus the largest tensor.

A server that ignores ``Range`` (``200`` with the whole object) makes the shard be read
once, streamed into a temporary file that serves every later range of it; a warning says
so. crc32c checks are the consumer's (the bytes are handed out raw).
"""
import logging
import os
import tempfile
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from ..errors import DownloadError, RangeProtocolError
from .redact import shown_url

log = logging.getLogger(__name__)

#: Parallel connections (HTTP sessions / S3 requests in flight).
DEFAULT_CONNECTIONS = 8
#: Bytes fetched ahead of the consumer.
DEFAULT_BUDGET = 256 << 20
#: Largest single range request; larger units are split into parts fetched in parallel.
DEFAULT_PART = 8 << 20


@dataclass(eq=False)
class _Unit:
    shard: str                 # the shard's shown URL (the reader's name for it)
    start: int
    end: int
    names: list = field(default_factory=list)
    buffer: object = None
    futures: list = None
    waiting: set = None        # names not handed out yet

    @property
    def size(self):
        return self.end - self.start


class RangeReader:
    """Hand out byte ranges of remote shards, fetched ahead in parallel (thread-safe).

    ``objects``: the store client (:mod:`bertconvert.cache.objects`); ``pins``: ``{shard name:
    Pin}`` (the version each shard is read at). :meth:`schedule` names the ranges that will
    be asked for, in order; :meth:`read` hands one out (fetching it now when it was not
    scheduled). ``close()`` stops the threads and deletes the spooled shards.
    """

    def __init__(self, objects, pins, connections=DEFAULT_CONNECTIONS, budget_bytes=DEFAULT_BUDGET,
                 part_bytes=DEFAULT_PART):
        self.objects, self.pins = objects, pins
        self.budget, self.part = max(1, budget_bytes), max(1, part_bytes)
        self._pool = ThreadPoolExecutor(max_workers=max(1, connections),
                                        thread_name_prefix="bertconvert-range")
        self._lock = threading.Lock()
        self._queue = []           # units scheduled, not yet submitted, in consumption order
        self._by_range = {}        # (shard, offset, size) -> unit
        self._ahead = 0            # bytes of submitted units not yet released
        self._spools = {}          # shard -> path of the whole shard on disk
        self._spool_locks = {}
        self._spool_paths = {}     # shard -> its spool file's name (one per shard)
        self._gates = {}           # shard -> set once its first read has been answered
        self._tmp = None
        self._closed = False
        #: the most bytes fetched ahead of the consumer, and the most range requests in
        #: flight, at any moment (what the bounds promise; reported by the benchmark)
        self.peak_ahead = self.peak_requests = 0
        self._requests = 0

    # -- planning --------------------------------------------------------------------------
    def schedule(self, ranges):
        """``ranges``: ``[(shard, offset, size)]`` in the order they will be read."""
        order = {}
        for r in ranges:
            order.setdefault(r, len(order))
        units, current = [], None
        for shard, offset, size in sorted(order, key=lambda r: (r[0], r[1], r[2])):
            if (current is not None and current.shard == shard and offset == current.end
                    and current.size + size <= self.part):
                current.end += size
            else:
                current = _Unit(shard, offset, offset + size)
                units.append(current)
            current.names.append((shard, offset, size))
        first = {}
        for unit in units:
            unit.waiting = set(unit.names)
            first[id(unit)] = min(order[r] for r in unit.names)
            for r in unit.names:
                self._by_range[r] = unit
        units.sort(key=lambda u: first[id(u)])
        with self._lock:
            self._queue = units
            self._top_up()

    def _top_up(self):
        """Submit queued units while the bytes ahead stay within the budget (lock held)."""
        while self._queue and (self._ahead == 0 or self._ahead + self._queue[0].size <= self.budget):
            self._submit(self._queue.pop(0))

    def _submit(self, unit):
        unit.buffer = np.empty(unit.size, np.uint8)
        view = memoryview(unit.buffer)
        unit.futures = []
        for at in range(0, unit.size, self.part):
            # The first range asked of a shard goes alone (see _fetch); decided here, in
            # submission order, so which one it is does not depend on thread timing.
            opener = unit.shard not in self._gates
            if opener:
                self._gates[unit.shard] = threading.Event()
            unit.futures.append(self._pool.submit(self._fetch, unit.shard, unit.start + at,
                                                  view[at:at + self.part], opener))
        self._ahead += unit.size
        self.peak_ahead = max(self.peak_ahead, self._ahead)

    # -- reading ---------------------------------------------------------------------------
    def read(self, shard, offset, size):
        """The bytes ``[offset, offset + size)`` of ``shard`` as a uint8 array."""
        key = (shard, offset, size)
        with self._lock:
            if self._closed:
                raise DownloadError("the remote checkpoint reader is closed")
            unit = self._by_range.get(key)
            if unit is None or unit.waiting is None or key not in unit.waiting:
                unit = _Unit(shard, offset, offset + size, [key])  # not scheduled: fetch now
                unit.waiting = {key}
            if unit.futures is None:
                if unit in self._queue:
                    self._queue.remove(unit)
                self._submit(unit)
        for future in unit.futures:
            future.result()
        with self._lock:
            unit.waiting.discard(key)
            if not unit.waiting:
                self._ahead -= unit.size
                for name in unit.names:
                    if self._by_range.get(name) is unit:
                        del self._by_range[name]
            self._top_up()
        at = offset - unit.start
        return unit.buffer[at:at + size]

    def _fetch(self, shard, start, into, first):
        pin = self.pins[shard]
        # The first read of a shard goes alone: if its server ignores Range, that one answer
        # is the single whole read, not one of several racing ones.
        gate = self._gates[shard]
        if not first:
            gate.wait()
        with self._lock:
            self._requests += 1
            self.peak_requests = max(self.peak_requests, self._requests)
        try:
            if shard not in self._spools and self.objects.read_range(
                    pin, start, into, lambda chunks, length: self._spool(shard, chunks, length)):
                return
        finally:
            with self._lock:
                self._requests -= 1
            if first:
                gate.set()
        spooled = self._spools[shard]
        with open(spooled, "rb", buffering=0) as f:
            got = f.readinto(memoryview(into)) if f.seek(start) == start else 0
        if got != len(into):
            raise RangeProtocolError(f"{shard} ended before byte {start + len(into)}")

    def _spool(self, shard, chunks, length):
        """Read a shard whose server ignores Range once, into a temporary file."""
        with self._lock:
            lock = self._spool_locks.setdefault(shard, threading.Lock())
            if self._tmp is None:
                self._tmp = tempfile.TemporaryDirectory(prefix="bertconvert-shards-")
            # One name per shard, given under the lock: named from len(self._spools), shards
            # spooled at once shared one file (and handed out each other's bytes).
            if shard not in self._spool_paths:
                self._spool_paths[shard] = os.path.join(self._tmp.name,
                                                        f"shard-{len(self._spool_paths)}")
            path = self._spool_paths[shard]
        with lock:
            if shard in self._spools:
                return  # another thread read it meanwhile
            pin = self.pins[shard]
            log.warning("%s ignores byte ranges (it answered 200 with the whole object): "
                        "reading the shard whole, once (%d bytes)", shown_url(shard), pin.size)
            total = 0
            with open(path, "wb") as f:
                for chunk in chunks:
                    total += len(chunk)
                    if total > pin.size:
                        break
                    f.write(chunk)
            if total != pin.size or (length and length.isdigit() and int(length) != pin.size):
                raise RangeProtocolError(
                    f"{shown_url(shard)} sent {total} bytes (Content-Length {length}) for an "
                    f"object of {pin.size} bytes; its answers cannot be trusted")
            self._spools[shard] = path

    def close(self):
        """Stop fetching (pending ranges are dropped) and delete the spooled shards."""
        with self._lock:
            self._closed = True
            self._queue = []
        self._pool.shutdown(wait=True, cancel_futures=True)
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None
