"""S3 transport of the weight cache (and ``bertconvert cache push``), via boto3.

boto3 is configured only through its standard chain — credentials, region, and
``AWS_ENDPOINT_URL_S3`` for MinIO/Ceph/moto and other S3-compatible stores — so the same
code talks to AWS and to an organisation's store. Integrity comes from what S3 can prove:
``HeadObject(ChecksumMode="ENABLED")`` full-object checksums (CRC64NVME, S3's default for
new objects, multipart ones included; CRC32/CRC32C/SHA-1/SHA-256), a ``sha256`` user-metadata
entry (written by :func:`push_directory`), or the ETag when it is a plain single-part,
non-KMS MD5.
"""
import logging
import os
from urllib.parse import urlparse

from ..errors import (CacheError, DownloadError, MissingDependencyError, RemoteChangedError,
                     RemoteNotFoundError, UnsupportedURLError)
from .checks import (Expected, RemoteInfo, b64_to_hex, is_multipart_etag, md5_from_etag,
                     multipart_md5_expectation)
from .digests import CHUNK_SIZE, hash_file
from .retry import progress_bar
from .redact import shown_url

log = logging.getLogger(__name__)

_NOT_FOUND_CODES = {"404", "403", "NoSuchKey", "NoSuchBucket", "AccessDenied", "NotFound",
                    "Forbidden", "AllAccessDisabled"}
_CHECKSUM_FIELDS = {"ChecksumSHA256": "sha256", "ChecksumSHA1": "sha1",
                    "ChecksumCRC32": "crc32", "ChecksumCRC32C": "crc32c",
                    "ChecksumCRC64NVME": "crc64nvme"}

#: Multipart sizes for uploads and parallel ranged downloads (S3's minimum part is 5 MiB).
DEFAULT_MULTIPART_THRESHOLD = 64 << 20
DEFAULT_MULTIPART_CHUNKSIZE = 16 << 20


def split_s3_url(url):
    """``s3://bucket/some/key`` -> ``("bucket", "some/key")``.

    >>> split_s3_url("s3://models/bert/vocab.txt")
    ('models', 'bert/vocab.txt')
    """
    parsed = urlparse(url)
    key = parsed.path.lstrip("/")
    if parsed.scheme != "s3" or not parsed.netloc:
        raise UnsupportedURLError(f"'{shown_url(url)}' is not an s3://bucket/key URL")
    return parsed.netloc, key


def make_client(proxies=None, policy=None):
    """A boto3 S3 client from the standard configuration chain (env, ~/.aws, instance role)."""
    try:
        import boto3
        from botocore.config import Config
    except ImportError as e:
        raise MissingDependencyError("s3:// URLs need boto3: pip install boto3") from e
    kwargs = {"retries": {"max_attempts": policy.attempts if policy else 5, "mode": "standard"}}
    if policy is not None:
        kwargs.update(connect_timeout=policy.connect_timeout, read_timeout=policy.read_timeout)
    if proxies:
        kwargs["proxies"] = dict(proxies)
    return boto3.client("s3", config=Config(**kwargs))


def _transfer_config(threshold=None, chunksize=None):
    from boto3.s3.transfer import TransferConfig

    threshold = threshold or DEFAULT_MULTIPART_THRESHOLD
    chunksize = chunksize or DEFAULT_MULTIPART_CHUNKSIZE
    config = TransferConfig(multipart_threshold=threshold, multipart_chunksize=chunksize,
                            max_concurrency=8, io_chunksize=1 << 20)
    # In-order writes hold parts that arrive early in memory: at most 64 chunks of 1 MiB
    # (s3transfer's setting; boto3's constructor does not take it).
    config.max_in_memory_download_chunks = 64
    # The in-order writes above are s3transfer's; with awscrt installed, boto3 may pick its
    # CRT transfer client on some EC2 instance types, which does not promise them.
    config.preferred_transfer_client = "classic"
    return config


