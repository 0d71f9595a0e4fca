"""The temporary names the cache makes, and which of them a killed process left over.

Everything written before a commit is hidden beside its entry ``<key>``:

* ``.<key>.part-<host>-<pid>-<rand>``: a download (:mod:`.locks`; resumed by the next fetch);
* ``.<key>.json.tmp-<pid>-<hex>@<host>``: metadata being written (:func:`~bertconvert.atomic.
  atomic_write`);
* ``.<key>-extracted.tmp-<pid>-<hex>@<host>``: an extraction being filled (:mod:`.archives`),
  and ``...@<host>.old``: an extraction being deleted (:mod:`.admin`);
* ``.<key>-extracted.tmp-<8 letters>``: an extraction by a version that did not name the owner.

:func:`leftovers` finds them all and says which are abandoned: the owner is a process of
this host that no longer exists; or the name has no owner we can ask (another host, an old
name) and it was not touched for :data:`GRACE_SECONDS`; or, whatever its owner, it was not
touched for :data:`OWNED_GRACE_SECONDS` (a reused pid must not keep a dead process's files
forever). Lock files ``<key>.lock`` are
not temps and stay: deleting one that a process waits on would let two holders in.
"""
import logging
import os
import re
import time
from dataclasses import dataclass

from ..atomic import TEMP_MARKER, temp_name_for
from .entries import EXTRACTED_SUFFIX, KEY_RE
from .locks import PARTIAL_MARKER, _partial_abandoned

log = logging.getLogger(__name__)

#: A temp whose owner cannot be asked is abandoned after this long without changes (writing
#: metadata takes milliseconds, extracting a model archive a minute at most).
GRACE_SECONDS = 3600
#: ... and one whose owner seems alive (its pid may have been reused) after this long.
OWNED_GRACE_SECONDS = 24 * 3600

#: atomic's temp names: ``.{name}.tmp-{pid}-{12 hex}@{host}[.old]``; mkdtemp's: 8 characters.
_OWNED = re.compile(r"\.(?P<name>.+?)" + re.escape(TEMP_MARKER) +
                    r"(?P<pid>\d+)-[0-9a-f]{12}(?:@(?P<host>[A-Za-z0-9.-]+?))?(?:\.old)?")
_ANONYMOUS = re.compile(r"\.(?P<name>.+?)" + re.escape(TEMP_MARKER) + r"[a-z0-9_]{8}")
#: This host as atomic's temp names spell it.
_HOST = temp_name_for("x").rpartition("@")[2]


@dataclass
class Leftover:
    """One temporary name in the cache directory."""

    path: str
    key: str          # the entry it belongs to
    abandoned: bool   # safe to delete: no live process writes it


def _key_of(name):
    """The entry key a temp's base name (``<key>``, ``<key>.json``, ``<key>-extracted``)
    belongs to, or None when it is not one of the cache's names."""
    for suffix in (".json", EXTRACTED_SUFFIX, ""):
        if name.endswith(suffix):
            key = name[:len(name) - len(suffix)]
            if KEY_RE.match(key):
                return key
    return None


def _pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True
    return True


def _owned_abandoned(m, age):
    host, pid = m.group("host") or _HOST, int(m.group("pid"))
    if host != _HOST:
        return age > GRACE_SECONDS
    if pid != os.getpid() and pid > 0 and not _pid_alive(pid):
        return True
    return age > OWNED_GRACE_SECONDS  # alive, or ours (a thread may be writing it)


def classify(entry, now):
    """A :class:`Leftover` for the ``os.DirEntry`` ``entry``, or None when it is no temp."""
    name = entry.name
    if not name.startswith("."):
        return None
    try:
        age = now - entry.stat(follow_symlinks=False).st_mtime
    except OSError:
        return None
    if PARTIAL_MARKER in name:
        prefix = name[:name.index(PARTIAL_MARKER) + len(PARTIAL_MARKER)]
        key = _key_of(prefix[1:-len(PARTIAL_MARKER)])
        if key is None:
            return None
        return Leftover(entry.path, key, _partial_abandoned(entry, prefix) or age > GRACE_SECONDS)
    m = _OWNED.fullmatch(name)
    if m is not None and _key_of(m.group("name")):
        return Leftover(entry.path, _key_of(m.group("name")), _owned_abandoned(m, age))
    m = _ANONYMOUS.fullmatch(name)
    if m is not None and _key_of(m.group("name")):
        return Leftover(entry.path, _key_of(m.group("name")), age > GRACE_SECONDS)
    return None


def leftovers(cache_dir, keys=None):
    """Every temp name in ``cache_dir`` (of the entries ``keys`` only, when given)."""
    now = time.time()
    found = []
    try:
        entries = list(os.scandir(cache_dir))
    except OSError:
        return []
    for entry in entries:
        item = classify(entry, now)
        if item is not None and (keys is None or item.key in keys):
            found.append(item)
    return found
