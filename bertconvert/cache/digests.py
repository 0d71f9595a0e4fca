"""Checksums computed while a download's bytes arrive, and of files already on disk.

* the algorithms: hashlib's sha256/md5/sha1, zlib's crc32, crc32c (google_crc32c), CRC-64/NVME
  (awscrt) and the S3 multipart ETag recomputed from the bytes (``md5-parts:<part size>``);
  one whose library is missing is skipped (and so not verified);
* :class:`StreamHasher` -- every algorithm fed the same blocks, the costliest ones each on a
  :class:`~bertconvert.hashing.HashWorker` thread, so sha256 + md5 of a 440 MB file cost
  little more wall time than the download itself;
* :func:`hash_file`.

What the digests are compared with is :mod:`.checks`' business.
"""
import hashlib
import logging
import os
import zlib

from ..hashing import HashWorker
from .checks import MULTIPART_MD5_PREFIX

log = logging.getLogger(__name__)

#: Read/write/hash granularity. Large blocks keep Python overhead per byte negligible.
CHUNK_SIZE = 8 << 20


class _Crc32:
    name = "crc32"

    def __init__(self):
        self._value = 0

    def update(self, data):
        self._value = zlib.crc32(data, self._value)

    def hexdigest(self):
        return f"{self._value:08x}"


class _Crc32c:
    """google_crc32c's Checksum; its C extension takes read-only ``bytes`` only, so anything
    else (a caller's bytearray) is copied first."""

    name = "crc32c"

    def __init__(self, checksum):
        self._checksum = checksum

    def update(self, data):
        self._checksum.update(data if isinstance(data, bytes) else bytes(data))

    def hexdigest(self):
        return self._checksum.hexdigest()


def _crc32c():
    try:
        import google_crc32c
    except ImportError:
        return None
    return _Crc32c(google_crc32c.Checksum())


class _Crc64Nvme:
    """CRC-64/NVME, the full-object checksum S3 adds to every new object (multipart ones
    included), through awscrt's hardware-accelerated implementation."""

    name = "crc64nvme"

    def __init__(self, fn):
        self._fn, self._value = fn, 0

    def update(self, data):
        self._value = self._fn(data, self._value)

    def hexdigest(self):
        return f"{self._value:016x}"


def _crc64nvme():
    try:
        from awscrt.checksums import crc64nvme
    except ImportError:  # awscrt is a dependency, but an install may lack a wheel for it
        return None
    return _Crc64Nvme(crc64nvme)


class _PartsMd5:
    """Recomputes an S3 multipart ETag from the bytes: the MD5 of each ``part_size`` piece,
    then the MD5 of those digests, then ``-<number of parts>``."""

    name = "md5-parts"

    def __init__(self, part_size):
        self._part, self._in_part = part_size, 0
        self._md5, self._digests = hashlib.md5(), []

    def update(self, data):
        view = memoryview(data).cast("B")
        while len(view):
            take = min(len(view), self._part - self._in_part)
            self._md5.update(view[:take])
            self._in_part += take
            view = view[take:]
            if self._in_part == self._part:
                self._digests.append(self._md5.digest())
                self._md5, self._in_part = hashlib.md5(), 0

    def hexdigest(self):
        digests = self._digests + ([self._md5.digest()] if self._in_part else [])
        return f"{hashlib.md5(b''.join(digests)).hexdigest()}-{len(digests)}"


def _new_hash(algorithm):
    if algorithm.startswith(MULTIPART_MD5_PREFIX):
        size = algorithm[len(MULTIPART_MD5_PREFIX):]
        return _PartsMd5(int(size)) if size.isdigit() and int(size) > 0 else None
    if algorithm in ("sha256", "md5", "sha1"):
        return hashlib.new(algorithm)
    if algorithm == "crc32":
        return _Crc32()
    if algorithm == "crc32c":
        return _crc32c()
    if algorithm == "crc64nvme":
        return _crc64nvme()
    return None


def _hexdigest(h):
    # google_crc32c.Checksum.hexdigest() returns bytes, not str: normalise, or comparing
    # it with the expected value would fail for every download.
    value = h.hexdigest() if hasattr(h, "hexdigest") else h.digest().hex()
    return value.decode("ascii") if isinstance(value, bytes) else value


#: Rough cost of each checksum in ns per byte on one x86-64 core (hashlib/OpenSSL with SHA
#: extensions, zlib, hardware CRCs); only the order matters. MD5 cannot use SIMD and is the
#: slowest by far.
HASH_COST = {"md5": 1.2, "md5-parts": 1.2, "sha256": 0.5, "sha1": 0.5, "crc32": 0.1,
             "crc32c": 0.05, "crc64nvme": 0.05}


