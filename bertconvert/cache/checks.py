"""Pieces shared by the HTTP and S3 transports of the weight cache.

* :class:`RemoteInfo` — what a metadata request (HTTP HEAD, S3 HeadObject) told us: ETag,
  size, and the checksums the content must match (:class:`Expected`).
* :class:`StreamHasher` — hashes bytes while they are downloaded, one thread per algorithm,
  so sha256 + md5 of a 440 MB file cost little more wall time than the download itself
  (hashlib releases the GIL on large buffers).
* :class:`RetryPolicy` — attempts, exponential backoff and timeouts, overridable from the
  environment (``BERTCONVERT_HTTP_RETRIES``, ``BERTCONVERT_HTTP_BACKOFF``,
  ``BERTCONVERT_HTTP_TIMEOUT``).
* :func:`check_integrity` — compares what was downloaded with what was expected and raises
  :class:`~bertconvert.errors.IntegrityError` naming the source of the expectation.
"""
import base64
import binascii
import hashlib
import logging
import os
import queue
import random
import re
import threading
import time
import zlib
from dataclasses import dataclass, field

from ..errors import IntegrityError

log = logging.getLogger(__name__)

#: Read/write/hash granularity. Large blocks keep Python overhead per byte negligible.
CHUNK_SIZE = 8 << 20

_PLAIN_MD5 = re.compile(r'^"?([0-9a-fA-F]{32})"?$')
_MULTIPART_ETAG = re.compile(r'^"?[0-9a-fA-F]{32}-\d+"?$')


def is_multipart_etag(etag):
    """True for an S3 multipart ETag (``"<md5 of part md5s>-<parts>"``); other ETags that
    happen to hold a hyphen (nginx's ``"5f8d-1a2b"``) are not.

    >>> is_multipart_etag('"9b2cf535f27731c974343645a3985328-3"'), is_multipart_etag('"5f8d-1a2b"')
    (True, False)
    """
    return bool(etag) and bool(_MULTIPART_ETAG.match(etag.strip()))


@dataclass(frozen=True)
class Expected:
    """One checksum the content must have: algorithm, lowercase hex value, and who said so."""

    algorithm: str
    hexdigest: str
    source: str


@dataclass
class RemoteInfo:
    """Metadata of a remote object, gathered before deciding whether to download."""

    url: str
    etag: str = None
    size: int = None
    last_modified: str = None
    expected: list = field(default_factory=list)
    version_id: str = None
    accept_ranges: bool = False
    encrypted: bool = False  # SSE-KMS / SSE-C: the ETag is no MD5 of the content
    #: Content-Encoding of the body (e.g. "gzip" for an S3 object stored with that metadata),
    #: None for identity. The server's checksums then describe the encoded bytes.
    content_encoding: str = None
    #: Bytes an encoded body takes on the wire, when known (HEAD's Content-Length): a body
    #: that ends before it is truncated even when what arrived decodes cleanly.
    wire_size: int = None

    @property
    def strong_etag(self):
        """The ETag when it is a strong validator (usable for If-Range), else None."""
        if self.etag and not self.etag.startswith("W/"):
            return self.etag
        return None


ENV_ETAG_MD5 = "BERTCONVERT_ETAG_MD5"


def etag_md5_mode():
    """``BERTCONVERT_ETAG_MD5``: ``"auto"`` (unset: an ETag is an MD5 only where the server
    documents it so, i.e. S3 and S3-compatible stores), ``"never"`` (0/false/no/off) or
    ``"always"`` (1/true/yes/on: every server's plain 32-hex ETag is taken for an MD5, for a
    mirror known to work that way). Anything else is CacheSettingError."""
    raw = os.environ.get(ENV_ETAG_MD5, "").strip().lower()
    if raw in ("", "auto"):
        return "auto"
    if raw in ("0", "false", "no", "off", "never"):
        return "never"
    if raw in ("1", "true", "yes", "on", "always"):
        return "always"
    from ..errors import CacheSettingError
    raise CacheSettingError(f"{ENV_ETAG_MD5}={raw!r} is not valid: expected auto (the default), "
                            "0/never or 1/always")


