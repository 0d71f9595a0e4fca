"""Limits of one cached fetch: how big, how long, how slow, how far an archive may expand,
and how many files it may hold.

Without them a hostile or broken server could fill the disk (a body with no Content-Length
that never ends), hold a process for hours (a byte every few seconds keeps the read timeout
happy), or hand over a small archive that extracts to gigabytes -- or to a million empty
files, which no byte limit notices. Each limit has a default large enough for every released
BERT archive (bert-large: 1.3 GB, extracting to about the same; a handful of files) and can be
changed per call (a :func:`~bertconvert.cache.cached_path` keyword) or
per environment:

=========================  ==================================  ========  ===================
keyword                    environment variable                default   unit / syntax
=========================  ==================================  ========  ===================
``max_download_size``      ``BERTCONVERT_MAX_DOWNLOAD_SIZE``    20G       bytes: 20G, 500M, 1024
``fetch_deadline``         ``BERTCONVERT_FETCH_DEADLINE``       6h        seconds: 90, 45m, 6h
``min_speed``              ``BERTCONVERT_MIN_SPEED``            1K        bytes per second
``max_extract_size``       ``BERTCONVERT_MAX_EXTRACT_SIZE``     20G       bytes
``max_extract_ratio``      ``BERTCONVERT_MAX_EXTRACT_RATIO``    100       times the packed size
``max_extract_members``    ``BERTCONVERT_MAX_EXTRACT_MEMBERS``  10000     files, directories, links
=========================  ==================================  ========  ===================

A keyword wins over the environment. Every value must be a finite number above zero: 0,
negatives, NaN, infinity and garbage are :class:`~bertconvert.errors.CacheSettingError`
(exit status 2), never silently ignored.

* ``min_speed`` is judged over windows of the read timeout (``BERTCONVERT_HTTP_TIMEOUT``,
  20 s): a transfer that receives fewer than ``min_speed * timeout`` bytes in one window is
  abandoned (``DownloadTimeoutError``; a resumable partial download is kept), so a trickle
  is noticed within half a minute, not after the deadline; a server that goes silent is
  given up after two read timeouts (:class:`~bertconvert.cache.retry.Stalls`).
* The expansion ratio applies to the bytes an archive (or a ``Content-Encoding``) expands
  to beyond :data:`RATIO_GRACE` (1 MiB): small archives of a few padded files may always
  expand that far; a megabyte that unpacks to a gigabyte may not.
* The member count is checked while the archive's listing is read (tar headers only, a zip's
  directory), before anything is extracted: a model archive holds a handful of files, so
  10000 leaves room for any model directory while a million empty files (a 5 MB .tar.gz)
  is refused in well under a second.
"""
import logging
import math
import os
import re
import time
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

from ..errors import CacheSettingError, DownloadTimeoutError, DownloadTooLargeError

log = logging.getLogger(__name__)

ENV_MAX_DOWNLOAD_SIZE = "BERTCONVERT_MAX_DOWNLOAD_SIZE"
ENV_FETCH_DEADLINE = "BERTCONVERT_FETCH_DEADLINE"
ENV_MIN_SPEED = "BERTCONVERT_MIN_SPEED"
ENV_MAX_EXTRACT_SIZE = "BERTCONVERT_MAX_EXTRACT_SIZE"
ENV_MAX_EXTRACT_RATIO = "BERTCONVERT_MAX_EXTRACT_RATIO"
ENV_MAX_EXTRACT_MEMBERS = "BERTCONVERT_MAX_EXTRACT_MEMBERS"

DEFAULT_MAX_DOWNLOAD_SIZE = 20 << 30
DEFAULT_FETCH_DEADLINE = 6 * 3600.0
DEFAULT_MIN_SPEED = 1024
DEFAULT_MAX_EXTRACT_SIZE = 20 << 30
DEFAULT_MAX_EXTRACT_RATIO = 100.0
DEFAULT_MAX_EXTRACT_MEMBERS = 10_000
#: Bytes any archive may expand to whatever its ratio (tiny archives compress very well).
RATIO_GRACE = 1 << 20

