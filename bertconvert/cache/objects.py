"""Remote objects read by byte range, pinned to the version seen first (S3 and HTTP(S)).

What a remote checkpoint source needs from a store, and nothing more: the metadata of an
object (size, ETag, S3 VersionId) or the fact that it is missing; a small object whole (an
``.index``, a ``checkpoint`` state file); a byte range of a large one written into a buffer
the caller owns; for S3, the keys under a prefix. Every read after the first is *pinned*:
S3 ``GetObject`` gets ``IfMatch`` (and ``VersionId`` when the bucket is versioned), HTTP
``If-Match``, and the ETag of every answer is compared again, so bytes of another version
are never mixed in (:class:`~bertconvert.errors.SourceChangedError`).

Retries follow the cache's policy (:class:`~bertconvert.cache.retry.RetryPolicy`: attempts,
backoff, ``Retry-After``, at most ``max_stalls`` read timeouts): a dropped
connection, a short body and 5xx/429 are tried again;
a 404/403 is :class:`~bertconvert.errors.RemoteNotFoundError`, a 412 SourceChangedError, a
range answered with other bytes :class:`~bertconvert.errors.RangeProtocolError`. A server
that answers a ``Range`` request with ``200`` (it ignores ranges) hands the response to the
caller's ``whole`` callback instead, which reads the object once. Clients are the cache's
own (:func:`bertconvert.cache.s3.make_client`, :func:`bertconvert.cache.http.make_session`),
so credentials, endpoints and proxies come from the same standard configuration.
"""
import logging
import re
import threading
from dataclasses import dataclass

from ..errors import (DownloadError, RangeProtocolError, RemoteNotFoundError,
                      SourceChangedError)
from .redact import scrub, shown_url

log = logging.getLogger(__name__)

_CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+|\*)")
#: Bytes copied from a response at a time.
_READ_CHUNK = 1 << 20


@dataclass
class Pin:
    """The version of an object a conversion reads: its size, ETag and S3 VersionId."""

    url: str
    size: int
    etag: str = None
    version_id: str = None

    def record(self):
        """The provenance entry of this object (``conversion.json``'s ``source_files``)."""
        entry = {"path": shown_url(self.url), "size": self.size, "sha256": None,
                 "etag": self.etag}
        if self.version_id:
            entry["version_id"] = self.version_id
        return entry


def _changed(url, pinned, seen):
    return SourceChangedError(
        f"{shown_url(url)} changed while it was being converted (ETag {pinned} -> {seen}); "
        "nothing was published. Run the conversion again once the upload is finished")


class _Counter:
    """Bytes received from the store, for reports and the benchmark (thread-safe)."""

    def __init__(self):
        self.bytes = 0
        self.requests = 0
        self._lock = threading.Lock()

    def add(self, nbytes=0, requests=0):
        with self._lock:
            self.bytes += nbytes
            self.requests += requests


def _fill(chunks, into, url, counter):
    """Copy ``chunks`` (an iterator of bytes) into memoryview ``into``; returns the count.
    More bytes than ``into`` holds is RangeProtocolError (the server sends another range)."""
    got = 0
    for chunk in chunks:
        n = len(chunk)
        counter.add(n)
        if got + n > len(into):
            raise RangeProtocolError(f"{shown_url(url)} sent more than the {len(into)} bytes "
                                     "asked for; its answers to byte ranges cannot be trusted")
        into[got:got + n] = chunk
        got += n
    return got


