"""Cache entries on disk: where the cache is, what an entry is called, and whether it is whole.

Layout (compatible with pytorch-pretrained-bert 0.6.2, so ``~/.pytorch_pretrained_bert`` is
reusable): an entry is the file ``<key>`` with ``key = sha256(url)[.sha256(etag)]``
(:func:`url_to_filename`) and its metadata ``<key>.json`` holding at least ``url`` and
``etag``. We add ``size``, ``sha256`` and the checksums verified. Beside them live
``<key>.lock`` (kept), ``<key>-extracted/`` (``extract=True``) and, while a download runs,
a hidden ``.<key>.part-<host>-<pid>-<rand>`` file.

An entry counts as complete only when data and metadata both exist and sizes agree
(:func:`entry_state`); malformed metadata makes it incomplete, never an error.
"""
import contextlib
import hashlib
import json
import logging
import os
import re
import stat

from ..errors import CacheEntryNotFoundError, CacheError
from .redact import redact_url

log = logging.getLogger(__name__)

ENV_CACHE = "BERTCONVERT_CACHE"
ENV_PPB_CACHE = "PYTORCH_PRETRAINED_BERT_CACHE"
ENV_OFFLINE = "BERTCONVERT_OFFLINE"
DEFAULT_CACHE_DIR = os.path.join("~", ".cache", "bertconvert")

#: Names of entry data files: sha256(url) with an optional ".sha256(etag)".
KEY_RE = re.compile(r"^([0-9a-f]{64})(?:\.([0-9a-f]{64}))?$")
EXTRACTED_SUFFIX = "-extracted"


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
    ('a65db92a', 129)
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


def sha256_matches(data_path, meta, sha256):
    if not sha256:
        return True
    recorded = meta.get("sha256")
    if recorded is None:  # e.g. a 0.6.2 entry: compute once
        from .digests import hash_file
        recorded = hash_file(data_path, ("sha256",))["sha256"]
    return recorded.lower() == sha256


def touch_used(data_path):
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
                not sha256_matches(entry.path, meta, sha256):
            continue
        mtime = entry.stat().st_mtime
        if best is None or mtime > best[0]:
            best = (mtime, entry.path)
    return best[1] if best else None


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


def make_cache_dir(cache_dir):
    """Create ``cache_dir`` if needed; CacheError when it cannot be (a file is in the way,
    a symlink loop, no permission)."""
    try:
        os.makedirs(cache_dir, exist_ok=True)
    except OSError as e:
        raise cache_dir_error(cache_dir, e) from e
    if not os.path.isdir(cache_dir):  # pragma: no cover - makedirs raises first
        raise cache_dir_error(cache_dir)