def usable_cores():
    """CPUs this process may run on (its affinity mask where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def _cost(algorithm):
    return HASH_COST.get(algorithm.split(":", 1)[0], 1.0)


def threaded_algorithms(algorithms, workers):
    """The algorithms that get a thread of their own: the costliest first, at most ``workers``
    of them (ties keep their order).

    >>> threaded_algorithms(["sha256", "crc32", "md5"], 2)
    ('md5', 'sha256')
    """
    return tuple(sorted(algorithms, key=_cost, reverse=True)[:max(0, workers)])


class StreamHasher:
    """Feed bytes with :meth:`update`; the costliest algorithms run in worker threads.

    hashlib releases the GIL on large buffers, so a worker hashes while the caller receives
    the next block. Workers are given to the costliest algorithms first, one per core left
    over after the caller's own (a downloading caller keeps its core busy receiving and
    writing), each on a :class:`~bertconvert.hashing.HashWorker`; the rest are hashed in
    the caller's thread, as all are where no thread can be started. On 2 cores an MD5 ETag check
    (the slowest hash) thus gets a core to itself with sha256 computed inline, instead of
    three busy threads sharing two cores: 0.75 -> ~0.6 s for 440 MB measured here.

    :meth:`update` takes ``bytes``: a worker may hash a block after the call returns, so
    it must not change. Queues are bounded, so memory stays at a few blocks per worker.

    >>> h = StreamHasher(["sha256"]); h.update(b"abc"); h.hexdigests()["sha256"][:8]
    'ba7816bf'
    """

    def __init__(self, algorithms, threaded=True, workers=None):
        algos = []
        for a in dict.fromkeys(algorithms):  # ordered, unique
            if _new_hash(a) is None:
                log.debug("checksum %s not supported here; not verified", a)
                continue
            algos.append(a)
        self.algorithms = tuple(algos)
        if not threaded:
            workers = 0
        elif workers is None:
            workers = max(1, usable_cores() - 1)
        self._workers = workers
        self._start()

    def _start(self):
        self._hashes = {a: _new_hash(a) for a in self.algorithms}
        threaded = threaded_algorithms(self.algorithms, self._workers)
        # Threaded ones first: their blocks are queued before the caller hashes the rest.
        inline = [a for a in self.algorithms if a not in threaded]
        self._order = (*threaded, *inline)
        self._feeds = [HashWorker(self._hashes[a], f"bertconvert-{a}", threaded=a in threaded)
                       for a in self._order]

    @property
    def threaded(self):
        """The algorithms hashed on a thread of their own until :meth:`hexdigests` (none
        where no thread could be started: they are then hashed in the caller's thread)."""
        return tuple(a for a, feed in zip(self._order, self._feeds) if feed.threaded)

    def update(self, data):
        """Hash ``data`` (``bytes``, or anything that stays unchanged from now on)."""
        if not len(data):
            return
        for feed in self._feeds:
            feed.feed(data)

    def _finish(self):
        for feed in self._feeds:
            feed.close()

    def reset(self):
        """Forget everything hashed so far (a download restarted from byte 0)."""
        self._finish()
        self._start()

    def hexdigests(self):
        """Stop the workers and return ``{algorithm: hexdigest}``."""
        self._finish()
        return {a: _hexdigest(h) for a, h in self._hashes.items()}

    def feed_file(self, f, length):
        """Hash the first ``length`` bytes of open file ``f`` (the part kept from an earlier try)."""
        f.seek(0)
        remaining = length
        while remaining > 0:
            block = f.read(min(CHUNK_SIZE, remaining))
            if not block:
                break
            self.update(block)
            remaining -= len(block)


def hash_file(path, algorithms=("sha256",), progress=False):
    """``{algorithm: hexdigest}`` of a file on disk (``progress``: see
    :mod:`bertconvert.terminal.progress`)."""
    from ..terminal.progress import progress_bar

    hasher = StreamHasher(algorithms)
    size = os.path.getsize(path)
    try:
        with open(path, "rb", buffering=0) as f, \
                progress_bar(progress, total=size, desc=os.path.basename(path)[:16], unit="B",
                             unit_scale=True, unit_divisor=1024, leave=False) as bar:
            while True:
                block = f.read(CHUNK_SIZE)  # fresh bytes each time: a worker may still hash it
                if not block:
                    break
                hasher.update(block)
                bar.update(len(block))
    finally:
        digests = hasher.hexdigests()
    return digests