def md5_from_etag(etag, encrypted=False):
    """The content MD5 carried by ``etag``, or None.

    Only a strong ETag of exactly 32 hex digits counts: S3 multipart ETags end in ``-N``,
    SSE-KMS/SSE-C ETags are not MD5s (``encrypted``), weak ETags make no byte-level promise.
    ETags are opaque (RFC 9110): callers ask this only of servers that document their ETags
    as MD5s (S3). ``BERTCONVERT_ETAG_MD5=0`` turns it off everywhere.

    >>> md5_from_etag('"d41d8cd98f00b204e9800998ecf8427e"')
    'd41d8cd98f00b204e9800998ecf8427e'
    >>> md5_from_etag('"9b2cf535f27731c974343645a3985328-3"') is None
    True
    """
    if not etag or etag.startswith("W/") or encrypted:
        return None
    if etag_md5_mode() == "never":
        return None
    m = _PLAIN_MD5.match(etag.strip())
    return m.group(1).lower() if m else None


def b64_to_hex(value):
    """S3 ``x-amz-checksum-*`` values are base64 of the big-endian digest; we compare in hex."""
    try:
        return base64.b64decode(value, validate=True).hex()
    except (binascii.Error, ValueError):
        return None


# --- content-encoded bodies ------------------------------------------------------------------
class _ZlibDecoder:
    """Decodes a gzip (every member of it) or zlib-wrapped deflate body, block by block.

    :meth:`decode` yields pieces of at most :data:`DECODED_PIECE` bytes: a megabyte of
    compressed zeros expands a thousandfold, and must not do so in memory at once.
    """

    def __init__(self, wbits):
        self._wbits = wbits
        self._z = zlib.decompressobj(wbits)

    def decode(self, data):
        while data:
            out = self._z.decompress(data, DECODED_PIECE)
            if out:
                yield out
            if self._z.eof:
                data = self._z.unused_data  # a further gzip member follows, or nothing
                if data:
                    self._z = zlib.decompressobj(self._wbits)
            else:
                data = self._z.unconsumed_tail

    def finish(self):
        """The last bytes; raises zlib.error when the stream stopped short of its end."""
        tail = self._z.flush()
        if not self._z.eof:
            raise zlib.error("the compressed stream ends early")
        return tail


#: Largest piece a content-encoded body is decoded into at once.
DECODED_PIECE = 4 << 20

#: Content-Encodings bertconvert decodes itself, so that the server's checksums can be
#: checked on the encoded bytes while the decoded file is stored.
WIRE_DECODERS = {"gzip": lambda: _ZlibDecoder(16 + zlib.MAX_WBITS),
                 "x-gzip": lambda: _ZlibDecoder(16 + zlib.MAX_WBITS),
                 "deflate": lambda: _ZlibDecoder(zlib.MAX_WBITS)}


# --- hashing while downloading -------------------------------------------------------------
class _Crc32:
    name = "crc32"

    def __init__(self):
        self._value = 0

    def update(self, data):
        self._value = zlib.crc32(data, self._value)

    def hexdigest(self):
        return f"{self._value:08x}"


class _Crc32c:
    """google_crc32c's Checksum, fed views too: its C extension takes ``bytes`` only."""

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


#: ``md5-parts:<part size>``: the S3 multipart ETag, MD5 of the parts' MD5s plus "-<parts>".
MULTIPART_MD5_PREFIX = "md5-parts:"


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


def multipart_md5_expectation(etag, part_size, source):
    """The :class:`Expected` an S3 multipart ETag gives once its part size is known."""
    value = etag.strip().strip('"').lower()
    return Expected(f"{MULTIPART_MD5_PREFIX}{part_size}", value, source)


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


SUPPORTED_ALGORITHMS = ("sha256", "md5", "sha1", "crc32", "crc32c", "crc64nvme")


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