class HttpObjects:
    """Objects on an HTTP(S) server with ``Range`` support (one requests session per thread)."""

    def __init__(self, policy=None, proxies=None):
        from .retry import RetryPolicy

        self.policy = policy or RetryPolicy.from_env()
        self.proxies = proxies
        self.received = _Counter()
        self._local = threading.local()
        self._sessions, self._sessions_lock = [], threading.Lock()

    def _session(self):
        session = getattr(self._local, "session", None)
        if session is None:
            from .http import make_session

            session = self._local.session = make_session(self.proxies)
            with self._sessions_lock:
                self._sessions.append(session)
        return session

    def close(self):
        """Close every thread's connections."""
        with self._sessions_lock:
            sessions, self._sessions = self._sessions, []
        for session in sessions:
            session.close()

    def _attempts(self, url, what, call):
        """``call()`` with the cache's retry policy; ``call`` returns a value or raises."""
        from .http import _network_errors, _raise_if_certificate_failure
        from .retry import Stalls

        errors = _network_errors()
        last = None
        # A silent server costs a read timeout per attempt: bounded as the cache's downloads
        # are (max_stalls), not by every attempt.
        stalls = Stalls(self.policy)
        for attempt in range(self.policy.attempts):
            if attempt:
                self.policy.sleep(attempt - 1, getattr(last, "retry_after", None))
            try:
                return call()
            except _Retry as e:
                last = e
            except errors as e:
                _raise_if_certificate_failure(url, e)
                last = e
                stalls.seen(e, 0, lambda seconds: DownloadError(
                    f"{what} {shown_url(url)} stalled: no byte for {seconds:g} s, {stalls.count} "
                    "times; stopped. Raise BERTCONVERT_HTTP_TIMEOUT for a server that pauses "
                    "this long"))
            log.info("%s %s failed (%s); attempt %d/%d", what, shown_url(url),
                     scrub(str(last), url), attempt + 1, self.policy.attempts)
        raise DownloadError(f"{what} {shown_url(url)} failed after {self.policy.attempts} "
                            f"attempts: {scrub(str(last), url)}; retry later") from last

    def _check_status(self, url, r, pin=None):
        from .http import NOT_FOUND_STATUSES, RETRY_STATUSES
        from .retry import parse_retry_after

        if r.status_code in NOT_FOUND_STATUSES:
            raise RemoteNotFoundError(f"{shown_url(url)} answered HTTP {r.status_code}: it does "
                                      "not exist or access is denied")
        if r.status_code == 412:
            raise _changed(url, pin.etag if pin else None, r.headers.get("ETag"))
        if r.status_code in RETRY_STATUSES:
            e = _Retry(f"HTTP {r.status_code}")
            e.retry_after = parse_retry_after(r.headers.get("Retry-After"))
            raise e
        if r.status_code not in (200, 206):
            raise DownloadError(f"GET {shown_url(url)} answered HTTP {r.status_code} "
                                f"({r.reason}); expected 200 or 206")
        if pin is not None and pin.etag and r.headers.get("ETag") not in (None, pin.etag):
            raise _changed(url, pin.etag, r.headers.get("ETag"))

    def head(self, url):
        """The :class:`Pin` of ``url``, or None when it does not exist (404/403/410)."""
        from .http import head

        try:
            info = head(url, self._session(), self.policy)
        except RemoteNotFoundError:
            return None
        self.received.add(requests=1)
        if info.size is None:
            raise DownloadError(f"{shown_url(url)} has no Content-Length; byte ranges of it "
                                "cannot be read")
        etag = info.etag if info.etag and not info.etag.startswith("W/") else None
        if etag is None:
            log.warning("%s has no strong ETag: a change to it while it is read cannot be "
                        "detected", shown_url(url))
        return Pin(url, info.size, etag)

    def get_small(self, url, limit):
        """``(bytes, Pin)`` of a whole small object, or None when it does not exist; more
        than ``limit`` bytes is RangeProtocolError."""
        def call():
            with self._session().get(url, stream=True, timeout=self.policy.timeout,
                                     headers={"Accept-Encoding": "identity"},
                                     proxies=self.proxies) as r:
                self.received.add(requests=1)
                self._check_status(url, r)
                data = bytearray()
                for chunk in r.iter_content(_READ_CHUNK):
                    self.received.add(len(chunk))
                    data += chunk
                    if len(data) > limit:
                        raise RangeProtocolError(f"{shown_url(url)} is larger than {limit} "
                                                 "bytes; not a checkpoint index")
                length = r.headers.get("Content-Length", "")
                if length.isdigit() and int(length) != len(data):
                    raise _Retry(f"body ended at byte {len(data)} of {length}")
                etag = r.headers.get("ETag")
                return bytes(data), Pin(url, len(data), None if etag and etag.startswith("W/") else etag)

        try:
            return self._attempts(url, "GET", call)
        except RemoteNotFoundError:
            return None

    def read_range(self, pin, start, into, whole):
        """Fill memoryview ``into`` with the object's bytes from ``start``. A ``200`` answer
        (Range ignored) is handed to ``whole(chunks)`` and False returned; True otherwise."""
        url, end = pin.url, start + len(into) - 1
        headers = {"Range": f"bytes={start}-{end}", "Accept-Encoding": "identity"}
        if pin.etag:
            headers["If-Match"] = pin.etag

        def call():
            with self._session().get(url, stream=True, timeout=self.policy.timeout,
                                     headers=headers, proxies=self.proxies) as r:
                self.received.add(requests=1)
                self._check_status(url, r, pin)
                if r.status_code == 200:
                    whole(self._counted(r.iter_content(_READ_CHUNK)), r.headers.get("Content-Length"))
                    return False
                m = _CONTENT_RANGE.match(r.headers.get("Content-Range", ""))
                if not m or (int(m.group(1)), int(m.group(2))) != (start, end) or \
                        m.group(3) not in ("*", str(pin.size)):
                    raise RangeProtocolError(
                        f"{shown_url(url)} answered bytes {start}-{end} with Content-Range "
                        f"{r.headers.get('Content-Range')!r}; its byte ranges cannot be trusted")
                length = r.headers.get("Content-Length", "")
                if length.isdigit() and int(length) != len(into):
                    raise RangeProtocolError(
                        f"{shown_url(url)} announced Content-Length {length} for the "
                        f"{len(into)} bytes {start}-{end}; its answers cannot be trusted")
                got = _fill(r.iter_content(_READ_CHUNK), into, url, self.received)
                if got != len(into):
                    raise _Retry(f"the body of bytes {start}-{end} ended after {got} bytes")
                return True

        return self._attempts(url, "GET", call)

    def _counted(self, chunks):
        for chunk in chunks:
            self.received.add(len(chunk))
            yield chunk