def _translate(url, e, action):
    """Map botocore exceptions to our family: missing/denied, network, configuration."""
    import botocore.exceptions as bx

    shown = shown_url(url)

    if isinstance(e, bx.ClientError):
        code = str(e.response.get("Error", {}).get("Code", ""))
        status = str(e.response.get("ResponseMetadata", {}).get("HTTPStatusCode", ""))
        if code in _NOT_FOUND_CODES or status in ("403", "404"):
            return RemoteNotFoundError(
                f"{shown}: {code or status} on {action} — the object does not exist or access is "
                "denied. Check the bucket/key, BERTCONVERT_MIRROR and your AWS credentials; "
                "nothing was cached")
        if code in ("PreconditionFailed", "412"):
            return RemoteChangedError(f"{shown} changed during the download ({code})")
        return DownloadError(f"{action} {shown} failed: {e}")
    if isinstance(e, (bx.NoCredentialsError, bx.PartialCredentialsError)):
        return CacheError(f"{action} {shown}: no AWS credentials found ({e}); set AWS_ACCESS_KEY_ID/"
                          "AWS_SECRET_ACCESS_KEY, AWS_PROFILE or an instance role")
    if isinstance(e, bx.ParamValidationError):
        return UnsupportedURLError(f"{shown}: {e}")
    return DownloadError(f"{action} {shown} failed: {e}; check the network and AWS_ENDPOINT_URL_S3")


def _errors():
    import botocore.exceptions as bx

    return (bx.BotoCoreError, bx.ClientError)


def head(url, client):
    """RemoteInfo from HeadObject with checksum mode on."""
    bucket, key = split_s3_url(url)
    if not key:
        raise UnsupportedURLError(f"'{shown_url(url)}' names a bucket, not an object")
    try:
        meta = client.head_object(Bucket=bucket, Key=key, ChecksumMode="ENABLED")
    except _errors() as e:
        raise _translate(url, e, "HeadObject") from e
    etag = meta.get("ETag")
    info = RemoteInfo(url=url, etag=etag, size=meta.get("ContentLength"),
                      last_modified=str(meta.get("LastModified")) if meta.get("LastModified") else None,
                      version_id=meta.get("VersionId"), accept_ranges=True)
    # A multipart object's checksum is a checksum of part checksums unless S3 says it covers
    # the full object; stores differ in how they mark that, so only FULL_OBJECT is trusted.
    multipart = is_multipart_etag(etag)
    composite = meta.get("ChecksumType") == "COMPOSITE" or \
        (multipart and meta.get("ChecksumType") != "FULL_OBJECT")
    for field_name, algo in _CHECKSUM_FIELDS.items():
        value = meta.get(field_name)
        # CRC64NVME exists only as a full-object checksum (S3's default since 2025), so it
        # verifies multipart objects too, even from stores that do not send ChecksumType.
        whole = not composite or (algo == "crc64nvme" and meta.get("ChecksumType") != "COMPOSITE")
        if value and whole and "-" not in value:
            hexed = b64_to_hex(value)
            if hexed:
                info.expected.append(Expected(algo, hexed, f"S3's {field_name}"))
    sha = (meta.get("Metadata") or {}).get("sha256")
    if sha:
        info.expected.append(Expected("sha256", sha.strip().lower(),
                                      "the object's sha256 metadata"))
    encrypted = meta.get("ServerSideEncryption") == "aws:kms" or bool(meta.get("SSECustomerAlgorithm"))
    info.encrypted = encrypted
    md5 = md5_from_etag(etag, encrypted=encrypted)
    if md5:
        info.expected.append(Expected("md5", md5, "the S3 ETag (single-part MD5)"))
    return info