class _Pending:
    """Counts the workers still hashing one buffer; the last one calls ``release``."""

    __slots__ = ("_left", "_lock", "_release")

    def __init__(self, workers, release):
        self._left, self._lock, self._release = workers, threading.Lock(), release

    def done(self):
        with self._lock:
            self._left -= 1
            last = self._left == 0
        if last:
            self._release()


class BufferPool:
    """A fixed set of reusable receive buffers.

    Receiving into fresh ``bytes`` for every block costs a page fault per 4 KiB (the
    allocator hands large blocks back to the kernel and maps them again): 0.15-0.2 s of CPU
    and ~0.2 s of wall time per 440 MB measured here. Buffers are handed out by :meth:`get`
    (blocking while all are in use) and come back through :meth:`put`.
    """

    def __init__(self, count, size):
        self.size = size
        self._free = queue.Queue()
        for _ in range(count):
            self._free.put(bytearray(size))

    def get(self):
        return self._free.get()

    def put(self, buf):
        self._free.put(buf)


class StreamHasher:
    """Feed bytes with :meth:`update`; the costliest algorithms run in worker threads.

    hashlib releases the GIL on large buffers, so a worker hashes while the caller receives
    the next block. Workers are given to the costliest algorithms first, one per core left
    over after the caller's own (a downloading caller keeps its core busy receiving and
    writing); the rest are hashed in the caller's thread. On 2 cores an MD5 ETag check
    (the slowest hash) thus gets a core to itself with sha256 computed inline, instead of
    three busy threads sharing two cores: 0.75 -> ~0.6 s for 440 MB measured here.

    What :meth:`update` is given must stay unchanged until it is hashed: ``bytes``, or a
    view of a reused buffer together with a ``release`` callback that says when the buffer
    may be refilled. Queues are bounded, so memory stays at a few chunks per worker.

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
        self._queues, self._threads = [], []
        by_cost = sorted(self.algorithms, key=_cost, reverse=True)
        threaded = by_cost[:self._workers]
        self._inline = [self._hashes[a] for a in by_cost[self._workers:]]
        for a in threaded:
            q = queue.Queue(maxsize=4)
            t = threading.Thread(target=self._work, args=(self._hashes[a], q), daemon=True,
                                 name=f"bertconvert-{a}")
            t.start()
            self._queues.append(q)
            self._threads.append(t)

    @staticmethod
    def _work(h, q):
        while True:
            item = q.get()
            if item is None:
                return
            data, pending = item
            try:
                h.update(data)
            finally:
                if pending is not None:
                    pending.done()

    def update(self, data, release=None):
        """Hash ``data`` (bytes, or a view that stays unchanged until ``release``).

        ``release``, when given, is called once every algorithm is done with ``data`` (at
        once if none runs in a worker), so the caller may refill a reused buffer.
        """
        if not len(data):
            if release is not None:
                release()
            return
        # The caller counts as one more user: a worker may finish before the inline hashes
        # have even started.
        pending = _Pending(len(self._queues) + 1, release) if release is not None else None
        for q in self._queues:
            q.put((data, pending))
        for h in self._inline:
            h.update(data)
        if pending is not None:
            pending.done()

    def _finish(self):
        for q in self._queues:
            q.put(None)
        for t in self._threads:
            t.join()
        self._queues, self._threads = [], []

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
    """``{algorithm: hexdigest}`` of a file on disk."""
    from tqdm.auto import tqdm

    hasher = StreamHasher(algorithms)
    pool = BufferPool(6, CHUNK_SIZE)  # reused: no page faults per block (see BufferPool)
    size = os.path.getsize(path)
    try:
        with open(path, "rb", buffering=0) as f, \
                tqdm(total=size, unit="B", unit_scale=True, unit_divisor=1024,
                     desc=os.path.basename(path)[:16], disable=not progress, leave=False) as bar:
            while True:
                buf = pool.get()
                n = f.readinto(buf)
                if not n:
                    break
                hasher.update(memoryview(buf)[:n].toreadonly(),
                              release=lambda buf=buf: pool.put(buf))
                bar.update(n)
    finally:
        digests = hasher.hexdigests()
    return digests


def check_integrity(url, size, digests, expected_size, expected):
    """Raise IntegrityError unless ``size`` and every digest match what was expected."""
    if expected_size is not None and size != expected_size:
        raise IntegrityError(
            f"download of {url} has {size} bytes but the server announced {expected_size}; "
            "the partial file was deleted. Retry; if it persists, the server or a proxy is "
            "truncating the transfer")
    for exp in expected:
        actual = digests.get(exp.algorithm)
        if actual is None:
            continue
        if actual.lower() != exp.hexdigest.lower():
            raise IntegrityError(
                f"{exp.algorithm} of {url} is {actual} but {exp.source} says {exp.hexdigest}; "
                "the corrupt download was deleted. Check the mirror's copy (or the sha256 you "
                "passed) and retry")


# --- retries ---------------------------------------------------------------------------------
def _env_number(name, default, kind=float):
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        return kind(raw)
    except ValueError:
        log.warning("ignoring %s=%r (not a number)", name, raw)
        return default


@dataclass
class RetryPolicy:
    """How hard to try: ``attempts`` in total, sleeping ``backoff * 2**n`` (jittered) between."""

    attempts: int = 5
    backoff: float = 0.5
    max_backoff: float = 10.0
    connect_timeout: float = 10.0
    read_timeout: float = 60.0
    #: The fetch's :class:`~bertconvert.cache_limits.TransferWatch` (deadline), when set.
    watch: object = None

    @classmethod
    def from_env(cls):
        """Defaults, changed by ``BERTCONVERT_HTTP_RETRIES``/``_BACKOFF`` (a bad value is
        ignored with a warning) and ``BERTCONVERT_HTTP_TIMEOUT`` (seconds, a finite number
        above zero: anything else is CacheSettingError, as requests would refuse it later)."""
        from .limits import setting

        policy = cls()
        policy.attempts = max(1, _env_number("BERTCONVERT_HTTP_RETRIES", policy.attempts, int))
        backoff = _env_number("BERTCONVERT_HTTP_BACKOFF", policy.backoff)
        policy.backoff = backoff if backoff >= 0 and backoff != float("inf") else policy.backoff
        policy.read_timeout = setting("timeout", None, "BERTCONVERT_HTTP_TIMEOUT",
                                      policy.read_timeout, "seconds")
        return policy

    @property
    def timeout(self):
        """``(connect, read)`` timeouts of the next request (cut to the fetch's deadline)."""
        if self.watch is not None:
            return self.watch.timeout(self.connect_timeout, self.read_timeout)
        return (self.connect_timeout, self.read_timeout)

    def sleep(self, attempt, retry_after=None):
        """Sleep before attempt number ``attempt + 1`` (``retry_after`` from the server wins)."""
        delay = min(self.max_backoff, self.backoff * (2 ** attempt))
        delay *= 0.5 + random.random() / 2  # jitter: many processes must not retry in lockstep
        if retry_after is not None:
            delay = min(self.max_backoff * 3, max(delay, retry_after))
        if self.watch is not None:
            # Sleeping past the deadline would only delay the DownloadTimeoutError.
            delay = min(delay, self.watch.remaining())
        time.sleep(delay)
        if self.watch is not None:
            self.watch.remaining()


def parse_retry_after(value):
    """Seconds from a Retry-After header holding a number (HTTP dates are ignored)."""
    try:
        return max(0.0, float(value))
    except (TypeError, ValueError):
        return None


def progress_bar(total, desc, enabled, initial=0):
    """A byte-counting tqdm bar (disabled when ``enabled`` is false)."""
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, unit="B", unit_scale=True, unit_divisor=1024,
                desc=desc, disable=not enabled, leave=False, mininterval=0.5)
