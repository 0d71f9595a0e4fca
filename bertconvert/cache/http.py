"""HTTP(S) transport of the weight cache: HEAD for metadata, resumable streaming GET.

Rules this module keeps (each one a failure seen in the wild with 0.6.2's cache):

* every status is checked: 404/403/401/410 become :class:`RemoteNotFoundError` naming the
  URL, 5xx and 429 are retried with backoff (``Retry-After`` honoured), nothing else is
  written to disk as if it were content;
* a body that stops early (dropped connection, stall past the read timeout) is resumed with
  ``Range: bytes=N-`` + ``If-Range: <etag>`` when the ETag is strong; a server that answers
  such a request with ``200`` gets the file restarted from byte 0 — never appended to;
* bytes are hashed while they arrive (see :class:`~bertconvert.transfer.StreamHasher`);
* ETags are opaque (RFC 9110): cache keys and ``If-Range`` validators. One is taken for the
  content's MD5 only where the server documents it so — S3 and S3-compatible stores, known
  by their ``x-amz-*`` response headers (``x-amz-request-id``, ``x-amz-id-2``...) or
  ``Server: AmazonS3`` — and never when it is weak, multipart (``-N``) or SSE-KMS/SSE-C.
  Google Cloud Storage (``x-goog-*`` headers) is checked with its ``x-goog-hash`` (md5,
  crc32c) instead. ``BERTCONVERT_ETAG_MD5=0``/``1`` says never/always;
* the limits of :mod:`bertconvert.cache_limits` (size, deadline, speed, expansion of an
  encoded body) are enforced while the body arrives.

Proxies come from the environment (requests' ``trust_env``) or the ``proxies`` argument.
"""
import logging
import re
import zlib

from ..errors import (CertificateError, DownloadError, IntegrityError, MissingDependencyError,
                     RemoteChangedError, RemoteNotFoundError)
from .redact import redact_url as _shown
from .redact import scrub
from .checks import (CHUNK_SIZE, WIRE_DECODERS, BufferPool, Expected, RemoteInfo,
                       b64_to_hex, etag_md5_mode, is_multipart_etag, md5_from_etag,
                       parse_retry_after, progress_bar)

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
            f"TLS certificate verification failed for {_shown(url)}: "
            f"{getattr(failure, 'verify_message', None) or failure}. If your network or mirror "
            "uses its own certificate authority, point REQUESTS_CA_BUNDLE at its CA bundle "
            "(a PEM file)") from error


def _raise_not_found(url, response):
    raise RemoteNotFoundError(
        f"{_shown(url)} answered HTTP {response.status_code} ({response.reason}): it does not "
        "exist or access is denied. Check the URL/model name, BERTCONVERT_MIRROR and credentials; "
        "nothing was cached")


def _content_encoding(headers):
    """The body's Content-Encoding, lower-case, or None for identity."""
    value = headers.get("Content-Encoding", "").strip().lower()
    return None if value in ("", "identity") else value


def _is_gcs(headers):
    """Google Cloud Storage (its XML API, which serves storage.googleapis.com URLs)."""
    return any(name.lower().startswith("x-goog-") for name in headers)


def _is_s3(headers):
    """An S3 or S3-compatible store (AWS, MinIO, Ceph RGW, Wasabi, B2, Spaces...).

    They send ``x-amz-request-id``/``x-amz-id-2`` (and ``x-amz-*`` metadata, checksums,
    encryption, version headers) with every answer; AWS also ``Server: AmazonS3``. A CDN in
    front of S3 passes them on along with S3's own ETag. Servers that send none of them
    (nginx, Apache, Artifactory, GCS...) get their ETags treated as opaque.
    """
    if any(name.lower().startswith("x-amz-") for name in headers):
        return True
    return headers.get("Server", "").strip().lower().startswith("amazons3")


def etag_is_md5(headers):
    """True when the server that sent ``headers`` documents its (plain, strong) ETags as
    the content's MD5: S3 and S3-compatible stores, not GCS (whose composite objects have
    other ETags; it sends ``x-goog-hash`` instead). ``BERTCONVERT_ETAG_MD5`` overrides."""
    mode = etag_md5_mode()
    if mode != "auto":
        return mode == "always"
    return _is_s3(headers) and not _is_gcs(headers)


def _goog_hashes(headers):
    """``[Expected]`` from GCS's ``x-goog-hash: crc32c=<b64>, md5=<b64>`` (one header or
    several, which requests joins with commas)."""
    out = []
    for item in headers.get("x-goog-hash", "").split(","):
        name, eq, value = item.strip().partition("=")
        algo = name.strip().lower()
        if not eq or algo not in ("md5", "crc32c"):
            continue
        hexed = b64_to_hex(value.strip())
        if hexed and len(hexed) == (32 if algo == "md5" else 8):
            out.append(Expected(algo, hexed, f"the x-goog-hash header ({algo})"))
    return out


def _info_from_headers(url, headers, size=None, wire_size=None):
    etag = headers.get("ETag")
    encrypted = headers.get("x-amz-server-side-encryption", "").lower() == "aws:kms" or \
        "x-amz-server-side-encryption-customer-algorithm" in headers
    info = RemoteInfo(url=url, etag=etag, size=size, last_modified=headers.get("Last-Modified"),
                      accept_ranges=headers.get("Accept-Ranges", "").lower() == "bytes",
                      content_encoding=_content_encoding(headers), encrypted=encrypted,
                      wire_size=wire_size)
    md5 = md5_from_etag(etag, encrypted=encrypted) if etag_is_md5(headers) else None
    if md5:
        info.expected.append(Expected("md5", md5, "the server's ETag (S3: a plain MD5)"))
    if _is_gcs(headers):
        _add_gcs_facts(info, headers)
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