_SIZE_UNITS = {"": 1, "b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}
_TIME_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_SIZE_RE = re.compile(r"\s*([0-9]*\.?[0-9]+)\s*([kmgtKMGT]?)(?:i?[bB])?\s*")
_TIME_RE = re.compile(r"\s*([0-9]*\.?[0-9]+)\s*([smhdwSMHDW]?)\s*")


def _number_with_unit(value, pattern, units):
    """``Decimal`` of a number (or a string with a unit), or None when it is not one."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return Decimal(value) if math.isfinite(value) else None
    m = pattern.fullmatch(str(value))
    if not m:
        return None
    try:
        return Decimal(m.group(1)) * units[m.group(2).lower()]
    except InvalidOperation:  # pragma: no cover - the pattern admits only plain decimals
        return None


def parse_size(text):
    """``"500M"``, ``"20G"``, ``"1.5GB"``, ``"1024"`` -> bytes (binary units), exactly.

    Any number of digits works (a Decimal, not a float, so no overflow). Raises ValueError.

    >>> parse_size("1.5G"), parse_size("7")
    (1610612736, 7)
    """
    number = _number_with_unit(text, _SIZE_RE, _SIZE_UNITS)
    if number is None:
        raise ValueError(f"size {text!r} not understood; use e.g. 500M, 20G, 1T or a byte count")
    return int(number)


def parse_seconds(text):
    """``"90"``, ``"45m"``, ``"6h"``, ``"2d"`` -> seconds (a float). Raises ValueError.

    >>> parse_seconds("2h")
    7200.0
    """
    number = _number_with_unit(text, _TIME_RE, _TIME_UNITS)
    if number is None:
        raise ValueError(f"duration {text!r} not understood; use e.g. 90 (seconds), 45m, 6h, 2d")
    return float(number)


def _ratio(text):
    if isinstance(text, str):
        text = text.strip().rstrip("xX").strip()
    if isinstance(text, bool):
        raise ValueError("not a number")
    value = float(text)
    if not math.isfinite(value):
        raise ValueError("not finite")
    return value


def _count(text):
    if isinstance(text, bool):
        raise ValueError("not a number")
    if isinstance(text, float):
        if not text.is_integer():
            raise ValueError("not a whole number")
        return int(text)
    return int(text) if isinstance(text, int) else int(str(text).strip())


_KINDS = {
    "size": (parse_size, "a positive byte count such as 20G, 500M or 1073741824"),
    "seconds": (parse_seconds, "a positive duration such as 90 (seconds), 45m or 6h"),
    "speed": (parse_size, "a positive number of bytes per second such as 1K or 100"),
    "ratio": (_ratio, "a positive number such as 100"),
    "count": (_count, "a positive whole number such as 10000"),
}


def setting(keyword, value, env, default, kind, allow_zero=False):
    """The validated value of one limit: ``value`` (a keyword argument) when not None, else
    the environment variable ``env`` when set, else ``default``.

    Raises CacheSettingError naming the keyword or the variable for anything that is not a
    finite number above zero (or zero itself, with ``allow_zero``).
    """
    if value is not None:
        origin, raw = f"{keyword}=", value
    else:
        raw = os.environ.get(env) if env else None
        if raw is None or raw.strip() == "":
            return default
        origin = f"{env}="
    parse, expected = _KINDS[kind]
    try:
        parsed = parse(raw)
    except (TypeError, ValueError, OverflowError):
        parsed = None
    low_enough = parsed is not None and (parsed >= 0 if allow_zero else parsed > 0)
    if not low_enough or (isinstance(parsed, float) and math.isinf(parsed)):
        # (a comparison is False for NaN; a 400-digit duration is an infinite float)
        if allow_zero:
            expected = expected.replace("a positive", "zero or a positive")
        hint = f"unset {env} or set it to" if origin == f"{env}=" else "pass"
        raise CacheSettingError(f"{origin}{raw!r} is not valid: expected {expected}; {hint} a "
                                "valid value")
    return parsed


@dataclass(frozen=True)
class Limits:
    """The limits of one fetch (see the module docstring); build with :func:`limits`."""

    max_download_size: int = DEFAULT_MAX_DOWNLOAD_SIZE
    fetch_deadline: float = DEFAULT_FETCH_DEADLINE
    min_speed: int = DEFAULT_MIN_SPEED
    max_extract_size: int = DEFAULT_MAX_EXTRACT_SIZE
    max_extract_ratio: float = DEFAULT_MAX_EXTRACT_RATIO
    max_extract_members: int = DEFAULT_MAX_EXTRACT_MEMBERS

    def expansion_allowance(self, packed_bytes):
        """How many bytes ``packed_bytes`` of archive (or encoded body) may expand to."""
        by_ratio = max(RATIO_GRACE, self.max_extract_ratio * max(0, packed_bytes))
        return min(self.max_extract_size, int(by_ratio))


def download_limits(max_download_size=None, fetch_deadline=None, min_speed=None,
                    max_extract_ratio=None, max_extract_size=None, max_extract_members=None):
    """:class:`Limits` for a download: keywords, else the environment, else the defaults."""
    return Limits(
        max_download_size=setting("max_download_size", max_download_size, ENV_MAX_DOWNLOAD_SIZE,
                                  DEFAULT_MAX_DOWNLOAD_SIZE, "size"),
        fetch_deadline=setting("fetch_deadline", fetch_deadline, ENV_FETCH_DEADLINE,
                               DEFAULT_FETCH_DEADLINE, "seconds"),
        min_speed=setting("min_speed", min_speed, ENV_MIN_SPEED, DEFAULT_MIN_SPEED, "speed"),
        max_extract_size=setting("max_extract_size", max_extract_size, ENV_MAX_EXTRACT_SIZE,
                                 DEFAULT_MAX_EXTRACT_SIZE, "size"),
        max_extract_ratio=setting("max_extract_ratio", max_extract_ratio, ENV_MAX_EXTRACT_RATIO,
                                  DEFAULT_MAX_EXTRACT_RATIO, "ratio"),
        max_extract_members=_members(max_extract_members))


def _members(value):
    return setting("max_extract_members", value, ENV_MAX_EXTRACT_MEMBERS,
                   DEFAULT_MAX_EXTRACT_MEMBERS, "count")


def extract_limits(max_extract_size=None, max_extract_ratio=None, max_extract_members=None):
    """:class:`Limits` for an extraction (the download limits are left at their defaults)."""
    return Limits(
        max_extract_size=setting("max_extract_size", max_extract_size, ENV_MAX_EXTRACT_SIZE,
                                 DEFAULT_MAX_EXTRACT_SIZE, "size"),
        max_extract_ratio=setting("max_extract_ratio", max_extract_ratio, ENV_MAX_EXTRACT_RATIO,
                                  DEFAULT_MAX_EXTRACT_RATIO, "ratio"),
        max_extract_members=_members(max_extract_members))


def human_size(n):
    """``1536`` -> ``"1.5 KiB"`` (messages only)."""
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{int(value)} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} B"  # pragma: no cover


class TransferWatch:
    """Enforces one fetch's :class:`Limits` while it runs.

    Created when the fetch starts (its HEAD counts towards the deadline); the transports
    call :meth:`timeout` for each request, :meth:`body_started` when a body begins and
    :meth:`received` after every read. ``shown`` is the URL as messages may show it
    (credentials redacted).
    """

    def __init__(self, shown, limits, window):
        self.shown = shown
        self.limits = limits
        self.window = window  # seconds over which min_speed is judged (the read timeout)
        self.deadline = time.monotonic() + limits.fetch_deadline
        self._mark = None

    def remaining(self):
        """Seconds left before the deadline; raises DownloadTimeoutError when none are."""
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise DownloadTimeoutError(
                f"fetching {self.shown} took longer than its deadline of "
                f"{self.limits.fetch_deadline:g} s; nothing was cached. Raise "
                f"{ENV_FETCH_DEADLINE} (or fetch_deadline=) for a slow link")
        return left

    def timeout(self, connect, read):
        """``(connect, read)`` timeouts for a request, cut to what the deadline leaves."""
        left = self.remaining()
        return (min(connect, left), min(read, left))

    def check_size(self, size, announced=True):
        """DownloadTooLargeError when ``size`` bytes exceed the maximum download size."""
        if size is not None and size > self.limits.max_download_size:
            what = "is announced as" if announced else "has grown past"
            raise DownloadTooLargeError(
                f"{self.shown} {what} {human_size(size)}, more than the maximum download size "
                f"of {human_size(self.limits.max_download_size)}; nothing was cached. Raise "
                f"{ENV_MAX_DOWNLOAD_SIZE} (or max_download_size=) if the file is expected to "
                "be this large")

    def body_started(self, offset):
        """A response body begins with ``offset`` bytes already in the file."""
        self._mark = (time.monotonic(), offset)

    def received(self, offset):
        """``offset`` bytes are now in the file: check size, deadline and speed."""
        if offset > self.limits.max_download_size:
            self.check_size(offset, announced=False)
        now = time.monotonic()
        if now >= self.deadline:
            self.remaining()
        if self._mark is None:
            self._mark = (now, offset)
            return
        since, at = self._mark
        elapsed = now - since
        if elapsed < self.window:
            return
        if offset - at < self.limits.min_speed * elapsed:
            raise DownloadTimeoutError(
                f"{self.shown} sent only {max(0, offset - at)} bytes in {elapsed:.0f} s, below "
                f"the minimum speed of {human_size(self.limits.min_speed)}/s; stopped (a "
                "resumable partial download is kept for the next try). Lower "
                f"{ENV_MIN_SPEED} (or min_speed=) for a very slow link")
        self._mark = (now, offset)

    def check_expansion(self, packed, unpacked):
        """DownloadTooLargeError when ``packed`` encoded bytes decoded to more than allowed."""
        if unpacked > self.limits.expansion_allowance(packed):
            raise DownloadTooLargeError(
                f"the Content-Encoding of {self.shown} expands {human_size(packed)} to more "
                f"than {human_size(unpacked)} (over {self.limits.max_extract_ratio:g} times); "
                f"refused as a decompression bomb, nothing was cached. Raise "
                f"{ENV_MAX_EXTRACT_RATIO} (or max_extract_ratio=) if this is expected")
