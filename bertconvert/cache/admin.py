"""Looking after a cache directory: list, verify, prune and remove entries.

The library side of ``bertconvert cache ls|verify|prune|rm``. Removal happens under each
entry's lock and is itself atomic per file (unlink; extracted directories are renamed away
before being deleted), so a process reading the cache never sees half an entry. Lock files
are never removed: deleting a lock file another process waits on would let two holders in.
Temporary names the cache makes (partial downloads, half-written metadata, half-filled or
half-deleted extractions) are found by :mod:`.leftovers`; ``prune``, ``rm`` and ``rm --all``
remove those whose owner is gone.

Example::

    >>> for e in list_entries():
    ...     print(e.url, e.size, e.complete)
    >>> prune(max_size=parse_size("20G"), older_than=parse_age("30d"))
"""
import contextlib
import logging
import os
import re
import shutil
import time
from dataclasses import dataclass

from ..atomic import temp_name_for
from .entries import (EXTRACTED_SUFFIX, KEY_RE, cache_dir_error, entry_state, read_metadata,
                      resolve_cache_dir, url_to_filename)
from .leftovers import leftovers
from .locks import entry_lock
from ..errors import CacheEntryNotFoundError, CacheError
from .redact import redact_url, shown_url

log = logging.getLogger(__name__)


@dataclass
class CacheEntry:
    """One cached download as ``cache ls`` shows it."""

    key: str
    path: str
    url: str
    etag: str
    size: int
    last_used: float
    created: float
    complete: bool
    sha256: str = None
    extracted: str = None

    def disk_usage(self, counted=()):
        """Bytes the entry holds: its file, and its extracted directory's files, each file
        (inode) once and none of ``counted`` (``(st_dev, st_ino)`` of the cache's entries: a
        model directory fetched from a URL is hard links to them, bytes counted already)."""
        total = self.size or 0
        if self.extracted:
            seen = set(counted)
            for d, _, files in os.walk(self.extracted):
                for name in files:
                    with contextlib.suppress(OSError):
                        st = os.lstat(os.path.join(d, name))
                        if (st.st_dev, st.st_ino) not in seen:
                            seen.add((st.st_dev, st.st_ino))
                            total += st.st_size
        return total


def _cache_names(cache_dir):
    """Names in ``cache_dir``; empty when it does not exist yet. CacheError when the path is
    something else (a file, a symlink loop, a directory we may not read)."""
    try:
        return set(os.listdir(cache_dir))
    except FileNotFoundError as e:
        if os.path.lexists(cache_dir):  # a dangling symlink
            raise cache_dir_error(cache_dir, e) from e
        return set()
    except OSError as e:
        raise cache_dir_error(cache_dir, e) from e


def list_entries(cache_dir=None):
    """Every entry with data or metadata in ``cache_dir``, newest use first.

    An entry whose ``<key>.json`` is malformed (not JSON, ``"url": 5``...) is listed as
    incomplete, with a warning; raises CacheError when ``cache_dir`` is not a directory.
    """
    cache_dir = resolve_cache_dir(cache_dir)
    names = _cache_names(cache_dir)
    keys = {n[:-5] for n in names if n.endswith(".json") and KEY_RE.match(n[:-5])}
    keys |= {n for n in names if KEY_RE.match(n)}
    entries = []
    for key in keys:
        path = os.path.join(cache_dir, key)
        meta = read_metadata(path) or {}
        complete = entry_state(path) is not None
        try:
            st = os.stat(path)
            size, created = st.st_size, st.st_mtime
        except OSError:
            size, created = meta.get("size"), meta.get("created") or 0.0
        try:
            last_used = os.stat(path + ".json").st_mtime
        except OSError:
            last_used = created
        extracted = path + EXTRACTED_SUFFIX
        entries.append(CacheEntry(key=key, path=path, url=meta.get("url"), etag=meta.get("etag"),
                                  size=size, last_used=last_used, created=created,
                                  complete=complete, sha256=meta.get("sha256"),
                                  extracted=extracted if os.path.isdir(extracted) else None))
    entries.sort(key=lambda e: e.last_used, reverse=True)
    return entries


def select_entries(items, cache_dir=None):
    """Entries matching each item: a key, a key prefix (≥ 8 hex), a URL, or a model name."""
    entries = list_entries(cache_dir)
    chosen, missing = {}, []
    for item in items:
        url_hash = url_to_filename(item)
        hits = [e for e in entries
                if e.key.startswith(url_hash) or e.url in (item, redact_url(item))
                or (len(item) >= 8 and re.fullmatch(r"[0-9a-f.]+", item) and e.key.startswith(item))]
        if not hits and "://" not in item:
            from .names import PRETRAINED_MODEL_ARCHIVE_MAP, model_archive_url, vocab_url
            if item in PRETRAINED_MODEL_ARCHIVE_MAP:
                urls = {model_archive_url(item), vocab_url(item)}
                hits = [e for e in entries if e.url in urls]
        if not hits:
            missing.append(item)
        for e in hits:
            chosen[e.key] = e
    if missing:
        raise CacheEntryNotFoundError(f"not in the cache {resolve_cache_dir(cache_dir)}: "
                                      f"{', '.join(map(shown_url, missing))} "
                                      "(see `bertconvert cache ls`)")
    return list(chosen.values())


