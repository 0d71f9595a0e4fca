"""HTTP(S) transport of the weight cache: HEAD for metadata, resumable streaming GET.

Rules this module keeps (each one a failure seen in the wild with 0.6.2's cache):

* every status is checked: 404/403/401/410 become :class:`RemoteNotFoundError` naming the
  URL, 5xx and 429 are retried with backoff (``Retry-After`` honoured), nothing else is
  written to disk as if it were content;
* a body that stops early (dropped connection, stall past the read timeout) is resumed with
  ``Range: bytes=N-`` + ``If-Range: <etag>`` when the ETag is strong; a server that answers
  such a request with ``200`` gets the file restarted from byte 0 — never appended to;
* bytes are hashed while they arrive (see :class:`~bertconvert.cache.checks.StreamHasher`).

Proxies come from the environment (requests' ``trust_env``) or the ``proxies`` argument.
"""
import logging
import re
import zlib

from ..errors import (CertificateError, DownloadError, IntegrityError, MissingDependencyError,
                     RemoteChangedError, RemoteNotFoundError)
from .checks import (CHUNK_SIZE, WIRE_DECODERS, BufferPool, Expected, RemoteInfo,
                       b64_to_hex, is_multipart_etag, md5_from_etag, parse_retry_after,
                       progress_bar)

log = logging.getLogger(__name__)

NOT_FOUND_STATUSES = (401, 403, 404, 410)
RETRY_STATUSES = (408, 425, 429, 500, 502, 503, 504)

# Checksums S3-compatible servers put in headers (asked for with x-amz-checksum-mode).
_AMZ_CHECKSUM_HEADERS = {
    "x-amz-checksum-sha256": "sha256",
    "x-amz-checksum-sha1": "sha1",
    "x-amz-checksum-crc32": "crc32",
    "x-amz-checksum-crc32c": "crc32c",
    "x-amz-checksum-crc64nvme": "crc64nvme",
}
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
    # Passed with every request: requests lets environment proxies override session.proxies,
    # but not per-request ones.
    session.bertconvert_proxies = dict(proxies) if proxies else None
    return session


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
            f"TLS certificate verification failed for {url}: "
            f"{getattr(failure, 'verify_message', None) or failure}. If your network or mirror "
            "uses its own certificate authority, point REQUESTS_CA_BUNDLE at its CA bundle "
            "(a PEM file)") from error


def _raise_not_found(url, response):
    raise RemoteNotFoundError(
        f"{url} answered HTTP {response.status_code} ({response.reason}): it does not exist or "
        "access is denied. Check the URL/model name, BERTCONVERT_MIRROR and credentials; "
        "nothing was cached")


def _content_encoding(headers):
    """The body's Content-Encoding, lower-case, or None for identity."""
    value = headers.get("Content-Encoding", "").strip().lower()
    return None if value in ("", "identity") else value


def _info_from_headers(url, headers, size=None):
    etag = headers.get("ETag")
    encrypted = headers.get("x-amz-server-side-encryption", "").lower() == "aws:kms" or \
        "x-amz-server-side-encryption-customer-algorithm" in headers
    info = RemoteInfo(url=url, etag=etag, size=size, last_modified=headers.get("Last-Modified"),
                      accept_ranges=headers.get("Accept-Ranges", "").lower() == "bytes",
                      content_encoding=_content_encoding(headers))
    md5 = md5_from_etag(etag, encrypted=encrypted)
    if md5:
        info.expected.append(Expected("md5", md5, "the server's ETag (a plain MD5)"))
    # Multipart objects carry checksums of part checksums unless marked FULL_OBJECT.
    composite = (is_multipart_etag(etag) and
                 headers.get("x-amz-checksum-type", "").upper() != "FULL_OBJECT") or \
        headers.get("x-amz-checksum-type", "").upper() == "COMPOSITE"
    for header, algo in _AMZ_CHECKSUM_HEADERS.items():
        value = headers.get(header)
        # CRC64NVME exists only as a full-object checksum, multipart or not.
        whole = not composite or (algo == "crc64nvme" and
                                  headers.get("x-amz-checksum-type", "").upper() != "COMPOSITE")
        if value and whole and "-" not in value:  # "-N": composite multipart checksum
            hexed = b64_to_hex(value)
            if hexed:
                info.expected.append(Expected(algo, hexed, f"the {header} header"))
    meta_sha = headers.get("x-amz-meta-sha256")
    if meta_sha and re.fullmatch(r"[0-9a-fA-F]{64}", meta_sha.strip()):
        info.expected.append(Expected("sha256", meta_sha.strip().lower(),
                                      "the object's sha256 metadata (x-amz-meta-sha256)"))
    return info


