"""A model directory behind a URL (``s3://bucket/prefix/``, ``https://host/dir/``) as a local
directory in the shared cache.

Each file is fetched by :func:`~bertconvert.cache.store.cached_path` (ETag-keyed entries,
verified, shared by processes and machines); the directory is then assembled from hard links
to those entries (copies where links are impossible) under a temp name and renamed into place
as ``<key>-extracted`` beside the entry of its ``conversion.json`` (else of its weights):
one directory per published version, built once, listed and removed by ``bertconvert cache``
with that entry; rebuilt when one of its files was fetched again.

Which files: ``conversion.json`` is the completeness marker of a published model
(:mod:`bertconvert.convert.publish` writes it last). When it lists its objects with their
sha256 (``publication.objects``), exactly those are fetched, each checked against its
sha256: an object replaced while it was being read (an ``--overwrite`` under way) fails the
check, and the whole set is fetched again from the marker (twice at most), so a mixture of
two versions is never assembled. An ``s3://`` prefix without ``conversion.json`` is not a
model (an upload under way or one that failed). Over HTTP(S), where a directory cannot be
listed, a directory without the marker is read by its usual names: a config
(``config.json`` or ``bert_config.json``), the weights (``model.safetensors`` or
``pytorch_model.bin``), and ``vocab.txt`` / ``tokenizer_config.json`` when present.

Example::

    >>> local = cached_path("s3://team-models/bert/tiny/")   # store.py calls fetch_model_dir
    >>> sorted(os.listdir(local))[:2]
    ['bert_config.json', 'config.json']
"""
import json
import logging
import os
import re
import shutil

from ..errors import IntegrityError, RemoteNotFoundError, WeightsError
from ..layout import (CONFIG_NAMES, PYTORCH_NAME, REPORT_NAME, SAFETENSORS_NAME,
                      TOKENIZER_CONFIG_NAME, VOCAB_NAME)
from .redact import printable, shown_url

log = logging.getLogger(__name__)

#: How often a set of files is fetched again when one no longer matches the marker.
ATTEMPTS = 3
#: Optional files of a directory without marker, fetched when present.
_OPTIONAL = (VOCAB_NAME, TOKENIZER_CONFIG_NAME)


def is_directory_url(url):
    """True for a remote URL that names a directory: it ends with ``/``."""
    if not isinstance(url, str) or "://" not in url:
        return False
    scheme = url.split("://", 1)[0].lower()
    return scheme in ("http", "https", "s3") and url.split("?", 1)[0].endswith("/")


def _base(url):
    path, sep, query = url.partition("?")
    return path.rstrip("/") + "/", (sep + query if sep else "")


def _files_from_marker(marker):
    """``{name: sha256 or None}`` a marker lists (plain names only)."""
    objects = (marker.get("publication") or {}).get("objects")
    if isinstance(objects, dict):
        named = {n: (e or {}).get("sha256") for n, e in objects.items() if isinstance(e, dict)}
    else:
        named = {n: None for n in marker.get("files") or [] if isinstance(n, str)}
    named.pop(REPORT_NAME, None)
    bad = [n for n in named if not n or "/" in n or "\\" in n or n.startswith(".")]
    if bad:
        raise WeightsError(f"{REPORT_NAME} lists file names that are no plain names: {bad}")
    # Checked here, not by the fetch: a digest that is no digest would fail every download
    # (read as a directory being replaced), or crash the comparison (a number, a list).
    for name, sha in named.items():
        if sha is None:
            continue
        if not isinstance(sha, str) or not re.fullmatch(r"[0-9a-fA-F]{64}", sha):
            raise WeightsError(f"{REPORT_NAME} lists sha256 {printable(repr(sha))[:80]} for "
                               f"{name}, which is not 64 hex digits: the marker is broken")
        named[name] = sha.lower()
    return named


