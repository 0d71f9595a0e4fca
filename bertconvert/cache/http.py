"""HTTP(S) transport of the weight cache: HEAD for metadata, resumable streaming GET.

Rules this module keeps (each one a failure seen in the wild with 0.6.2's cache):

* every status is checked: 404/403/401/410 become :class:`RemoteNotFoundError` naming the
  URL, 5xx and 429 are retried with backoff (``Retry-After`` honoured), nothing else is
  written to disk as if it were content;
* a body that stops early (dropped connection, stall past the read timeout) is resumed with
  ``Range: bytes=N-`` + ``If-Range: <etag>`` when the ETag is strong; a server that answers
  such a request with ``200`` gets the file restarted from byte 0 — never appended to;
* bytes are written and hashed while they arrive (:mod:`.receive`, :mod:`.digests`);
* what the answer's headers promise -- ETag, size, checksums -- is read by :mod:`.headers`
  (ETags are opaque, taken for an MD5 only where the server documents it so);
* the limits of :mod:`bertconvert.cache.limits` (size, deadline, speed, expansion of an
  encoded body) are enforced while the body arrives;
* a stall (no byte for the read timeout, ``BERTCONVERT_HTTP_TIMEOUT``, 20 s) is retried, but
  only ``max_stalls`` of them (2) end a fetch -- :class:`DownloadTimeoutError` for a body
  (the partial is kept to resume), after HEAD the DownloadError of a server that does not
  answer -- unless 8 MiB arrived since the previous stall: a stalling server fails in
  about 40 s, not five read timeouts;
* redirects are followed to http(s):// URLs only, at most :data:`MAX_REDIRECTS` hops; any
  other target (``file://``, ``ftp://``, ``s3://``...), a loop or a longer chain is
  :class:`RedirectError` before the target is asked for anything.

Proxies come from the environment (requests' ``trust_env``) or the ``proxies`` argument.
"""
import logging
import re

from ..errors import (CertificateError, DownloadError, DownloadTimeoutError,
                      MissingDependencyError, RedirectError, RemoteChangedError,
                      RemoteNotFoundError)
from .headers import content_encoding, info_from_headers
from .receive import stream_body
from .redact import shown_url as _shown
from .redact import scrub
from .retry import Stalls, parse_retry_after, progress_bar

log = logging.getLogger(__name__)

NOT_FOUND_STATUSES = (401, 403, 404, 410)
RETRY_STATUSES = (408, 425, 429, 500, 502, 503, 504)
#: Redirect hops followed (S3 and release hosts use one or two; requests' default is 30).
MAX_REDIRECTS = 10

_CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+|\*)")


def _requests():
    try:
        import requests
    except ImportError as e:  # pragma: no cover - requests is an install requirement
        raise MissingDependencyError("downloading over HTTP needs requests: pip install requests") from e
    return requests


def make_session(proxies=None):
    """A requests Session with our User-Agent; ``proxies`` adds to the environment's."""
    requests = _requests()
    from .. import __version__

    session = requests.Session()
    session.headers["User-Agent"] = f"bertconvert/{__version__}"
    session.max_redirects = MAX_REDIRECTS
    follow = session.get_redirect_target

    def checked_redirect_target(response):
        # requests asks this before following each redirect: refuse a target we must not
        # follow while nothing has been sent to it.
        target = follow(response)
        if target is not None:
            _check_redirect(response.url, target)
        return target

    session.get_redirect_target = checked_redirect_target
    # Passed with every request: requests lets environment proxies override session.proxies,
    # but not per-request ones.
    session.bertconvert_proxies = dict(proxies) if proxies else None
    return session


def _check_redirect(source, target):
    """RedirectError unless ``target`` (a Location, maybe relative) is an http(s) URL."""
    from urllib.parse import urljoin, urlsplit

    absolute = urljoin(source, target)
    try:
        parts = urlsplit(absolute)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number
        scheme, host = parts.scheme.lower(), parts.hostname
    except ValueError:
        scheme, host = None, None
    if scheme not in ("http", "https"):
        raise RedirectError(f"{_shown(source)} redirects to {_shown(absolute)}; only http:// "
                            "and https:// redirects are followed. Nothing was fetched from it; "
                            "use that URL directly if you trust it")
    if not host:
        raise RedirectError(f"{_shown(source)} redirects to {_shown(absolute)}, which names no "
                            "valid host; nothing was fetched from it")