class _Retry(Exception):
    """An answer worth asking again (5xx, 429, a short body)."""

    retry_after = None


class S3Objects:
    """Objects in S3 or an S3-compatible store, through boto3's standard configuration."""

    def __init__(self, policy=None, proxies=None):
        from .retry import RetryPolicy
        from .s3 import make_client

        self.policy = policy or RetryPolicy.from_env()
        self.client = make_client(proxies, self.policy)
        self.received = _Counter()

    def _translate(self, url, e, action, pin=None):
        from .s3 import _translate

        error = _translate(url, e, action)
        if type(error).__name__ == "RemoteChangedError":
            return _changed(url, pin.etag if pin else None, "(412 Precondition Failed)")
        if isinstance(error, RemoteNotFoundError):  # said for a conversion, not a cache fetch
            code = getattr(e, "response", {}).get("Error", {}).get("Code", "")
            return RemoteNotFoundError(
                f"{shown_url(url)}: {code or 'not found'} on {action}: the bucket or object "
                "does not exist or access is denied; check the URL, AWS_ENDPOINT_URL_S3 and "
                "your AWS credentials")
        return error

    def head(self, url):
        """The :class:`Pin` of ``url``, or None when it does not exist."""
        from .s3 import _errors, split_s3_url

        bucket, key = split_s3_url(url)
        try:
            meta = self.client.head_object(Bucket=bucket, Key=key)
        except _errors() as e:
            error = self._translate(url, e, "HeadObject")
            if isinstance(error, RemoteNotFoundError):
                return None
            raise error from e
        finally:
            self.received.add(requests=1)
        return Pin(url, meta["ContentLength"], meta.get("ETag"), meta.get("VersionId"))

    def list(self, url):
        """``(keys, folders)``: the object names right under prefix ``url`` (one level)."""
        from .s3 import _errors, split_s3_url

        bucket, prefix = split_s3_url(url)
        keys, folders = [], []
        try:
            pages = self.client.get_paginator("list_objects_v2").paginate(
                Bucket=bucket, Prefix=prefix, Delimiter="/")
            for page in pages:
                self.received.add(requests=1)
                keys += [o["Key"][len(prefix):] for o in page.get("Contents", ())]
                folders += [p["Prefix"][len(prefix):] for p in page.get("CommonPrefixes", ())]
        except _errors() as e:
            raise self._translate(url, e, "ListObjectsV2") from e
        return keys, folders

    def _get(self, pin_or_url, action, **extra):
        from .s3 import _errors, split_s3_url

        pin = pin_or_url if isinstance(pin_or_url, Pin) else None
        url = pin.url if pin else pin_or_url
        bucket, key = split_s3_url(url)
        kwargs = {"Bucket": bucket, "Key": key, **extra}
        if pin is not None and pin.etag:
            kwargs["IfMatch"] = pin.etag
        if pin is not None and pin.version_id:
            kwargs["VersionId"] = pin.version_id
        try:
            self.received.add(requests=1)
            return self.client.get_object(**kwargs)
        except _errors() as e:
            raise self._translate(url, e, action, pin) from e

    def _attempts(self, url, call):
        import urllib3

        from .s3 import _errors

        from .retry import Stalls

        # A body cut short surfaces as botocore's streaming errors, or urllib3's underneath.
        transient = (_Retry, urllib3.exceptions.HTTPError, ConnectionError, *_errors())
        last = None
        stalls = Stalls(self.policy)  # as HttpObjects: a silent store costs max_stalls timeouts
        for attempt in range(self.policy.attempts):
            if attempt:
                self.policy.sleep(attempt - 1)
            try:
                return call()
            except transient as e:  # requests themselves are retried by boto3 already
                last = e
            except DownloadError as e:
                if isinstance(e, (RangeProtocolError, SourceChangedError)):
                    raise
                last = e
            stalls.seen(last, 0, lambda seconds: DownloadError(
                f"GetObject {shown_url(url)} stalled: no byte for {seconds:g} s, {stalls.count} "
                "times; stopped. Raise BERTCONVERT_HTTP_TIMEOUT for a store that pauses this "
                "long"))
            log.info("GetObject %s failed (%s); attempt %d/%d", shown_url(url), last,
                     attempt + 1, self.policy.attempts)
        raise DownloadError(f"GetObject {shown_url(url)} failed after {self.policy.attempts} "
                            f"attempts: {last}; retry later") from last

    def get_small(self, url, limit):
        """``(bytes, Pin)`` of a whole small object, or None when it does not exist."""
        def call():
            r = self._get(url, "GetObject")
            if r["ContentLength"] > limit:
                r["Body"].close()
                raise RangeProtocolError(f"{shown_url(url)} is larger than {limit} bytes; "
                                         "not a checkpoint index")
            data = bytearray(r["ContentLength"])
            got = _fill(r["Body"].iter_chunks(_READ_CHUNK), memoryview(data), url, self.received)
            if got != len(data):
                raise _Retry(f"the body ended after {got} of {len(data)} bytes")
            return bytes(data), Pin(url, len(data), r.get("ETag"), r.get("VersionId"))

        try:
            return self._attempts(url, call)
        except RemoteNotFoundError:
            return None

    def read_range(self, pin, start, into, whole):
        """As :meth:`HttpObjects.read_range`, with ``GetObject(Range, IfMatch, VersionId)``."""
        end = start + len(into) - 1

        def call():
            r = self._get(pin, "GetObject", Range=f"bytes={start}-{end}")
            body = r["Body"]
            try:
                if r.get("ETag") and pin.etag and r["ETag"] != pin.etag:
                    raise _changed(pin.url, pin.etag, r["ETag"])
                if not r.get("ContentRange"):  # a store that ignores Range
                    whole(self._counted(body.iter_chunks(_READ_CHUNK)), str(r["ContentLength"]))
                    return False
                m = _CONTENT_RANGE.match(r["ContentRange"])
                if not m or (int(m.group(1)), int(m.group(2))) != (start, end) or \
                        r["ContentLength"] != len(into):
                    raise RangeProtocolError(
                        f"{shown_url(pin.url)} answered bytes {start}-{end} with Content-Range "
                        f"{r['ContentRange']!r} and {r['ContentLength']} bytes")
                got = _fill(body.iter_chunks(_READ_CHUNK), into, pin.url, self.received)
                if got != len(into):
                    raise _Retry(f"the body of bytes {start}-{end} ended after {got} bytes")
                return True
            finally:
                body.close()

        return self._attempts(pin.url, call)

    def _counted(self, chunks):
        for chunk in chunks:
            self.received.add(len(chunk))
            yield chunk

    def close(self):
        """Nothing to close: boto3's client pools its own connections."""


def objects_for(url, proxies=None):
    """The store client for ``url``'s scheme (s3, http, https)."""
    scheme = url.split("://", 1)[0].lower()
    if scheme == "s3":
        return S3Objects(proxies=proxies)
    return HttpObjects(proxies=proxies)