def head(url, session, policy):
    """Metadata of ``url`` via HEAD (redirects followed), retried on network errors/5xx/429.

    Raises RemoteNotFoundError (404/403/...), DownloadError after the last attempt.
    Servers that refuse HEAD (405/501), and redirects to GET-only signed URLs (403 after a
    redirect), are asked with a one-byte ranged GET instead.
    """
    errors = _network_errors()
    last = None
    for attempt in range(policy.attempts):
        if attempt:
            policy.sleep(attempt - 1, getattr(last, "retry_after", None))
        try:
            r = session.head(url, allow_redirects=True, timeout=policy.timeout,
                             proxies=_proxies(session),
                             headers={"Accept-Encoding": "identity",
                                      "x-amz-checksum-mode": "ENABLED"})
        except errors as e:
            _raise_if_certificate_failure(url, e)
            last = e
            log.info("HEAD %s failed (%s); attempt %d/%d", url, e, attempt + 1, policy.attempts)
            continue
        if r.status_code in (405, 501) or (r.status_code == 403 and r.history):
            # HEAD refused, or redirected to a URL signed for GET only (an S3 presigned URL
            # answers HEAD with 403): ask with a one-byte GET, which decides for real.
            return _probe_with_get(url, session, policy)
        if r.status_code in NOT_FOUND_STATUSES:
            _raise_not_found(url, r)
        if r.status_code in RETRY_STATUSES:
            last = DownloadError(f"HEAD {url} answered HTTP {r.status_code}")
            last.retry_after = parse_retry_after(r.headers.get("Retry-After"))
            log.info("HEAD %s: HTTP %d; attempt %d/%d", url, r.status_code, attempt + 1,
                     policy.attempts)
            continue
        try:
            r.raise_for_status()
        except _requests().HTTPError as e:
            raise DownloadError(f"HEAD {url} failed: {e}; expected 200") from e
        length = r.headers.get("Content-Length")
        size = int(length) if length and length.isdigit() and \
            r.headers.get("Content-Encoding", "identity") == "identity" else None
        return _info_from_headers(url, r.headers, size)
    cause = last if isinstance(last, BaseException) else None
    raise DownloadError(f"could not reach {url} after {policy.attempts} attempts: {last}; "
                        "check the network/proxy settings") from cause


def _probe_with_get(url, session, policy):
    with session.get(url, stream=True, timeout=policy.timeout, proxies=_proxies(session),
                     headers={"Range": "bytes=0-0", "Accept-Encoding": "identity"}) as r:
        if r.status_code in NOT_FOUND_STATUSES:
            _raise_not_found(url, r)
        if r.status_code >= 400:
            raise DownloadError(f"GET {url} answered HTTP {r.status_code}")
        size = None
        m = _CONTENT_RANGE.match(r.headers.get("Content-Range", ""))
        if r.status_code == 206 and m and m.group(3) != "*":
            size = int(m.group(3))
        elif r.status_code == 200 and (r.headers.get("Content-Length") or "").isdigit():
            size = int(r.headers["Content-Length"])
        return _info_from_headers(url, r.headers, size)


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
    f.seek(0, 2)
    offset = f.tell()
    bar = progress_bar(info.size, desc or "download", progress, initial=offset)
    last = None
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
                        last = DownloadError(f"GET {url}: HTTP 416 for a resume")
                        continue
                    if status in RETRY_STATUSES:
                        last = DownloadError(f"GET {url} answered HTTP {status}")
                        last.retry_after = parse_retry_after(r.headers.get("Retry-After"))
                        continue
                    if status not in (200, 206):
                        raise DownloadError(f"GET {url} answered HTTP {status} ({r.reason}); "
                                            "expected 200 or 206")
                    _check_same_object(url, info, r.headers)
                    if info.size is None:  # HEAD did not say; the GET may (to catch truncation)
                        info.size = _total_from_response(r, status, offset)
                        bar.reset(total=info.size)
                        bar.update(offset)
                    if status == 206 and not _range_matches(r.headers, offset):
                        # A range we did not ask for: never splice it in; start over.
                        offset = _restart(f, hashers, url, "unexpected Content-Range "
                                          f"{r.headers.get('Content-Range')!r}")
                        bar.reset(total=info.size)
                        last = DownloadError(f"GET {url}: wrong Content-Range for a resume")
                        continue
                    if status == 200 and offset:
                        # A 200 answer to a Range request is the whole body: never append it.
                        offset = _restart(f, hashers, url, "server ignored the Range request")
                        bar.reset(total=info.size)
                    offset = _stream_body(r, f, hasher, bar, offset, wire_hasher)
            except errors as e:
                _raise_if_certificate_failure(url, e)
                last = e
                f.seek(0, 2)
                offset = f.tell()
                log.info("download of %s interrupted at %d bytes (%s); attempt %d/%d",
                         url, offset, e, attempt + 1, policy.attempts)
                continue
            if info.size is not None and offset < info.size:
                last = DownloadError(f"GET {url} ended at byte {offset} of {info.size}")
                log.info("%s; trying again", last)
                continue
            return offset
    finally:
        bar.close()
    raise DownloadError(f"downloading {url} failed after {policy.attempts} attempts: {last}; "
                        "retry later (a resumable partial download is kept)") from (
        last if isinstance(last, BaseException) else None)