def _too_many_redirects(url, error):
    """RedirectError for requests' TooManyRedirects: a loop, or a chain too long."""
    chain = [r.url for r in getattr(error.response, "history", None) or []]
    if error.response is not None:
        chain.append(error.response.url)
    what = "a redirect loop" if len(set(chain)) < len(chain) else "a chain too long"
    return RedirectError(f"{_shown(url)} redirected more than {MAX_REDIRECTS} times ({what}"
                         f"{': ' + ' -> '.join(map(_shown, chain[:3])) + ' -> ...' if chain else ''}"
                         "); nothing was fetched. Use the final URL directly")


def _proxies(session):
    return getattr(session, "bertconvert_proxies", None)


def _network_errors():
    requests = _requests()
    import urllib3

    return (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError,
            urllib3.exceptions.HTTPError, ConnectionError, TimeoutError)


def _certificate_failure(error):
    """The ssl.SSLCertVerificationError somewhere under a requests/urllib3 error, or None.

    Only a failed verification is certain to fail again; other TLS errors (a handshake cut
    short) are retried like any connection error.
    """
    import ssl

    seen, todo = set(), [error]
    while todo:
        e = todo.pop()
        if e is None or id(e) in seen or not isinstance(e, BaseException):
            continue
        seen.add(id(e))
        if isinstance(e, ssl.SSLCertVerificationError):
            return e
        todo += [e.__cause__, e.__context__, getattr(e, "reason", None), *e.args]
    return None


def _raise_if_certificate_failure(url, error):
    failure = _certificate_failure(error)
    if failure is not None:
        raise CertificateError(
            f"TLS certificate verification failed for {_shown(url)}: "
            f"{getattr(failure, 'verify_message', None) or failure}. If your network or mirror "
            "uses its own certificate authority, point REQUESTS_CA_BUNDLE at its CA bundle "
            "(a PEM file)") from error


def _raise_not_found(url, response):
    raise RemoteNotFoundError(
        f"{_shown(url)} answered HTTP {response.status_code} ({response.reason}): it does not "
        "exist or access is denied. Check the URL/model name, BERTCONVERT_MIRROR and credentials; "
        "nothing was cached")


def head(url, session, policy):
    """Metadata of ``url`` via HEAD (redirects followed), retried on network errors/5xx/429.

    Raises RemoteNotFoundError (404/403/...), DownloadError after the last attempt.
    Servers that refuse HEAD (405/501), and redirects to GET-only signed URLs (403 after a
    redirect), are asked with a one-byte ranged GET instead.
    """
    errors = _network_errors()
    last = None
    stalls = Stalls(policy)
    for attempt in range(policy.attempts):
        if attempt:
            policy.sleep(attempt - 1, getattr(last, "retry_after", None))
        try:
            r = session.head(url, allow_redirects=True, timeout=policy.timeout,
                             proxies=_proxies(session),
                             headers={"Accept-Encoding": "identity",
                                      "x-amz-checksum-mode": "ENABLED"})
        except _requests().TooManyRedirects as e:
            raise _too_many_redirects(url, e) from e
        except errors as e:
            _raise_if_certificate_failure(url, e)
            stalls.seen(e, 0, lambda seconds: DownloadError(
                f"HEAD {_shown(url)} got no answer within {seconds:g} s, {stalls.count} times; "
                "the server does not answer (BERTCONVERT_HTTP_TIMEOUT sets the wait)"))
            last = e
            log.info("HEAD %s failed (%s); attempt %d/%d", _shown(url), scrub(str(e), url),
                     attempt + 1, policy.attempts)
            continue
        if r.status_code in (405, 501) or (r.status_code == 403 and r.history):
            # HEAD refused, or redirected to a URL signed for GET only (an S3 presigned URL
            # answers HEAD with 403): ask with a one-byte GET, which decides for real.
            return _probe_with_get(url, session, policy)
        if r.status_code in NOT_FOUND_STATUSES:
            _raise_not_found(url, r)
        if r.status_code in RETRY_STATUSES:
            last = DownloadError(f"HEAD {_shown(url)} answered HTTP {r.status_code}")
            last.retry_after = parse_retry_after(r.headers.get("Retry-After"))
            log.info("HEAD %s: HTTP %d; attempt %d/%d", _shown(url), r.status_code, attempt + 1,
                     policy.attempts)
            continue
        try:
            r.raise_for_status()
        except _requests().HTTPError as e:
            raise DownloadError(f"HEAD {_shown(url)} failed: {e}; expected 200") from e
        length = (r.headers.get("Content-Length") or "").strip()
        known = int(length) if length.isdigit() else None
        encoded = content_encoding(r.headers) is not None
        # An encoded body's Content-Length counts the bytes sent, not the decoded file's.
        return info_from_headers(url, r.headers, None if encoded else known,
                                  known if encoded else None)
    cause = last if isinstance(last, BaseException) else None
    raise DownloadError(f"could not reach {_shown(url)} after {policy.attempts} attempts: {last}; "
                        "check the network/proxy settings") from cause


