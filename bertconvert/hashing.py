"""Hashing beside other work: the one way bertconvert puts hash updates on threads.

Two pillars hash big files while doing something else: the cache checks a download's
checksums while its bytes arrive (:class:`bertconvert.cache.digests.StreamHasher`), and a
conversion hashes its source checkpoint for ``conversion.json`` while it converts
(:mod:`bertconvert.convert.provenance`). hashlib (like zlib and the CRC libraries) releases
the GIL on big blocks, so a hash kept on a thread of its own costs little wall time when a
core is spare.

* :func:`start_thread` starts a daemon thread, or answers None when the process cannot start
  one more; the caller then does the work itself. That is the plain fallback: the same
  digests, only without the overlap.
* :class:`HashWorker` keeps one hash object up to date on its own thread, fed blocks through
  a short queue (memory stays at a few blocks); unthreaded, it hashes on the caller's thread.
* :func:`feed_file` reads an unbuffered file into one reused buffer and hands each block to a
  hash (no allocation per block, so no page faults), stopping early when asked to.

Standard library only: every pillar may import it.
"""
import logging
import queue
import threading

log = logging.getLogger(__name__)

#: Block size for reading a file to hash: cache-sized, so the copy out of the page cache
#: stays cheap.
BLOCK_SIZE = 1 << 20


def start_thread(target, name):
    """``target()`` started on a daemon thread called ``name``; None when the process cannot
    start another thread (a thread limit reached): nothing ran, and the caller does the work
    on its own thread instead."""
    thread = threading.Thread(target=target, daemon=True, name=name)
    try:
        thread.start()
    except RuntimeError as e:  # "can't start new thread"
        log.debug("hashing on the caller's thread instead of %s: %s", name, e)
        return None
    return thread


class HashWorker:
    """One hash object (anything with ``update``) kept up to date on a thread of its own.

    :meth:`feed` queues a block and returns (the queue is short: a caller that outruns the
    hash waits), so the block must not change afterwards: give it ``bytes``. With
    ``threaded=False``, or when no thread can be started, :meth:`feed` hashes at once on the
    caller's thread. :meth:`close` waits for the queued blocks and returns the hash object.

    >>> import hashlib
    >>> w = HashWorker(hashlib.sha256(), "example"); w.feed(b"abc"); w.close().hexdigest()[:8]
    'ba7816bf'
    """

    def __init__(self, h, name, threaded=True, depth=4):
        self.hash = h
        self._queue = queue.Queue(maxsize=depth) if threaded else None
        self._thread = start_thread(self._work, name) if threaded else None
        if self._thread is None:
            self._queue = None

    @property
    def threaded(self):
        """True while the hash is updated on a thread of its own."""
        return self._thread is not None

    def _work(self):
        q = self._queue
        while True:
            data = q.get()
            if data is None:
                return
            self.hash.update(data)

    def feed(self, data):
        """Hash ``data`` (``bytes``: it may be hashed after this returns)."""
        if self._queue is not None:
            self._queue.put(data)
        else:
            self.hash.update(data)

    def close(self):
        """Wait until every block fed is hashed and stop the thread (again: no-op); returns
        the hash object."""
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join()
            self._thread = self._queue = None
        return self.hash


def feed_file(f, update, buf, stop=None):
    """Read the open unbuffered binary file ``f`` to its end into the reused buffer ``buf``,
    calling ``update`` with each filled part (a view, valid only during the call).

    Returns the number of bytes read, or None when the event ``stop`` was set first (the
    file was then not read to its end).
    """
    view = memoryview(buf)
    size = 0
    while True:
        if stop is not None and stop.is_set():
            return None
        n = f.readinto(buf)
        if not n:
            return size
        update(view[:n])
        size += n