def _check_same_object(url, info, headers):
    etag = headers.get("ETag")
    if info.etag and etag and etag != info.etag:
        raise RemoteChangedError(f"{url} changed during the download (ETag {info.etag} -> {etag})")
    encoding = _content_encoding(headers)
    if encoding != info.content_encoding:
        # The checks were planned for the other representation (the server's checksums
        # describe encoded bytes): comparing them now would call a good download corrupt.
        raise RemoteChangedError(
            f"{url} is sent with Content-Encoding {encoding or 'identity'} but its HEAD said "
            f"{info.content_encoding or 'identity'}; a server answering HEAD and GET "
            "differently cannot be verified")


def _restart(f, hashers, url, why):
    log.info("restarting %s from byte 0: %s", url, why)
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


#: Block size of the zero-allocation receive path, and how many blocks may be in flight
#: (the hashing workers' queues hold 4 each; one more is hashed, one received).
RECEIVE_BLOCK = 1 << 20
RECEIVE_BUFFERS = 16


def _socket_reader(r):
    """``(http.client response, its buffered socket reader)`` when the body can be read
    straight from the socket, else None.

    That needs a plain length-delimited body (no chunking, no content coding) and the usual
    stack: urllib3 (1.26 and 2.x alike) keeps the http.client response in ``_fp``, which
    reads from a BufferedReader ``fp``. Anything else is read through urllib3.
    """
    import http.client

    response = getattr(r.raw, "_fp", None)
    if not isinstance(response, http.client.HTTPResponse) or response.isclosed():
        return None
    reader = getattr(response, "fp", None)
    if response.chunked or not isinstance(response.length, int) or \
            not hasattr(reader, "readinto1"):
        return None
    return response, reader


def _stream_body(r, f, hasher, bar, offset, wire_hasher=None):
    """Append the body to ``f`` (a :class:`~bertconvert.directio.DirectFile`, which gets bytes
    on disk within a fraction of a second when the body stalls, so a killed process leaves
    them for the next attempt) and to the hasher."""
    encoding = _content_encoding(r.headers)
    encoded = encoding is not None
    if encoded and wire_hasher is not None and encoding in WIRE_DECODERS:
        return _stream_decoding(r, WIRE_DECODERS[encoding](), f, hasher, wire_hasher, bar,
                                offset)
    direct = None if encoded else _socket_reader(r)
    if direct is not None:
        return _stream_into_buffers(*direct, f, hasher, bar, offset)
    raw = r.raw
    # read1 returns what one socket read gave (up to CHUNK_SIZE): big blocks, few Python
    # iterations, and a stall loses nothing already received (read(n) would discard it).
    read = getattr(raw, "read1", None) or raw.read
    while True:
        block = read(CHUNK_SIZE, decode_content=encoded)
        if not block:
            break
        f.write(block)
        hasher.update(block)
        offset += len(block)
        bar.update(len(block))
    return offset


def _stream_into_buffers(response, reader, f, hasher, bar, offset):
    """The body from the socket into reused buffers, with no allocation per block (so no
    page faults): 0.1-0.2 s less per 440 MB here than receiving into fresh ``bytes``.

    ``readinto1`` returns what one socket read gave, written to ``f`` at once, so a stall
    loses nothing already received. Each block goes to the hasher once full (or when the
    body ends or fails: the hasher must have seen exactly what ``f`` holds); the hashing
    workers hand the buffer back.
    """
    pool = BufferPool(RECEIVE_BUFFERS, RECEIVE_BLOCK)
    left = response.length
    while left:
        buf = pool.get()
        view, filled = memoryview(buf), 0
        try:
            while filled < len(buf) and left:
                n = reader.readinto1(view[filled:filled + min(len(buf) - filled, left)])
                if not n:  # the body ended early: the caller sees the short size and resumes
                    left = 0
                    break
                f.write(view[filled:filled + n])
                filled += n
                left -= n
                bar.update(n)
        finally:
            response.length = left  # http.client's own count, for whoever reads on
            if filled:
                # Read-only: some CRC libraries refuse writable buffers.
                hasher.update(view[:filled].toreadonly(), release=lambda buf=buf: pool.put(buf))
            else:
                pool.put(buf)
            offset += filled
    return offset


def _stream_decoding(r, decoder, f, hasher, wire_hasher, bar, offset):
    """A content-encoded body: the bytes as sent go to ``wire_hasher``, the decoded ones to
    ``f`` and ``hasher``."""
    try:
        for piece in _decoded_pieces(r, decoder, wire_hasher):
            f.write(piece)
            hasher.update(piece)
            offset += len(piece)
            bar.update(len(piece))
    except zlib.error as e:
        raise IntegrityError(f"the {_content_encoding(r.headers)}-encoded body of {r.url} does "
                             f"not decode ({e}); nothing was kept. The server's copy is "
                             "damaged, or its Content-Encoding header is wrong") from e
    return offset


def _decoded_pieces(r, decoder, wire_hasher):
    """Decoded blocks of the body, its last bytes included; each block as sent is hashed."""
    read = getattr(r.raw, "read1", None) or r.raw.read
    while True:
        block = read(CHUNK_SIZE, decode_content=False)
        if not block:
            break
        wire_hasher.update(block)
        decoded = decoder.decode(block)
        if decoded:
            yield decoded
    tail = decoder.finish()
    if tail:
        yield tail
