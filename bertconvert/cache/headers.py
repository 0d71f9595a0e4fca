"""What an HTTP server's response headers say about the object it serves.

ETags are opaque (RFC 9110): cache keys and ``If-Range`` validators. One is taken for the
content's MD5 only where the server documents it so -- S3 and S3-compatible stores, known by
their ``x-amz-*`` response headers (``x-amz-request-id``, ``x-amz-id-2``...) or
``Server: AmazonS3`` -- and never when it is weak, multipart (``-N``) or SSE-KMS/SSE-C.
Google Cloud Storage (``x-goog-*`` headers) is checked with its ``x-goog-hash`` (md5,
crc32c) instead. ``BERTCONVERT_ETAG_MD5=0``/``1`` says never/always. S3's
``x-amz-checksum-*`` headers and ``x-amz-meta-sha256`` add checksums of their own.
:func:`info_from_headers` gathers it all into a :class:`~bertconvert.cache.checks.RemoteInfo`.
"""
import logging
import re

from .checks import (Expected, RemoteInfo, b64_to_hex, etag_md5_mode, is_multipart_etag,
                     md5_from_etag)
from .redact import shown_url

log = logging.getLogger(__name__)

# Checksums S3-compatible servers put in headers (asked for with x-amz-checksum-mode).
_AMZ_CHECKSUM_HEADERS = {
    "x-amz-checksum-sha256": "sha256",
    "x-amz-checksum-sha1": "sha1",
    "x-amz-checksum-crc32": "crc32",
    "x-amz-checksum-crc32c": "crc32c",
    "x-amz-checksum-crc64nvme": "crc64nvme",
}


def content_encoding(headers):
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


def info_from_headers(url, headers, size=None, wire_size=None):
    etag = headers.get("ETag")
    encrypted = headers.get("x-amz-server-side-encryption", "").lower() == "aws:kms" or \
        "x-amz-server-side-encryption-customer-algorithm" in headers
    info = RemoteInfo(url=url, etag=etag, size=size, last_modified=headers.get("Last-Modified"),
                      accept_ranges=headers.get("Accept-Ranges", "").lower() == "bytes",
                      content_encoding=content_encoding(headers), encrypted=encrypted,
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
        log.debug("%s is transcoded by GCS; its x-goog-hash is not checked", shown_url(info.url))
        return
    info.expected.extend(_goog_hashes(headers))
    length = headers.get("x-goog-stored-content-length", "").strip()
    if length.isdigit():
        if info.content_encoding is None and info.size is None:
            info.size = int(length)
        elif info.content_encoding is not None and info.wire_size is None:
            info.wire_size = int(length)