def _fetch_set(base, query, fetch, scheme):
    """``{name: local cached path}`` of one consistent version of the directory."""
    try:
        marker_path = fetch(base + REPORT_NAME + query, None)
    except RemoteNotFoundError:
        marker_path = None
    if marker_path is None and scheme == "s3":
        raise WeightsError(
            f"{shown_url(base)} holds no {REPORT_NAME}: it is no complete published model (a "
            "publication may be under way, or one failed before its marker was written). "
            "Publish it with `bertconvert convert CKPT --out` that prefix")
    paths = {}
    if marker_path is not None:
        try:
            with open(marker_path, "rb") as f:
                marker = json.loads(f.read())
        except ValueError as e:
            raise WeightsError(f"{shown_url(base + REPORT_NAME)} is not JSON ({e})") from e
        if not isinstance(marker, dict):
            raise WeightsError(f"{shown_url(base + REPORT_NAME)} is not a JSON object")
        paths[REPORT_NAME] = marker_path
        for name, sha in sorted(_files_from_marker(marker).items()):
            try:
                paths[name] = fetch(base + name + query, sha)
            except RemoteNotFoundError as e:  # listed, then gone: being replaced (or broken)
                raise IntegrityError(f"{REPORT_NAME} lists {name}, which is not there ({e})") \
                    from e
        return paths
    for group, required in ((CONFIG_NAMES, True), ((SAFETENSORS_NAME, PYTORCH_NAME), True)):
        for name in group:
            try:
                paths[name] = fetch(base + name + query, None)
                break
            except RemoteNotFoundError:
                continue
        else:
            raise WeightsError(f"{shown_url(base)} holds no model: none of "
                               f"{', '.join(group)} is there (and no {REPORT_NAME})")
    for name in _OPTIONAL:
        try:
            paths[name] = fetch(base + name + query, None)
        except RemoteNotFoundError:
            pass
    return paths


def _matches(paths, target):
    """True when ``target`` holds exactly ``paths``' names, each the same file (a link)."""
    try:
        if sorted(os.listdir(target)) != sorted(paths):
            return False
        return all(os.path.samefile(path, os.path.join(target, name))
                   for name, path in paths.items())
    except OSError:
        return False


def _assemble(paths, target):
    """Hard-link (or copy) the cached files into a temp directory renamed to ``target``; a
    ``target`` that holds other versions (an entry fetched again) is replaced."""
    from ..atomic import fsync_directory, temp_name_for

    if _matches(paths, target):
        return target
    tmp = temp_name_for(target)
    os.mkdir(tmp, 0o755)
    try:
        for name, path in paths.items():
            try:
                os.link(path, os.path.join(tmp, name))
            except OSError:
                shutil.copyfile(path, os.path.join(tmp, name))
        if os.path.isdir(target):  # an older assembly: out of the way first
            old = temp_name_for(target) + ".old"
            try:
                os.rename(target, old)
            except OSError:
                old = None  # another process moved it already
            if old is not None:
                shutil.rmtree(old, ignore_errors=True)
        try:
            os.rename(tmp, target)
        except OSError:
            if not os.path.isdir(target):
                raise
            shutil.rmtree(tmp, ignore_errors=True)  # another process built one first
        fsync_directory(os.path.dirname(os.path.abspath(target)))
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


def as_directory_url(url):
    """``url`` ending in ``/`` (before its query), so that cached_path takes it for a
    directory."""
    base, query = _base(url)
    return base + query


def fetch_model_dir(url, cache_dir, fetch):
    """Local directory holding the model directory at ``url`` (see the module docstring);
    ``fetch(file_url, sha256)`` is the cache's fetch of one file
    (:func:`~bertconvert.cache.store.cached_path`, which calls this for a URL ending in
    ``/``).

    Raises WeightsError when the URL holds no (complete) model, IntegrityError when the
    files keep changing under the fetch, and what ``fetch`` raises otherwise.
    """
    from .entries import EXTRACTED_SUFFIX, make_cache_dir, resolve_cache_dir

    base, query = _base(url)
    scheme = base.split("://", 1)[0].lower()
    cache_dir = resolve_cache_dir(cache_dir)
    make_cache_dir(cache_dir)

    for attempt in range(ATTEMPTS):
        try:
            paths = _fetch_set(base, query, fetch, scheme)
            break
        except IntegrityError as e:
            if attempt + 1 == ATTEMPTS:
                raise IntegrityError(
                    f"{shown_url(base)} changed while it was being fetched ({e}), {ATTEMPTS} "
                    "times: it is being replaced; retry when the publication is done") from e
            log.info("%s changed while it was fetched (%s); fetching it again", shown_url(base), e)
    # The directory belongs to one cache entry -- the marker, else the weights -- so that
    # `cache ls/prune/rm` list and remove it with that entry.
    anchor = paths.get(REPORT_NAME) or paths.get(SAFETENSORS_NAME) or paths.get(PYTORCH_NAME)
    if anchor is None:
        raise WeightsError(f"{shown_url(base)}: {REPORT_NAME} lists no weights file")
    directory = _assemble(paths, anchor + EXTRACTED_SUFFIX)
    log.info("model directory %s is %s", shown_url(base), directory)
    return directory
