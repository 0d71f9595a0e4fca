"""A weight cache many processes and machines can share: :func:`cached_path` and friends.

Layout (compatible with pytorch-pretrained-bert 0.6.2, so ``~/.pytorch_pretrained_bert`` is
reusable): an entry is the file ``<key>`` with ``key = sha256(url)[.sha256(etag)]``
(:func:`url_to_filename`) and its metadata ``<key>.json`` holding at least ``url`` and
``etag``. We add ``size``, ``sha256`` and the checksums verified. Beside them live
``<key>.lock`` (kept), ``<key>-extracted/`` (``extract=True``) and, while a download runs,
a hidden ``.<key>.part-<host>-<pid>-<rand>`` file.

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
import contextlib
import hashlib
import json
import logging
import os
import re
import stat
import time
from urllib.parse import urlparse

from ..atomic import atomic_write
from .locks import PARTIAL_MARKER, _claim_partial, _release_partial, entry_lock  # noqa: F401
from ..errors import (BertConvertError, CacheEntryNotFoundError, CacheError, CacheWriteError,
                     DownloadError, DownloadTimeoutError, IntegrityError, NetworkUnavailableError,
                     OfflineError, PathNotFoundError, RemoteChangedError, UnsupportedURLError)
from .redact import redact_url, scrub

log = logging.getLogger(__name__)

ENV_CACHE = "BERTCONVERT_CACHE"
ENV_PPB_CACHE = "PYTORCH_PRETRAINED_BERT_CACHE"
ENV_OFFLINE = "BERTCONVERT_OFFLINE"
DEFAULT_CACHE_DIR = os.path.join("~", ".cache", "bertconvert")

#: Names of entry data files: sha256(url) with an optional ".sha256(etag)".
KEY_RE = re.compile(r"^([0-9a-f]{64})(?:\.([0-9a-f]{64}))?$")
EXTRACTED_SUFFIX = "-extracted"
REMOTE_SCHEMES = ("http", "https", "s3")


# --- names, directories, metadata ------------------------------------------------------------
def default_cache_dir():
    """``$BERTCONVERT_CACHE``, else ``$PYTORCH_PRETRAINED_BERT_CACHE``, else ``~/.cache/bertconvert``."""
    for var in (ENV_CACHE, ENV_PPB_CACHE):
        value = os.environ.get(var)
        if value:
            return os.path.expanduser(value)
    return os.path.expanduser(DEFAULT_CACHE_DIR)


def resolve_cache_dir(cache_dir=None):
    """The cache directory to use: the argument if given, else :func:`default_cache_dir`."""
    return os.path.expanduser(os.fspath(cache_dir)) if cache_dir is not None else default_cache_dir()


def url_to_filename(url, etag=None):
    """The cache key of ``url`` (at version ``etag``), exactly as pytorch-pretrained-bert 0.6.2.

    >>> url_to_filename("s3://b/k")[:8], len(url_to_filename("s3://b/k", '"abc"'))
    ('8b4ab49d', 129)
    """
    key = hashlib.sha256(url.encode("utf-8")).hexdigest()
    if etag:
        key += "." + hashlib.sha256(etag.encode("utf-8")).hexdigest()
    return key


def filename_to_url(filename, cache_dir=None):
    """``(url, etag)`` recorded for cache file ``filename`` (etag may be None).

    Raises CacheEntryNotFoundError (a FileNotFoundError, as 0.6.2's EnvironmentError) when
    the file or its ``.json`` metadata is missing.
    """
    path = os.path.join(resolve_cache_dir(cache_dir), os.fspath(filename))
    if not os.path.exists(path):
        raise CacheEntryNotFoundError(f"cache file {path} not found")
    meta_path = path + ".json"
    if not os.path.exists(meta_path):
        raise CacheEntryNotFoundError(f"cache metadata {meta_path} not found; the entry is "
                                      "incomplete (re-fetch it, or `bertconvert cache prune`)")
    meta = read_metadata(path)
    if meta is None:
        raise CacheEntryNotFoundError(f"cache metadata {meta_path} is unreadable or malformed; "
                                      "re-fetch the entry, or `bertconvert cache prune`")
    return meta["url"], meta.get("etag")


def is_offline():
    """True when ``BERTCONVERT_OFFLINE`` is set to 1/true/yes/on."""
    return os.environ.get(ENV_OFFLINE, "").strip().lower() in ("1", "true", "yes", "on")


#: Types each known metadata field may have (None is allowed for all but "url"). A file
#: with another type is not ours (or is damaged) and its entry counts as incomplete.
_META_TYPES = {"url": (str,), "etag": (str,), "size": (int,), "sha256": (str,),
               "last_modified": (str,), "created": (int, float), "verified": (list,),
               "version_id": (str,), "content_encoding": (str,)}


def _metadata_problem(meta):
    """Why ``meta`` is not usable metadata, or None."""
    if not isinstance(meta, dict):
        return f"expected a JSON object, found {type(meta).__name__}"
    if not isinstance(meta.get("url"), str) or not meta["url"]:
        return "'url' is missing or not a string"
    for name, types in _META_TYPES.items():
        value = meta.get(name)
        if value is not None and (not isinstance(value, types) or isinstance(value, bool)):
            return f"{name!r} is {type(value).__name__}, expected {types[0].__name__}"
    if meta.get("size") is not None and meta["size"] < 0:
        return "'size' is negative"
    return None


_reported_metadata = set()


def _report_bad_metadata(meta_path, why):
    # Once per file and process: `cache ls` reads each entry's metadata more than once.
    if meta_path not in _reported_metadata:
        _reported_metadata.add(meta_path)
        log.warning("ignoring %s; the entry counts as incomplete (`bertconvert cache prune` "
                    "removes it)", why)


def read_metadata(data_path):
    """The ``<key>.json`` dict of an entry, or None when missing, unreadable or malformed
    (a malformed file is reported with a warning; ``bertconvert cache prune`` removes it)."""
    meta_path = data_path + ".json"
    try:
        with open(meta_path, encoding="utf-8") as f:
            meta = json.load(f)
    except FileNotFoundError:
        return None
    except (OSError, ValueError, RecursionError) as e:
        _report_bad_metadata(meta_path, f"unreadable cache metadata {meta_path} "
                                        f"({type(e).__name__})")
        return None
    problem = _metadata_problem(meta)
    if problem is not None:
        _report_bad_metadata(meta_path, f"malformed cache metadata {meta_path} ({problem})")
        return None
    return meta


def entry_state(data_path, info=None):
    """The metadata of a *complete* entry, else None.

    Complete means: data file and metadata both exist, and the data has the recorded size
    (and the remote's size, when ``info`` knows it). Entries keyed without an ETag are also
    stale when the server's Last-Modified differs from the recorded one.
    """
    meta = read_metadata(data_path)
    if meta is None:
        return None
    try:
        st = os.stat(data_path)
    except OSError:
        return None
    if not stat.S_ISREG(st.st_mode):
        return None
    if meta.get("size") is not None and st.st_size != meta["size"]:
        return None
    if info is not None:
        if info.size is not None and st.st_size != info.size:
            return None
        if info.etag is None and info.last_modified and meta.get("last_modified") \
                and info.last_modified != meta["last_modified"]:
            return None
    return meta


def _sha256_matches(data_path, meta, sha256):
    if not sha256:
        return True
    recorded = meta.get("sha256")
    if recorded is None:  # e.g. a 0.6.2 entry: compute once
        from .checks import hash_file
        recorded = hash_file(data_path, ("sha256",))["sha256"]
    return recorded.lower() == sha256


def _touch_used(data_path):
    """Record "last used" as the metadata file's mtime (best effort: read-only caches work)."""
    with contextlib.suppress(OSError):
        os.utime(data_path + ".json")


def newest_cached_entry(url, cache_dir=None, sha256=None):
    """Path of the most recently downloaded complete entry for ``url`` (any ETag), or None."""
    cache_dir = resolve_cache_dir(cache_dir)
    url_hash = url_to_filename(url)
    best = None
    try:
        entries = list(os.scandir(cache_dir))
    except OSError:
        return None
    for entry in entries:
        m = KEY_RE.match(entry.name)
        if not m or m.group(1) != url_hash:
            continue
        meta = entry_state(entry.path)
        # The metadata holds the URL with its secrets redacted (older entries: in full).
        if meta is None or meta.get("url") not in (url, redact_url(url)) or \
                not _sha256_matches(entry.path, meta, sha256):
            continue
        mtime = entry.stat().st_mtime
        if best is None or mtime > best[0]:
            best = (mtime, entry.path)
    return best[1] if best else None


# --- the download itself -----------------------------------------------------------------------
def _open_partial(tmp, adopted):
    """The temp file a download writes. Both transports deliver the body in order, so it is
    a DirectFile: past the page cache (the commit's fsync is cheap), always a prefix of the
    object (resumable)."""
    from ..directio import DirectFile

    return DirectFile(tmp, "a" if adopted else "x")


def _close_partial(f, keep):
    """Close an uncommitted temp file: what it holds is written out when it will be resumed,
    discarded otherwise; a write error here must not hide the error being raised."""
    if not keep:
        f.abort()
        return
    try:
        f.close()
    except OSError as e:
        log.warning("could not write the rest of the partial download %s: %s", f.name, e)


def _is_network_error(error):
    """requests' exceptions derive from OSError too; they are not the disk's fault."""
    try:
        import requests
    except ImportError:
        return False
    return isinstance(error, requests.RequestException)


def _split_for_encoding(url, info, own, server):
    """``(checks of the stored file, checks of the bytes as sent)``, from the caller's own
    checks (``sha256=``) and the server's.

    An object stored with ``Content-Encoding: gzip`` (S3 metadata) is sent encoded whatever
    the request asks; it is cached decoded, as requests and pytorch-pretrained-bert 0.6.2
    give it, while the server's checksums (ETag MD5, ``x-amz-checksum-*``) describe the
    encoded bytes and are checked on those. A ``sha256=`` argument describes the file.
    """
    from .checks import WIRE_DECODERS, Expected

    if info.content_encoding is None:
        return own + server, []
    if info.content_encoding not in WIRE_DECODERS:
        if server:
            log.warning("%s is sent with Content-Encoding: %s, which bertconvert cannot decode "
                        "itself; the server's checksums describe the encoded bytes and are not "
                        "checked", url, info.content_encoding)
        return own, []
    wire = [Expected(e.algorithm, e.hexdigest,
                     f"{e.source} (for the {info.content_encoding}-encoded bytes sent)")
            for e in server]
    return own, wire


def _download(url, info, data_path, transport, sha256, progress, watch):
    from .. import __version__
    from .checks import Expected, StreamHasher, check_integrity

    watch.check_size(info.size)  # an announced size beyond the limit: not even a temp file

    own = [Expected("sha256", sha256, "the sha256= argument")] if sha256 else []
    server = list(info.expected)
    if not server and not own:  # nothing to check the bytes against yet: what else can the
        server = transport.download_checks(info)  # store say?
    if any(e.algorithm == "sha256" for e in server + own):
        # sha256 is computed anyway and is the stronger check: skip the ETag's MD5 (the
        # slowest hash, 0.52 s per 440 MB here).
        server = [e for e in server if e.algorithm != "md5"]
    expected, wire_expected = _split_for_encoding(url, info, own, server)
    # Byte ranges of an encoded body count encoded bytes; the file holds decoded ones.
    resumable = transport.resumable and info.strong_etag is not None and \
        info.content_encoding is None
    tmp, adopted = _claim_partial(data_path, resumable)
    hasher = StreamHasher(["sha256"] + [e.algorithm for e in expected])
    wire_hasher = StreamHasher([e.algorithm for e in wire_expected]) if wire_expected else None
    try:
        if adopted:  # the kept prefix counts towards every checksum
            with open(tmp, "rb") as prefix:
                hasher.feed_file(prefix, adopted)
        f = _open_partial(tmp, adopted)
    except OSError as e:
        hasher.hexdigests()
        if wire_hasher is not None:
            wire_hasher.hexdigests()
        _release_partial(tmp)
        raise CacheError(f"cannot write to the cache directory {os.path.dirname(data_path)}: {e}; "
                         f"point {ENV_CACHE} (or cache_dir=) at a writable directory") from e
    keep_partial = False
    committed = False
    try:
        desc = os.path.basename(urlparse(url).path)[:24] or "download"
        size = transport.fetch(url, info, f, hasher, progress, desc, wire_hasher=wire_hasher)
        f.flush()
        digests = hasher.hexdigests()
        check_integrity(redact_url(url), size, digests, info.size, expected)
        wire_digests = wire_hasher.hexdigests() if wire_hasher is not None else {}
        check_integrity(redact_url(url), None, wire_digests, None, wire_expected)
        os.fsync(f.fileno())
        f.close()
        os.replace(tmp, data_path)  # the commit point
        committed = True
        # Never the URL's password or signature: the key (sha256 of the full URL) is enough.
        meta = {"url": redact_url(url), "etag": info.etag, "size": size,
                "sha256": digests["sha256"],
                # What was actually compared (a checksum whose library is missing is not).
                "verified": sorted({e.algorithm for e in expected if e.algorithm in digests} |
                                   {e.algorithm for e in wire_expected
                                    if e.algorithm in wire_digests}),
                "last_modified": info.last_modified, "created": time.time(),
                "bertconvert_version": __version__}
        if info.version_id:
            meta["version_id"] = info.version_id
        if info.content_encoding:
            meta["content_encoding"] = info.content_encoding  # the file holds the decoded body
        with atomic_write(data_path + ".json", "w") as mf:
            json.dump(meta, mf, indent=1)
        log.info("cached %s (%d bytes, sha256 %s)", redact_url(url), size, digests["sha256"])
    except (DownloadError, DownloadTimeoutError, KeyboardInterrupt) as e:
        # What arrived so far is a sound prefix: kept for the next try when it can resume.
        keep_partial = resumable and not isinstance(e, RemoteChangedError)
        raise
    except OSError as e:
        if _is_network_error(e):
            raise
        # Network errors became DownloadError inside the transport: this is the local disk.
        raise CacheWriteError(
            f"writing the download of {redact_url(url)} into {os.path.dirname(data_path)} failed: "
            f"{e.strerror or e}; the partial file was removed. Free space (or raise the quota) "
            f"there, or point {ENV_CACHE} (or cache_dir=) elsewhere, then retry") from e
    finally:
        hasher.hexdigests()  # stops the hashing threads on every path
        if wire_hasher is not None:
            wire_hasher.hexdigests()
        if not committed:
            _close_partial(f, keep=keep_partial)
        _release_partial(tmp)
        if not committed and not keep_partial:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
        elif not committed:
            with contextlib.suppress(OSError):
                if os.path.getsize(tmp) == 0:
                    os.unlink(tmp)


def _finish(data_path, extract, cache_dir, limits):
    _touch_used(data_path)
    if not extract:
        return data_path
    from .archives import extract_archive

    target = data_path + EXTRACTED_SUFFIX
    if os.path.isdir(target):
        return target
    with entry_lock(data_path):
        return extract_archive(data_path, target, max_size=limits.max_extract_size,
                               max_ratio=limits.max_extract_ratio)


def _fallback(url, cache_dir, sha256, extract, error, limits):
    path = newest_cached_entry(url, cache_dir, sha256)
    shown = redact_url(url)
    if path is None:
        raise NetworkUnavailableError(
            f"{error}. Nothing is cached for {shown} in {cache_dir} to fall back on; retry when "
            "the network is back, or fetch it elsewhere with `bertconvert cache fetch`") from error
    when = time.strftime("%Y-%m-%d %H:%M", time.localtime(os.path.getmtime(path)))
    log.warning("network failure for %s (%s); using the cached copy from %s", shown,
                scrub(str(error), url), when)
    return _finish(path, extract, cache_dir, limits)


def cache_dir_error(cache_dir, error=None):
    """A CacheError saying why ``cache_dir`` cannot be used as the cache directory."""
    if os.path.islink(cache_dir) and not os.path.exists(cache_dir):
        what = "a symlink that loops or leads nowhere"
    elif os.path.lexists(cache_dir) and not os.path.isdir(cache_dir):
        what = "a file, not a directory"
    else:
        what = f"not usable ({error.strerror or error})" if error is not None else "not usable"
    return CacheError(f"the cache directory {cache_dir} is {what}; expected a directory that "
                      f"can be read and written: set {ENV_CACHE} (or pass cache_dir= / "
                      "--cache-dir) to one")


def _make_cache_dir(cache_dir):
    """Create ``cache_dir`` if needed; CacheError when it cannot be (a file is in the way,
    a symlink loop, no permission)."""
    try:
        os.makedirs(cache_dir, exist_ok=True)
    except OSError as e:
        raise cache_dir_error(cache_dir, e) from e
    if not os.path.isdir(cache_dir):  # pragma: no cover - makedirs raises first
        raise cache_dir_error(cache_dir)


def _fetch_remote(url, cache_dir, force_download, local_files_only, sha256, extract, proxies,
                  progress, limit_args):
    from .limits import TransferWatch, download_limits, extract_limits

    cache_dir = resolve_cache_dir(cache_dir)
    _make_cache_dir(cache_dir)
    shown = redact_url(url)
    if local_files_only or is_offline():
        why = "local_files_only=True" if local_files_only else f"{ENV_OFFLINE} is set"
        if force_download:
            raise OfflineError(f"force_download needs the network but {why}")
        path = newest_cached_entry(url, cache_dir, sha256)
        if path is None:
            raise OfflineError(f"offline ({why}) and {shown} is not in the cache {cache_dir}; "
                               f"fetch it while online (`bertconvert cache fetch {shown}`)")
        return _finish(path, extract, cache_dir, extract_limits(
            limit_args.get("max_extract_size"), limit_args.get("max_extract_ratio")))

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
            if meta is not None and _sha256_matches(data_path, meta, sha256):
                return _finish(data_path, extract, cache_dir, limits)
            with entry_lock(data_path):
                meta = None if force_download else entry_state(data_path, info)
                if meta is None or not _sha256_matches(data_path, meta, sha256):
                    try:
                        _download(url, info, data_path, transport, sha256, progress, watch)
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
        from .checks import hash_file
        actual = hash_file(path, ("sha256",))["sha256"] if os.path.isfile(path) else None
        if actual != sha256:
            raise IntegrityError(f"sha256 of {path} is {actual} but sha256= says {sha256}")
    if not extract or os.path.isdir(path):
        return path
    # A local archive is extracted into the cache, keyed by its absolute path and version.
    from .archives import extract_archive
    from .limits import extract_limits

    limits = extract_limits(limit_args.get("max_extract_size"), limit_args.get("max_extract_ratio"))
    st = os.stat(path)
    cache_dir = resolve_cache_dir(cache_dir)
    _make_cache_dir(cache_dir)
    key = url_to_filename("file://" + os.path.abspath(path), f"{st.st_size}-{st.st_mtime_ns}")
    target = os.path.join(cache_dir, key + EXTRACTED_SUFFIX)
    if os.path.isdir(target):
        return target
    with entry_lock(os.path.join(cache_dir, key)):
        return extract_archive(path, target, max_size=limits.max_extract_size,
                               max_ratio=limits.max_extract_ratio)


def _scheme_of(target):
    try:
        return urlparse(target).scheme.lower()
    except ValueError as e:  # e.g. "http://[::1/x": a broken IPv6 host
        if os.path.exists(target):  # an odd but existing local path
            return ""
        raise UnsupportedURLError(f"cannot parse {target!r} as a URL ({e}); expected "
                                  "http(s)://host/path, s3://bucket/key or a local path") from e


def _check_remote_url(url, scheme):
    """Refuse a URL with no usable host before any lock, cache entry or request exists
    (requests would otherwise fail with its own InvalidURL, not one of ours)."""
    try:
        parsed = urlparse(url)
        host = parsed.hostname if scheme != "s3" else parsed.netloc
        parsed.port  # noqa: B018 - raises ValueError for a port that is not a number
    except ValueError as e:
        raise UnsupportedURLError(f"{url!r} is not a valid {scheme}:// URL ({e}); expected "
                                  f"{scheme}://host[:port]/path") from e
    if not host or any(c.isspace() for c in parsed.netloc):
        example = "s3://bucket/key" if scheme == "s3" else f"{scheme}://host[:port]/path"
        raise UnsupportedURLError(f"{url!r} names no valid host; expected {example}")


def cached_path(url_or_filename, cache_dir=None, *, force_download=False, local_files_only=False,
                sha256=None, extract=False, proxies=None, progress=True, max_download_size=None,
                fetch_deadline=None, min_speed=None, max_extract_size=None,
                max_extract_ratio=None):
    """Local path of ``url_or_filename``, downloading it into the cache if needed.

    ``url_or_filename``: an http(s):// or s3:// URL, or a local path (returned as is).
    ``cache_dir``: else ``$BERTCONVERT_CACHE``, ``$PYTORCH_PRETRAINED_BERT_CACHE``,
    ``~/.cache/bertconvert``. ``force_download``: fetch again even if cached.
    ``local_files_only``: no network, newest cached entry. ``sha256``: required content hash.
    ``extract``: return the directory a .tar.gz/.tgz/.zip extracts to (extracted once).
    ``proxies``: requests-style ``{"https": "http://proxy:3128"}``; wins over the environment's
    (HTTPS_PROXY...), which are used otherwise. For s3:// it goes to botocore's config.
    Limits (each also an environment variable; see :mod:`bertconvert.cache_limits`):
    ``max_download_size`` (bytes or "20G", default 20G), ``fetch_deadline`` (seconds or
    "6h", default 6h), ``min_speed`` (bytes/s, default 1K, judged over the read timeout),
    ``max_extract_size`` (default 20G) and ``max_extract_ratio`` (default 100).

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
                  "max_extract_ratio": max_extract_ratio}
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
        return _fetch_remote(target, cache_dir, force_download, local_files_only, sha256, extract,
                             proxies, progress, limit_args)
    if scheme == "file":
        from urllib.request import url2pathname
        target = url2pathname(urlparse(target).path)
    if os.path.exists(target):
        return _local(target, cache_dir, extract, sha256, limit_args)
    if scheme in ("", "file") or re.match(r"^[A-Za-z]:[\\/]", target):
        raise PathNotFoundError(f"file {target} not found (not a URL either: expected an "
                                "http(s):// or s3:// URL, or an existing path)")
    raise UnsupportedURLError(f"cannot fetch {redact_url(target)!r}: scheme {scheme!r} is not "
                              "supported; use http://, https://, s3:// or a local path")