def _probe_with_get(url, session, policy):
    try:
        r = session.get(url, stream=True, timeout=policy.timeout, proxies=_proxies(session),
                        headers={"Range": "bytes=0-0", "Accept-Encoding": "identity"})
    except _requests().TooManyRedirects as e:
        raise _too_many_redirects(url, e) from e
    with r:
        if r.status_code in NOT_FOUND_STATUSES:
            _raise_not_found(url, r)
        if r.status_code >= 400:
            raise DownloadError(f"GET {_shown(url)} answered HTTP {r.status_code}")
        size = None
        m = _CONTENT_RANGE.match(r.headers.get("Content-Range", ""))
        if r.status_code == 206 and m and m.group(3) != "*":
            size = int(m.group(3))
        elif r.status_code == 200 and (r.headers.get("Content-Length") or "").isdigit():
            size = int(r.headers["Content-Length"])
        return info_from_headers(url, r.headers, size)


def fetch(url, info, f, hasher, session, policy, *, progress=True, desc=None, wire_hasher=None):
    """Stream ``url`` into the open binary file ``f``, continuing after the bytes already in it.

    ``f`` may hold a prefix from an interrupted attempt (already fed to ``hasher``); it is
    resumed only when ``info`` has a strong ETag, else restarted. Returns the final size.
    A content-encoded body (``info.content_encoding``) is written decoded; ``wire_hasher``,
    when given, gets the encoded bytes (which the server's checksums describe). Such a body
    is never resumed: byte ranges count encoded bytes, the file holds decoded ones.
    Raises RemoteNotFoundError, RemoteChangedError, DownloadError (after retries),
    IntegrityError (an encoded body that does not decode).
    """
    hashers = (hasher, wire_hasher)
    errors = _network_errors()
    watch = policy.watch
    f.seek(0, 2)
    offset = f.tell()
    bar = progress_bar(info.size, desc or "download", progress, initial=offset)
    last = None
    stalls = Stalls(policy, offset)
    try:
        for attempt in range(policy.attempts):
            if attempt:
                policy.sleep(attempt - 1, getattr(last, "retry_after", None))
            if offset and not info.strong_etag:
                # Without a strong validator a resumed body could belong to another version.
                offset = _restart(f, hashers, url, "no strong ETag to resume against")
                bar.reset(total=info.size)
            elif offset and info.content_encoding:
                offset = _restart(f, hashers, url, f"a {info.content_encoding}-encoded body "
                                  "cannot be resumed")
                bar.reset(total=info.size)
            headers = {"Accept-Encoding": "identity"}
            if offset:
                headers["Range"] = f"bytes={offset}-"
                headers["If-Range"] = info.strong_etag
            try:
                with session.get(url, stream=True, timeout=policy.timeout, headers=headers,
                                 proxies=_proxies(session)) as r:
                    status = r.status_code
                    if status in NOT_FOUND_STATUSES:
                        _raise_not_found(url, r)
                    if status == 416 and offset:
                        # Our prefix is as long as (or longer than) the object: start over.
                        offset = _restart(f, hashers, url, "server says the range is unsatisfiable")
                        bar.reset(total=info.size)
                        last = DownloadError(f"GET {_shown(url)}: HTTP 416 for a resume")
                        continue
                    if status in RETRY_STATUSES:
                        last = DownloadError(f"GET {_shown(url)} answered HTTP {status}")
                        last.retry_after = parse_retry_after(r.headers.get("Retry-After"))
                        continue
                    if status not in (200, 206):
                        raise DownloadError(f"GET {_shown(url)} answered HTTP {status} "
                                            f"({r.reason}); "
                                            "expected 200 or 206")
                    _check_same_object(url, info, r.headers)
                    if info.size is None:  # HEAD did not say; the GET may (to catch truncation)
                        info.size = _total_from_response(r, status, offset)
                        bar.reset(total=info.size)
                        bar.update(offset)
                    if watch is not None:  # refuse an announced size before receiving it
                        watch.check_size(info.size)
                    if status == 206 and not _range_matches(r.headers, offset):
                        # A range we did not ask for: never splice it in; start over.
                        offset = _restart(f, hashers, url, "unexpected Content-Range "
                                          f"{r.headers.get('Content-Range')!r}")
                        bar.reset(total=info.size)
                        last = DownloadError(f"GET {_shown(url)}: wrong Content-Range for a resume")
                        continue
                    if status == 200 and offset:
                        # A 200 answer to a Range request is the whole body: never append it.
                        offset = _restart(f, hashers, url, "server ignored the Range request")
                        bar.reset(total=info.size)
                    if watch is not None:
                        watch.body_started(offset)
                    offset = stream_body(r, f, hasher, bar, offset, wire_hasher, watch,
                                          info.wire_size)
            except _requests().TooManyRedirects as e:
                raise _too_many_redirects(url, e) from e
            except errors as e:
                _raise_if_certificate_failure(url, e)
                last = e
                f.seek(0, 2)
                offset = f.tell()
                stalls.seen(e, offset, lambda seconds: DownloadTimeoutError(
                    f"{_shown(url)} stalled: no byte for {seconds:g} s, {stalls.count} times "
                    f"(at byte {offset}); stopped (a resumable partial download is kept for "
                    "the next try). Raise BERTCONVERT_HTTP_TIMEOUT for a server that pauses "
                    "this long"))
                log.info("download of %s interrupted at %d bytes (%s); attempt %d/%d",
                         _shown(url), offset, scrub(str(e), url), attempt + 1, policy.attempts)
                continue
            if info.size is not None and offset < info.size:
                last = DownloadError(f"GET {_shown(url)} ended at byte {offset} of {info.size}")
                log.info("%s; trying again", scrub(str(last), url))
                continue
            return offset
    finally:
        bar.close()
    raise DownloadError(f"downloading {_shown(url)} failed after {policy.attempts} attempts: "
                        f"{last}; "
                        "retry later (a resumable partial download is kept)") from (
        last if isinstance(last, BaseException) else None)