def multipart_check(info, client):
    """``[Expected]`` for a multipart ETag, when the object offers nothing better.

    The ETag is the MD5 of the parts' MD5s, so it can be recomputed once the part size is
    known: HeadObject with PartNumber=1 gives it, PartNumber=<last> confirms that the parts
    are equal (what every SDK uploads); otherwise, or for SSE-KMS/SSE-C objects (whose
    ETags are no MD5s), or when the store cannot answer, nothing is added. Two HEADs, made
    only before a download, never on a cache hit.
    """
    etag = info.etag or ""
    if not is_multipart_etag(etag) or info.encrypted or info.size is None:
        return []
    parts = int(etag.strip().strip('"').rsplit("-", 1)[1])
    bucket, key = split_s3_url(info.url)
    extra = {"VersionId": info.version_id} if info.version_id else {}
    try:
        first = client.head_object(Bucket=bucket, Key=key, PartNumber=1, **extra)["ContentLength"]
        last = first if parts == 1 else \
            client.head_object(Bucket=bucket, Key=key, PartNumber=parts, **extra)["ContentLength"]
    except _errors() as e:
        log.debug("%s: part sizes unavailable (%s); its multipart ETag is not checked", info.url, e)
        return []
    if not (0 < last <= first and (parts - 1) * first + last == info.size):
        log.info("%s: parts of unequal size; its multipart ETag cannot be checked", info.url)
        return []
    return [multipart_md5_expectation(
        etag, first, f"the S3 multipart ETag ({parts} parts of {first} bytes)")]


class _InOrderSink:
    """What s3transfer writes a download to. It is not seekable, so s3transfer hands over the
    parallel parts in order (holding early arrivals in memory): the cache file is always a
    prefix of the object, resumable, and the bytes are hashed as they arrive."""

    def __init__(self, f, hasher, bar, watch=None):
        self.f, self.hasher, self.bar, self.watch = f, hasher, bar, watch

    def write(self, data):
        data = bytes(data)  # the hasher threads keep it: it must not change under them
        self.f.write(data)
        self.hasher.update(data)
        self.bar.update(len(data))
        if self.watch is not None:  # size, deadline and speed limits (bertconvert.cache.limits)
            self.watch.received(self.f.tell())
        return len(data)

    def seekable(self):
        return False


def fetch(url, info, f, hasher, client, *, progress=True, desc=None, attempts=3, watch=None):
    """Download ``url`` into ``f`` after the bytes already in it (fed to ``hasher`` by the
    caller); returns the final size.

    From byte 0 this is boto3's parallel ranged download; a continuation (an adopted partial,
    or a retry after the connection broke) is one ``GetObject`` with ``Range`` and
    ``If-Match`` the ETag, so a changed object is RemoteChangedError, never spliced in.
    """
    bucket, key = split_s3_url(url)
    bar = progress_bar(info.size, desc or "download", progress, initial=f.tell())
    last = None
    try:
        for attempt in range(max(1, attempts)):
            offset = f.tell()
            if info.size is not None and offset > info.size:  # cannot be a prefix: start over
                log.info("restarting %s from byte 0: the partial is longer than the object", url)
                f.truncate(0)
                hasher.reset()
                bar.reset(total=info.size)
                offset = 0
            if info.size is not None and offset == info.size:
                return offset
            if watch is not None:
                watch.remaining()  # the deadline, before each attempt
                watch.body_started(offset)
            sink = _InOrderSink(f, hasher, bar, watch)
            try:
                if offset == 0:
                    extra = {"VersionId": info.version_id} if info.version_id else None
                    client.download_fileobj(bucket, key, sink, ExtraArgs=extra,
                                            Config=_transfer_config())
                else:
                    _get_range(client, bucket, key, info, offset, sink)
            except _errors() as e:
                last = _translate(url, e, "GetObject")
                if not isinstance(last, DownloadError) or isinstance(last, RemoteChangedError):
                    raise last from e
                log.info("download of %s interrupted at %d bytes (%s); attempt %d/%d",
                         url, f.tell(), e, attempt + 1, attempts)
                continue
            size = f.tell()
            if info.size is not None and size < info.size:
                last = DownloadError(f"GetObject {shown_url(url)} ended at byte {size} of {info.size}")
                continue
            return size
    finally:
        bar.close()
    raise DownloadError(f"downloading {shown_url(url)} failed after {attempts} attempts: {last}; retry "
                        "later (a resumable partial download is kept)") from last


