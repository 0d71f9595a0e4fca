"""How hard a transfer tries, and how it shows its progress meanwhile.

* :class:`RetryPolicy` -- attempts, exponential backoff and timeouts, overridable from the
  environment (``BERTCONVERT_HTTP_RETRIES``, ``BERTCONVERT_HTTP_BACKOFF``,
  ``BERTCONVERT_HTTP_TIMEOUT``), cut to the fetch's deadline when one is watched;
* :class:`Stalls` -- how many read timeouts (a silent server) one request may meet;
* :func:`parse_retry_after` -- a server's ``Retry-After``;
* :func:`progress_bar` -- the byte-counting bar both transports show.
"""
import logging
import os
import random
import time
from dataclasses import dataclass

log = logging.getLogger(__name__)


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
    """How hard to try: ``attempts`` in total, sleeping ``backoff * 2**n`` (jittered) between.

    A stall -- no byte for ``read_timeout`` seconds -- may happen ``max_stalls - 1`` times per
    request before it is given up on (each stall costs a whole read timeout; five attempts
    would make a stalled server cost minutes): with the defaults, a server that stalls
    fails in 2 x 20 s plus a second of backoff, where a dropped connection gets all five
    attempts.
    """

    attempts: int = 5
    backoff: float = 0.5
    max_backoff: float = 10.0
    connect_timeout: float = 10.0
    read_timeout: float = 20.0
    max_stalls: int = 2
    #: The fetch's :class:`~bertconvert.cache.limits.TransferWatch` (deadline), when set.
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


#: Bytes that must arrive between two stalls for the earlier one to be forgiven.
STALL_FORGIVEN_BYTES = 8 << 20


def _is_stall(error):
    """True when ``error`` is a read timeout (the server went silent), not a refused or
    dropped connection. ``socket.timeout`` is ``TimeoutError`` itself."""
    import requests
    import urllib3

    if isinstance(error, requests.ConnectTimeout):
        return False
    if isinstance(error, (requests.ReadTimeout, urllib3.exceptions.ReadTimeoutError,
                          TimeoutError)):
        return True
    seen, todo = set(), [error]
    while todo:  # requests wraps urllib3's ReadTimeoutError in a ConnectionError mid-body
        e = todo.pop()
        if e is None or id(e) in seen or not isinstance(e, BaseException):
            continue
        seen.add(id(e))
        if isinstance(e, (urllib3.exceptions.ReadTimeoutError, TimeoutError)):
            return True
        todo += [e.__cause__, e.__context__, *e.args]
    return False


class Stalls:
    """Counts the stalls of one request; raises once ``policy.max_stalls`` are reached."""

    def __init__(self, policy, offset=0):
        self.policy, self.count, self.since = policy, 0, offset

    def seen(self, error, offset, make_error):
        """``error`` ended an attempt at byte ``offset``: raise ``make_error(seconds)`` when it
        is one stall too many."""
        if not _is_stall(error):
            return
        forgiven = offset - self.since >= STALL_FORGIVEN_BYTES
        self.count = 1 if forgiven else self.count + 1
        self.since = offset
        if self.count >= self.policy.max_stalls:
            raise make_error(self.policy.read_timeout) from error


def parse_retry_after(value):
    """Seconds from a Retry-After header holding a number (HTTP dates are ignored)."""
    try:
        return max(0.0, float(value))
    except (TypeError, ValueError):
        return None


def progress_bar(total, desc, progress, initial=0):
    """A byte-counting bar (:mod:`bertconvert.terminal.progress` decides whether it is drawn:
    ``progress`` requested and stderr a terminal, or forced)."""
    from ..terminal.progress import progress_bar as bar

    return bar(progress, total=total, desc=desc, unit="B", initial=initial, unit_scale=True,
               unit_divisor=1024, leave=False, mininterval=0.5)