def verify_entry(entry, progress=False):
    """``(ok, detail)``: recompute the entry's sha256 and compare with its metadata."""
    from .digests import hash_file

    if not entry.complete:
        return False, "incomplete (data or metadata missing, or size differs)"
    actual = hash_file(entry.path, ("sha256",), progress=progress)["sha256"]
    if entry.sha256 is None:
        return True, f"sha256 {actual} (no recorded sha256 to compare; 0.6.2 entry)"
    if actual != entry.sha256:
        return False, f"sha256 is {actual} but the metadata records {entry.sha256}"
    return True, f"sha256 {actual}"


def _remove_path(path):
    """Remove a file, or a directory by renaming it away first (readers never see half of it)."""
    if os.path.isdir(path) and not os.path.islink(path):
        doomed = temp_name_for(path) + ".old"
        os.rename(path, doomed)
        shutil.rmtree(doomed, ignore_errors=True)
    else:
        os.unlink(path)


def remove_entry(entry):
    """Delete an entry's data, metadata and extraction, and the temps a killed process left
    for it (its lock file stays). Returns the removed paths."""
    removed = []
    with entry_lock(entry.path):
        for p in (entry.path, entry.path + ".json", entry.path + EXTRACTED_SUFFIX):
            if os.path.lexists(p):
                try:
                    _remove_path(p)
                except OSError as e:
                    raise CacheError(f"cannot remove {p}: {e}") from e
                removed.append(p)
        removed += remove_leftovers(os.path.dirname(entry.path), {entry.key})
    return removed


def remove_leftovers(cache_dir=None, keys=None):
    """Delete the abandoned temps in ``cache_dir`` (of the entries ``keys`` only, when given):
    what killed downloads, metadata writes and extractions left. Returns the removed paths."""
    removed = []
    for item in leftovers(resolve_cache_dir(cache_dir), keys):
        if not item.abandoned:
            continue
        try:  # hidden names no reader looks at: deleted in place
            if os.path.isdir(item.path) and not os.path.islink(item.path):
                shutil.rmtree(item.path)
            else:
                os.unlink(item.path)
        except FileNotFoundError:
            continue  # another prune was faster
        except OSError as e:
            log.warning("could not remove the leftover %s: %s", item.path, e)
            continue
        removed.append(item.path)
    return removed


def remove_all(cache_dir=None):
    """``cache rm --all``: every entry, and every abandoned temp. Returns the removed paths."""
    removed = []
    for e in list_entries(cache_dir):
        removed += remove_entry(e)
    return removed + remove_leftovers(cache_dir)


def prune(cache_dir=None, *, max_size=None, older_than=None, dry_run=False):
    """Remove garbage, entries unused for ``older_than`` seconds, then least-recently-used
    entries until the cache takes at most ``max_size`` bytes. Returns the removed paths."""
    cache_dir = resolve_cache_dir(cache_dir)
    if not _cache_names(cache_dir):  # missing or empty; not a directory: CacheError
        return []
    now = time.time()
    doomed_paths = [item.path for item in leftovers(cache_dir) if item.abandoned]
    entries = list_entries(cache_dir)
    doomed = [e for e in entries if not e.complete and now - e.created > 60]
    keep = [e for e in entries if e not in doomed]
    if older_than is not None:
        doomed += [e for e in keep if now - e.last_used > older_than]
        keep = [e for e in keep if now - e.last_used <= older_than]
    if max_size is not None:
        counted = set()
        for e in entries:
            with contextlib.suppress(OSError):
                st = os.stat(e.path)
                counted.add((st.st_dev, st.st_ino))
        total = sum(e.disk_usage(counted) for e in keep)
        for e in sorted(keep, key=lambda e: e.last_used):  # least recently used first
            if total <= max_size:
                break
            doomed.append(e)
            total -= e.disk_usage(counted)
    if dry_run:
        return doomed_paths + [e.path for e in doomed]
    removed = remove_leftovers(cache_dir)
    for e in doomed:
        removed += remove_entry(e)
    return removed


def parse_size(text):
    """``"500M"``, ``"20G"``, ``"1.5GB"``, ``"1024"`` -> bytes (binary units), exactly, for
    any number of digits. Raises ValueError.

    >>> parse_size("1.5G")
    1610612736
    """
    from .limits import parse_size as parse
    return parse(str(text))


def parse_age(text):
    """``"30d"``, ``"12h"``, ``"2w"``, ``"90"`` (seconds) -> seconds. Raises ValueError
    (also for a number too large to be a float).

    >>> parse_age("2d")
    172800.0
    """
    from .limits import parse_seconds
    try:
        seconds = parse_seconds(str(text))
    except ValueError:
        raise ValueError(f"age {text!r} not understood; use e.g. 90s, 45m, 12h, 30d, 2w") from None
    if seconds == float("inf"):
        shown = text if len(str(text)) <= 24 else f"{str(text)[:20]}..."
        raise ValueError(f"age {shown!r} is too large; use e.g. 90s, 45m, 12h, 30d, 2w")
    return seconds