def _check_same_object(url, info, headers):
    etag = headers.get("ETag")
    if info.etag and etag and etag != info.etag:
        raise RemoteChangedError(f"{_shown(url)} changed during the download "
                                 f"(ETag {info.etag} -> {etag})")
    encoding = content_encoding(headers)
    if encoding != info.content_encoding:
        # The checks were planned for the other representation (the server's checksums
        # describe encoded bytes): comparing them now would call a good download corrupt.
        raise RemoteChangedError(
            f"{_shown(url)} is sent with Content-Encoding {encoding or 'identity'} but its HEAD "
            f"said {info.content_encoding or 'identity'}; a server answering HEAD and GET "
            "differently cannot be verified")


def _restart(f, hashers, url, why):
    log.info("restarting %s from byte 0: %s", _shown(url), why)
    f.truncate(0)
    f.seek(0)
    for hasher in hashers:
        if hasher is not None:
            hasher.reset()
    return 0


def _total_from_response(r, status, offset):
    if r.headers.get("Content-Encoding", "identity") not in ("identity", ""):
        return None
    if status == 206:
        m = _CONTENT_RANGE.match(r.headers.get("Content-Range", ""))
        return int(m.group(3)) if m and m.group(3) != "*" else None
    length = r.headers.get("Content-Length", "")
    return int(length) if length.isdigit() else None


def _range_matches(headers, offset):
    m = _CONTENT_RANGE.match(headers.get("Content-Range", ""))
    return bool(m) and int(m.group(1)) == offset
