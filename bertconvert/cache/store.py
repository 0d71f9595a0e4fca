"""A weight cache many processes and machines can share: :func:`cached_path` and friends.

Entries on disk (keys, metadata, completeness) are :mod:`.entries`' business; the
download and its commit are :mod:`.download`'s.

How a fetch goes (decide, then act):

1. HEAD (or S3 HeadObject) -> ETag -> key. A complete entry is returned at once: a hit costs
   exactly one metadata request and takes no lock, so read-only cache directories serve hits.
2. Otherwise take the entry's file lock, look again (another process may have finished),
   download into a unique temp file in the cache dir (resuming an abandoned one), verify
   length and checksums, fsync, ``os.replace`` — the commit point — then write the metadata
   atomically. An entry counts as complete only when data and metadata both exist and sizes
   agree, so a killed process never leaves something that looks complete. The lock only
   avoids duplicate downloads; correctness comes from the atomic commit.
3. Offline (``local_files_only=True`` or ``BERTCONVERT_OFFLINE=1``): no network at all; the
   newest complete entry for the URL is used. A network failure falls back the same way,
   with a warning.

Example::

    >>> path = cached_path("https://example.org/bert/bert-base-uncased-vocab.txt")
    >>> model_dir = cached_path("s3://models/bert/bert-base-uncased.tar.gz", extract=True)
"""
import logging
import os
import re
import time
from urllib.parse import urlparse

from ..errors import (BertConvertError, CacheError, DownloadError, IntegrityError,
                      NetworkUnavailableError, OfflineError, PathNotFoundError,
                      RemoteChangedError, UnsupportedURLError)
from .entries import (ENV_OFFLINE, EXTRACTED_SUFFIX, entry_state, is_offline, make_cache_dir,
                      newest_cached_entry, resolve_cache_dir, sha256_matches, touch_used,
                      url_to_filename)
from .locks import entry_lock
from .redact import has_controls, printable, scrub, shown_url

log = logging.getLogger(__name__)

REMOTE_SCHEMES = ("http", "https", "s3")


def _finish(data_path, extract, cache_dir, limits):
    touch_used(data_path)
    if not extract:
        return data_path
    from .archives import extract_archive

    target = data_path + EXTRACTED_SUFFIX
    if os.path.isdir(target):
        return target
    with entry_lock(data_path):
        return extract_archive(data_path, target, max_size=limits.max_extract_size,
                               max_ratio=limits.max_extract_ratio,
                               max_members=limits.max_extract_members)


def _fallback(url, cache_dir, sha256, extract, error, limits):
    path = newest_cached_entry(url, cache_dir, sha256)
    shown = shown_url(url)
    if path is None:
        raise NetworkUnavailableError(
            f"{error}. Nothing is cached for {shown} in {cache_dir} to fall back on; retry when "
            "the network is back, or fetch it elsewhere with `bertconvert cache fetch`") from error
    when = time.strftime("%Y-%m-%d %H:%M", time.localtime(os.path.getmtime(path)))
    log.warning("network failure for %s (%s); using the cached copy from %s", shown,
                scrub(str(error), url), when)
    return _finish(path, extract, cache_dir, limits)


def _fetch_remote(url, cache_dir, force_download, local_files_only, sha256, extract, proxies,
                  progress, limit_args):
    from .limits import TransferWatch, download_limits, extract_limits

    cache_dir = resolve_cache_dir(cache_dir)
    make_cache_dir(cache_dir)
    shown = shown_url(url)
    if local_files_only or is_offline():
        why = "local_files_only=True" if local_files_only else f"{ENV_OFFLINE} is set"
        if force_download:
            raise OfflineError(f"force_download needs the network but {why}")
        path = newest_cached_entry(url, cache_dir, sha256)
        if path is None:
            raise OfflineError(f"offline ({why}) and {shown} is not in the cache {cache_dir}; "
                               f"fetch it while online (`bertconvert cache fetch {shown}`)")
        return _finish(path, extract, cache_dir, extract_limits(
            limit_args.get("max_extract_size"), limit_args.get("max_extract_ratio"),
            limit_args.get("max_extract_members")))

    from .download import download
    from .transports import transport_for

    limits = download_limits(**limit_args)
    transport = transport_for(url, proxies)
    # The deadline covers the whole fetch, HEAD and retries included.
    watch = TransferWatch(shown, limits, transport.policy.read_timeout)
    transport.watch(watch)
    try:
        for attempt in range(2):
            try:
                info = transport.head(url)
            except DownloadError as e:  # network trouble; 404/403 propagate as they are
                return _fallback(url, cache_dir, sha256, extract, e, limits)
            data_path = os.path.join(cache_dir, url_to_filename(url, info.etag))
            meta = None if force_download else entry_state(data_path, info)
            if meta is not None and sha256_matches(data_path, meta, sha256):
                return _finish(data_path, extract, cache_dir, limits)
            with entry_lock(data_path):
                meta = None if force_download else entry_state(data_path, info)
                if meta is None or not sha256_matches(data_path, meta, sha256):
                    try:
                        download(url, info, data_path, transport, sha256, progress, watch)
                    except RemoteChangedError as e:
                        if attempt == 0:
                            log.info("%s; starting over", scrub(str(e), url))
                            continue
                        raise
                    except DownloadError as e:
                        error = e
                        break
            return _finish(data_path, extract, cache_dir, limits)
    finally:
        transport.close()
    return _fallback(url, cache_dir, sha256, extract, error, limits)


