"""Cross-process coordination for the weight cache: entry locks and partial downloads.

``<key>.lock`` (filelock, kept on disk) makes concurrent fetches of one entry wait for the
first instead of downloading N times. It is an optimisation only: where the lock cannot be
created or does nothing (NFS), the atomic commit in :mod:`bertconvert.cache.download` still keeps the
cache correct.

A download writes ``.<key>.part-<host>-<pid>-<rand>`` in the cache directory. A later
fetch adopts (renames to its own name) a partial whose writer is gone — dead pid on this
host, or no writes for :data:`STALE_PARTIAL_SECONDS` from another host — and resumes it.
"""
import contextlib
import logging
import os
import re
import socket
import threading
import time
import uuid

log = logging.getLogger(__name__)

ENV_LOCK_TIMEOUT = "BERTCONVERT_LOCK_TIMEOUT"
DEFAULT_LOCK_TIMEOUT = 1800.0
PARTIAL_MARKER = ".part-"
#: A partial file from another host is considered abandoned after this long without writes.
STALE_PARTIAL_SECONDS = 600

_HOST = re.sub(r"[^A-Za-z0-9.]", "_", socket.gethostname() or "host")
# Partial files this process is writing right now (threads of one process share a pid).
_ACTIVE_PARTIALS = set()
_ACTIVE_LOCK = threading.Lock()


@contextlib.contextmanager
def entry_lock(data_path):
    """Hold ``<key>.lock`` (filelock) while the block runs; yields whether it is really held.

    If the lock file cannot be created (read-only directory, odd filesystem) or the wait
    exceeds ``BERTCONVERT_LOCK_TIMEOUT`` seconds (default 1800; ``0``: do not wait), we go
    on without it: the atomic commit keeps the cache correct, we only risk a duplicate
    download. A value that is not a finite duration of zero or more (``nan``, ``-1``,
    ``soon``) is CacheSettingError naming the variable, whether or not the lock is taken.
    """
    from filelock import FileLock, Timeout

    from .limits import setting

    timeout = setting("lock_timeout", None, ENV_LOCK_TIMEOUT, DEFAULT_LOCK_TIMEOUT, "seconds",
                      allow_zero=True)
    lock = FileLock(data_path + ".lock")
    held = False
    try:
        try:
            lock.acquire(timeout=0)
        except Timeout:
            log.info("another process is fetching %s; waiting for it", os.path.basename(data_path))
            lock.acquire(timeout=timeout)
        held = True
    except Timeout:
        log.warning("waited %.0fs for %s.lock; continuing without the lock", timeout, data_path)
    except OSError as e:
        log.warning("cannot use lock file %s.lock (%s); continuing without a lock", data_path, e)
    try:
        yield held
    finally:
        if held:
            lock.release()


def _pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # an unreaped zombie still answers kill(0) but writes nothing any more
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[-1].split()[0] != b"Z"
    except (OSError, IndexError):
        return True


def _partial_abandoned(entry, prefix):
    host, _, rest = entry.name[len(prefix):].rpartition("-")[0].rpartition("-")
    try:
        pid = int(rest)
    except ValueError:
        return False
    if host == _HOST:
        if pid == os.getpid():  # ours: abandoned unless a thread of ours is writing it now
            with _ACTIVE_LOCK:
                return entry.path not in _ACTIVE_PARTIALS
        return not _pid_alive(pid)
    try:
        return time.time() - entry.stat().st_mtime > STALE_PARTIAL_SECONDS
    except OSError:
        return False


def _claim_partial(data_path, resumable):
    """A fresh unique temp name for this download, plus the bytes adopted from an abandoned one.

    Abandoned partials of this key (owner dead, or stale on another host) are renamed to our
    name — rename is atomic, so two claimants cannot both get one — or deleted when we
    cannot resume. Returns ``(temp_path, adopted_size)``.
    """
    directory, key = os.path.split(data_path)
    prefix = f".{key}{PARTIAL_MARKER}"
    mine = os.path.join(directory, f"{prefix}{_HOST}-{os.getpid()}-{uuid.uuid4().hex[:12]}")
    found = []
    with contextlib.suppress(OSError):
        for entry in os.scandir(directory):
            if entry.name.startswith(prefix) and _partial_abandoned(entry, prefix):
                with contextlib.suppress(OSError):
                    found.append((entry.stat().st_size, entry.path))
    found.sort(reverse=True)
    with _ACTIVE_LOCK:
        _ACTIVE_PARTIALS.add(mine)
    adopted = 0
    for i, (size, path) in enumerate(found):
        if i == 0 and resumable and size > 0:
            try:
                os.rename(path, mine)
                adopted = size
                log.info("resuming %s from byte %d (left by an interrupted download)", key[:16], size)
                continue
            except OSError:
                pass
        with contextlib.suppress(OSError):
            os.unlink(path)
    return mine, adopted


def _release_partial(tmp):
    with _ACTIVE_LOCK:
        _ACTIVE_PARTIALS.discard(tmp)