def _add_gcs_facts(info, headers):
    """GCS's hashes and stored length describe the object as stored. When GCS transcodes a
    gzip-stored object (decompresses it because the request did not accept gzip), they do
    not describe the body sent, and are left out."""
    stored = headers.get("x-goog-stored-content-encoding", "identity").strip().lower()
    if stored not in ("", "identity") and info.content_encoding is None:
        log.debug("%s is transcoded by GCS; its x-goog-hash is not checked", _shown(info.url))
        return
    info.expected.extend(_goog_hashes(headers))
    length = headers.get("x-goog-stored-content-length", "").strip()
    if length.isdigit():
        if info.content_encoding is None and info.size is None:
            info.size = int(length)
        elif info.content_encoding is not None and info.wire_size is None:
            info.wire_size = int(length)


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
        encoded = _content_encoding(r.headers) is not None
        # An encoded body's Content-Length counts the bytes sent, not the decoded file's.
        return _info_from_headers(url, r.headers, None if encoded else known,
                                  known if encoded else None)
    cause = last if isinstance(last, BaseException) else None
    raise DownloadError(f"could not reach {_shown(url)} after {policy.attempts} attempts: {last}; "
                        "check the network/proxy settings") from cause


def _probe_with_get(url, session, policy):
    with session.get(url, stream=True, timeout=policy.timeout, proxies=_proxies(session),
                     headers={"Range": "bytes=0-0", "Accept-Encoding": "identity"}) as r:
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
    watch = policy.watch
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
                    offset = _stream_body(r, f, hasher, bar, offset, wire_hasher, watch,
                                          info.wire_size)
            except errors as e:
                _raise_if_certificate_failure(url, e)
                last = e
                f.seek(0, 2)
                offset = f.tell()
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
    encoding = _content_encoding(headers)
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


def _stream_body(r, f, hasher, bar, offset, wire_hasher=None, watch=None, wire_size=None):
    """Append the body to ``f`` (a :class:`~bertconvert.directio.DirectFile`, which gets bytes
    on disk within a fraction of a second when the body stalls, so a killed process leaves
    them for the next attempt) and to the hasher. ``watch`` (a
    :class:`~bertconvert.cache_limits.TransferWatch`) sees every block."""
    encoding = _content_encoding(r.headers)
    encoded = encoding is not None
    if encoded and encoding in WIRE_DECODERS:
        # Decoded here, not by urllib3, so that the expansion is bounded and checked.
        return _stream_decoding(r, WIRE_DECODERS[encoding](), f, hasher, wire_hasher, bar,
                                offset, watch, wire_size)
    direct = None if encoded else _socket_reader(r)
    if direct is not None:
        return _stream_into_buffers(*direct, f, hasher, bar, offset, watch)
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
        if watch is not None:
            watch.received(offset)
    return offset


def _stream_into_buffers(response, reader, f, hasher, bar, offset, watch=None):
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
                if watch is not None:
                    watch.received(offset + filled)
        finally:
            response.length = left  # http.client's own count, for whoever reads on
            if filled:
                # Read-only: some CRC libraries refuse writable buffers.
                hasher.update(view[:filled].toreadonly(), release=lambda buf=buf: pool.put(buf))
            else:
                pool.put(buf)
            offset += filled
    return offset


def _stream_decoding(r, decoder, f, hasher, wire_hasher, bar, offset, watch=None,
                     wire_size=None):
    """A content-encoded body: the bytes as sent go to ``wire_hasher`` (when given), the
    decoded ones to ``f`` and ``hasher``. Always from byte 0 (never resumed)."""
    sent = [0]  # bytes as sent, counted by _decoded_pieces
    try:
        for piece in _decoded_pieces(r, decoder, wire_hasher, sent):
            f.write(piece)
            hasher.update(piece)
            offset += len(piece)
            bar.update(len(piece))
            if watch is not None:
                watch.received(offset)
                watch.check_expansion(sent[0], offset)
    except zlib.error as e:
        raise IntegrityError(f"the {_content_encoding(r.headers)}-encoded body of {_shown(r.url)} "
                             f"does not decode ({e}); nothing was kept. The server's copy is "
                             "damaged, or its Content-Encoding header is wrong") from e
    if wire_size is not None and sent[0] < wire_size:
        # Every gzip member so far decoded cleanly, but the body stopped short of the length
        # the server announced: a truncation at a member boundary. Retried as a broken
        # connection is.
        raise ConnectionError(f"the encoded body ended after {sent[0]} of {wire_size} bytes")
    return offset


def _decoded_pieces(r, decoder, wire_hasher, sent):
    """Decoded blocks of the body, its last bytes included; each block as sent is hashed
    (and counted in ``sent[0]``)."""
    read = getattr(r.raw, "read1", None) or r.raw.read
    while True:
        block = read(CHUNK_SIZE, decode_content=False)
        if not block:
            break
        if wire_hasher is not None:
            wire_hasher.update(block)
        sent[0] += len(block)
        yield from decoder.decode(block)
    tail = decoder.finish()
    if tail:
        yield tail