def _local(path, cache_dir, extract, sha256, limit_args):
    if sha256:
        from .digests import hash_file
        actual = hash_file(path, ("sha256",))["sha256"] if os.path.isfile(path) else None
        if actual != sha256:
            raise IntegrityError(f"sha256 of {path} is {actual} but sha256= says {sha256}")
    if not extract or os.path.isdir(path):
        return path
    # A local archive is extracted into the cache, keyed by its absolute path and version.
    from .archives import extract_archive
    from .limits import extract_limits

    limits = extract_limits(limit_args.get("max_extract_size"), limit_args.get("max_extract_ratio"),
                            limit_args.get("max_extract_members"))
    st = os.stat(path)
    cache_dir = resolve_cache_dir(cache_dir)
    make_cache_dir(cache_dir)
    key = url_to_filename("file://" + os.path.abspath(path), f"{st.st_size}-{st.st_mtime_ns}")
    target = os.path.join(cache_dir, key + EXTRACTED_SUFFIX)
    if os.path.isdir(target):
        return target
    with entry_lock(os.path.join(cache_dir, key)):
        return extract_archive(path, target, max_size=limits.max_extract_size,
                               max_ratio=limits.max_extract_ratio,
                               max_members=limits.max_extract_members)


def _scheme_of(target):
    try:
        return urlparse(target).scheme.lower()
    except ValueError as e:  # e.g. "http://[::1/x": a broken IPv6 host
        if os.path.exists(target):  # an odd but existing local path
            return ""
        raise UnsupportedURLError(f"cannot parse '{shown_url(target)}' as a URL ({e}); expected "
                                  "http(s)://host/path, s3://bucket/key or a local path") from e


def _check_remote_url(url, scheme):
    """Refuse a URL with no usable host before any lock, cache entry or request exists
    (requests would otherwise fail with its own InvalidURL, not one of ours). Control
    characters (CR, LF, NUL...) are no part of a URL (RFC 3986): refused too."""
    if has_controls(url):
        raise UnsupportedURLError(f"'{shown_url(url)}' holds control characters (shown escaped), "
                                  "which no URL may contain; check how the URL was produced")
    try:
        parsed = urlparse(url)
        host = parsed.hostname if scheme != "s3" else parsed.netloc
        parsed.port  # noqa: B018 - raises ValueError for a port that is not a number
    except ValueError as e:
        raise UnsupportedURLError(f"'{shown_url(url)}' is not a valid {scheme}:// URL ({e}); expected "
                                  f"{scheme}://host[:port]/path") from e
    if not host or any(c.isspace() for c in parsed.netloc):
        example = "s3://bucket/key" if scheme == "s3" else f"{scheme}://host[:port]/path"
        raise UnsupportedURLError(f"'{shown_url(url)}' names no valid host; expected {example}")