def _get_range(client, bucket, key, info, offset, sink):
    kwargs = {"Bucket": bucket, "Key": key, "Range": f"bytes={offset}-"}
    if info.etag:
        kwargs["IfMatch"] = info.etag
    if info.version_id:
        kwargs["VersionId"] = info.version_id
    body = client.get_object(**kwargs)["Body"]
    try:
        for chunk in body.iter_chunks(CHUNK_SIZE):
            sink.write(chunk)
    finally:
        body.close()


def upload_file(path, url, client, *, sha256=None, progress=True,
                multipart_threshold=DEFAULT_MULTIPART_THRESHOLD,
                multipart_chunksize=DEFAULT_MULTIPART_CHUNKSIZE):
    """Upload one file with its sha256 in the object's user metadata (multipart when large)."""
    bucket, key = split_s3_url(url)
    sha256 = sha256 or hash_file(path, ("sha256",))["sha256"]
    size = os.path.getsize(path)
    bar = progress_bar(size, os.path.basename(path), progress)
    try:
        client.upload_file(os.fspath(path), bucket, key, ExtraArgs={"Metadata": {"sha256": sha256}},
                           Config=_transfer_config(multipart_threshold, multipart_chunksize),
                           Callback=bar.update)
    except _errors() as e:
        raise _translate(url, e, "upload to") from e
    except Exception as e:  # boto3 wraps upload failures in S3UploadFailedError
        if type(e).__name__ == "S3UploadFailedError":
            raise DownloadError(f"upload of {path} to {shown_url(url)} failed: {e}") from e
        raise
    finally:
        bar.close()
    return sha256


def push_directory(path, s3_prefix, *, proxies=None, progress=True,
                   multipart_threshold=DEFAULT_MULTIPART_THRESHOLD,
                   multipart_chunksize=DEFAULT_MULTIPART_CHUNKSIZE):
    """Upload a model directory (or one file) under ``s3://bucket/prefix/``.

    Every object carries ``sha256`` user metadata, which :func:`bertconvert.cache.cached_path`
    verifies on download. Returns ``[(s3_url, sha256, size)]`` in upload order.

    Example::

        push_directory("out/bert-tiny", "s3://team-models/bert/tiny/")
        cached_path("s3://team-models/bert/tiny/config.json")   # verified against the sha256
    """
    from ..errors import PathNotFoundError

    path = os.fspath(path)
    if not os.path.exists(path):
        raise PathNotFoundError(f"nothing to push: {path} does not exist")
    bucket, prefix = split_s3_url(s3_prefix if "://" in s3_prefix else f"s3://{s3_prefix}")
    if os.path.isdir(path):
        files = []
        for root, dirs, names in os.walk(path):
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            files.extend(os.path.join(root, n) for n in sorted(names) if not n.startswith("."))
        base = path
    else:
        files, base = [path], os.path.dirname(path)
    if not files:
        raise PathNotFoundError(f"nothing to push: {path} holds no files")
    client = make_client(proxies)
    pushed = []
    for file_path in files:
        rel = os.path.relpath(file_path, base).replace(os.sep, "/")
        key = f"{prefix.rstrip('/')}/{rel}" if prefix.strip("/") else rel
        url = f"s3://{bucket}/{key}"
        sha = upload_file(file_path, url, client, progress=progress,
                          multipart_threshold=multipart_threshold,
                          multipart_chunksize=multipart_chunksize)
        log.info("pushed %s -> %s (sha256 %s)", file_path, url, sha)
        pushed.append((url, sha, os.path.getsize(file_path)))
    return pushed
