"""What a download must match, and whether it does: the facts both transports gather.

* :class:`RemoteInfo` -- what a metadata request (HTTP HEAD, S3 HeadObject) told us: ETag,
  size, and the checksums the content must match (:class:`Expected`, each naming who said so).
* ETags read as checksums where that is sound: a plain single-part MD5
  (:func:`md5_from_etag`, ``BERTCONVERT_ETAG_MD5``), an S3 multipart ETag once its part size
  is known (:func:`multipart_md5_expectation`); base64 checksum headers in hex.
* :func:`check_integrity` -- compares what was downloaded with what was expected and raises
  :class:`~bertconvert.errors.IntegrityError` naming the source of the expectation.

The digests themselves are computed by :mod:`.digests`.
"""
import base64
import binascii
import os
import re
from dataclasses import dataclass, field

from ..errors import IntegrityError

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


#: ``md5-parts:<part size>``: the S3 multipart ETag, MD5 of the parts' MD5s plus "-<parts>".
MULTIPART_MD5_PREFIX = "md5-parts:"


def multipart_md5_expectation(etag, part_size, source):
    """The :class:`Expected` an S3 multipart ETag gives once its part size is known."""
    value = etag.strip().strip('"').lower()
    return Expected(f"{MULTIPART_MD5_PREFIX}{part_size}", value, source)


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