def cached_path(url_or_filename, cache_dir=None, *, force_download=False, local_files_only=False,
                sha256=None, extract=False, proxies=None, progress=True, max_download_size=None,
                fetch_deadline=None, min_speed=None, max_extract_size=None,
                max_extract_ratio=None, max_extract_members=None):
    """Local path of ``url_or_filename``, downloading it into the cache if needed.

    ``url_or_filename``: an http(s):// or s3:// URL, or a local path (returned as is). A URL
    ending in ``/`` names a model directory (``s3://bucket/prefix/``): its files are fetched
    one by one and a local directory is returned (:mod:`bertconvert.cache.remotedir`).
    ``cache_dir``: else ``$BERTCONVERT_CACHE``, ``$PYTORCH_PRETRAINED_BERT_CACHE``,
    ``~/.cache/bertconvert``. ``force_download``: fetch again even if cached.
    ``local_files_only``: no network, newest cached entry. ``sha256``: required content hash.
    ``extract``: return the directory a .tar.gz/.tgz/.zip extracts to (extracted once).
    ``proxies``: requests-style ``{"https": "http://proxy:3128"}``; wins over the environment's
    (HTTPS_PROXY...), which are used otherwise. For s3:// it goes to botocore's config.
    Limits (each also an environment variable; see :mod:`bertconvert.cache.limits`):
    ``max_download_size`` (bytes or "20G", default 20G), ``fetch_deadline`` (seconds or
    "6h", default 6h), ``min_speed`` (bytes/s, default 1K, judged over the read timeout),
    ``max_extract_size`` (default 20G), ``max_extract_ratio`` (default 100) and
    ``max_extract_members`` (files an archive may hold, default 10000).

    A URL's password or signature is never written to the metadata nor shown in messages
    (the cache key is still derived from the full URL, as in 0.6.2).

    Raises RemoteNotFoundError (404/403/NoSuchKey), IntegrityError (length/checksum mismatch;
    nothing kept), OfflineError / NetworkUnavailableError (nothing usable cached),
    PathNotFoundError (missing local path), UnsupportedURLError, UnsafeArchiveError,
    DownloadTooLargeError, DownloadTimeoutError, ArchiveTooLargeError (a limit was hit;
    nothing committed), CacheSettingError (a limit is not a positive number).

    Example::

        >>> vocab = cached_path("https://mirror.example/bert/bert-base-uncased-vocab.txt")
        >>> model_dir = cached_path("s3://models/bert-base-uncased.tar.gz", extract=True)
    """
    target = os.fspath(url_or_filename)
    limit_args = {"max_download_size": max_download_size, "fetch_deadline": fetch_deadline,
                  "min_speed": min_speed, "max_extract_size": max_extract_size,
                  "max_extract_ratio": max_extract_ratio,
                  "max_extract_members": max_extract_members}
    if any(v is not None for v in limit_args.values()):
        from .limits import download_limits
        download_limits(**limit_args)  # a bad keyword is an error whatever the target
    try:
        return _cached_path(target, cache_dir, force_download, local_files_only, sha256, extract,
                            proxies, progress, limit_args)
    except BertConvertError as e:
        # Messages may quote the URL (ours, or requests' own, which hold the query): never
        # with its password or signature.
        if isinstance(target, str) and e.args and isinstance(e.args[0], str):
            e.args = (scrub(e.args[0], target),) + e.args[1:]
        raise


def _cached_path(target, cache_dir, force_download, local_files_only, sha256, extract, proxies,
                 progress, limit_args):
    if sha256 is not None:
        sha256 = str(sha256).strip().lower()
        if not re.fullmatch(r"[0-9a-f]{64}", sha256):
            raise CacheError(f"sha256={sha256!r} is not 64 hex digits")
    scheme = _scheme_of(target)
    if scheme in REMOTE_SCHEMES:
        _check_remote_url(target, scheme)
        from .remotedir import fetch_model_dir, is_directory_url
        if is_directory_url(target):  # a model directory: each file through the cache
            def fetch(url, file_sha256):
                return _fetch_remote(url, cache_dir, force_download, local_files_only,
                                     file_sha256, False, proxies, progress, limit_args)
            return fetch_model_dir(target, cache_dir, fetch)
        return _fetch_remote(target, cache_dir, force_download, local_files_only, sha256, extract,
                             proxies, progress, limit_args)
    if scheme == "file":
        from urllib.request import url2pathname
        target = url2pathname(urlparse(target).path)
    if os.path.exists(target):
        return _local(target, cache_dir, extract, sha256, limit_args)
    if scheme in ("", "file") or re.match(r"^[A-Za-z]:[\\/]", target):
        raise PathNotFoundError(f"file {printable(target)} not found (not a URL either: expected an "
                                "http(s):// or s3:// URL, or an existing path)")
    raise UnsupportedURLError(f"cannot fetch '{shown_url(target)}': scheme {scheme!r} is not "
                              "supported; use http://, https://, s3:// or a local path")
