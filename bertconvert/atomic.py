"""Publish files and directories atomically: write under a unique temporary name beside the
destination, flush and fsync, then ``os.replace``. Readers see the old state or the new one,
never a half-written file, and a crash leaves only a hidden temp name that no reader looks for.

Example::

    with atomic_write("out/model.safetensors") as f:
        f.write(payload)

    with atomic_directory("out/model", overwrite=True) as tmp:
        write_everything_into(tmp)      # published as out/model only if this returns
"""
import contextlib
import contextvars
import ctypes
import errno
import logging
import os
import re
import shutil
import signal
import socket
import threading
import uuid

from .errors import OutputExistsError, UnsafeOutputError, option

logger = logging.getLogger(__name__)

TEMP_MARKER = ".tmp-"
#: Our temp names: ``.{name}.tmp-{pid}-{12 hex}@{host}``, plus ``.old`` for a directory being
#: swapped out. Names written before the host part was added (``.{name}.tmp-{pid}-{hex}``)
#: still match; they are taken to be from this host.
_TEMP_RE = re.compile(r"\.(?P<name>.+)\.tmp-(?P<pid>\d+)-[0-9a-f]{12}"
                      r"(?:@(?P<host>[A-Za-z0-9.-]+?))?(?P<old>\.old)?")


#: The signals that stop a command on purpose: Ctrl-C, and a supervisor's polite kill.
INTERRUPT_SIGNALS = (signal.SIGINT, signal.SIGTERM)
_publish_listeners = []
_ELSEWHERE = contextvars.ContextVar("bertconvert_publish_elsewhere", default=False)
#: The files of a :func:`published_together` block: renames and removals held until its end.
_STAGE = contextvars.ContextVar("bertconvert_publish_stage", default=None)


@contextlib.contextmanager
def interrupts_deferred():
    """SIGINT and SIGTERM that arrive within the block are raised again when it ends: publishing
    renames and cleanups run in one, so no interrupt lands between two renames. Off the main
    thread (where Python runs no signal handlers) a no-op."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught = []  # (a handler set outside Python cannot be restored: left alone; so is SIG_IGN)
    previous = {sig: signal.signal(sig, lambda signum, frame: caught.append(signum))
                for sig in INTERRUPT_SIGNALS if signal.getsignal(sig) not in (None, signal.SIG_IGN)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        for sig in dict.fromkeys(caught):
            signal.raise_signal(sig)


@contextlib.contextmanager
def on_publish(callback):
    """Within the block, call ``callback()`` when a command's final output is published
    (:func:`atomic_directory`, :func:`published_together`): the CLI's cue to ignore interrupts."""
    _publish_listeners.append(callback)
    try:
        yield
    finally:
        _publish_listeners.remove(callback)


def announce_published():
    """Tell the :func:`on_publish` listeners that the final output is published (also for
    one published by other means: an S3 prefix's ``conversion.json``)."""
    for callback in ([] if _ELSEWHERE.get() else list(_publish_listeners)):
        callback()


@contextlib.contextmanager
def publishing_elsewhere():
    """What is published within the block is a step towards an output published elsewhere
    (built locally, then uploaded): not announced, so an interrupt still stops the command."""
    token = _ELSEWHERE.set(True)
    try:
        yield
    finally:
        _ELSEWHERE.reset(token)


@contextlib.contextmanager
def published_together():
    """Files that :func:`atomic_write` / :func:`atomic_path` finish in the block are renamed
    into place together at its end, interrupts deferred, as one final output (:func:`on_publish`).
    If the block fails, their temp files are removed and no destination changes."""
    stage = {"renames": [], "removals": []}
    token, pending = _STAGE.set(stage), stage["renames"]
    try:
        try:
            yield
        finally:
            _STAGE.reset(token)
        with interrupts_deferred():
            directories = {os.path.dirname(os.path.abspath(p)) for _, p, sync in pending if sync}
            _discard(stage["removals"])
            while pending:
                os.replace(*pending[0][:2])
                pending.pop(0)
            for directory in directories:
                fsync_directory(directory)
            announce_published()
    except BaseException:
        with interrupts_deferred():
            _discard(tmp for tmp, _, _ in pending)
        raise


def _discard(paths):
    for path in paths:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)


def remove_before_publish(path):
    """Remove ``path`` now, or inside :func:`published_together` just before its renames."""
    stage = _STAGE.get()
    if stage is not None:
        stage["removals"].append(os.fspath(path))
    else:
        _discard([path])


def _host_tag():
    """This host's name as it may appear in a file name (what NFS clients share)."""
    return re.sub(r"[^A-Za-z0-9.-]", "-", socket.gethostname()) or "localhost"


def current_umask():
    """The process umask (read without changing it for good), for group-usable outputs."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


def temp_name_for(path):
    """A unique hidden name in the directory of ``path`` (same filesystem: rename is atomic)."""
    directory, name = os.path.split(os.path.abspath(path))
    return os.path.join(directory, f".{name}{TEMP_MARKER}{os.getpid()}-{uuid.uuid4().hex[:12]}"
                                   f"@{_host_tag()}")


def temp_target(entry):
    """The destination name that ``entry`` is one of our temp names for, or None."""
    m = _TEMP_RE.fullmatch(entry)
    return m.group("name") if m else None


def _pid_alive(pid):
    """Whether process ``pid`` exists on this host (a zombie counts as alive)."""
    if pid <= 0:
        return True  # not a real owner: never treat as dead
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True  # someone else's process (or an absurd number): leave it alone
    return True


def remove_stale_temps(path):
    """Remove temp files and directories that an earlier, killed writer of ``path`` left
    beside it (a kill -9 mid-conversion leaves up to a model's size there); returns them.

    Only our own names for this very destination are considered, and only those whose owner
    process is gone: written on this host (a name without a host part is assumed to be) by a
    PID that no longer exists here. A process that is alive, or merely reuses the PID, keeps
    its files. A stale ``.old`` directory -- the previous output, caught mid-swap -- is
    removed only when ``path`` exists again; otherwise it may be the only copy, and is kept.
    """
    directory, name = os.path.split(os.path.abspath(os.fspath(path)))
    try:
        entries = os.listdir(directory)
    except OSError:
        return []
    here, removed = _host_tag(), []
    for entry in entries:
        m = _TEMP_RE.fullmatch(entry)
        if not m or m.group("name") != name:
            continue
        if (m.group("host") or here) != here or _pid_alive(int(m.group("pid"))):
            continue
        if m.group("old") and not os.path.lexists(path):
            logger.warning("%s holds the previous %s from an interrupted replacement; it is "
                           "left in place", entry, name)
            continue
        victim = os.path.join(directory, entry)
        try:
            if os.path.isdir(victim) and not os.path.islink(victim):
                shutil.rmtree(victim)
            else:
                os.unlink(victim)
        except OSError as e:  # someone else cleaned it, or we may not: not our problem now
            logger.debug("could not remove stale %s: %s", victim, e)
            continue
        logger.info("removed %s, left by process %s that no longer exists", victim, m.group("pid"))
        removed.append(victim)
    return removed


def check_output_spares_inputs(output, inputs, flag="--out", keyword="out", what=None):
    """Refuse an output path that would destroy an input: empty (it would mean the current
    directory), or one that is, contains, or lies inside one of the ``inputs`` files.

    Paths are compared after resolving symbolic links (and by device and inode where both
    exist, for hard links and bind mounts). Raises :class:`UnsafeOutputError` before anything
    is written; ``flag``/``keyword`` name the option in the message, ``what`` (default
    "FLAG OUTPUT") the output, e.g. a file written beside the one the user named.
    """
    name = option(flag, keyword)
    if output is None or os.fspath(output) == "":
        raise UnsafeOutputError(f"{name} is empty; an empty path would mean the current "
                                f"directory. Give {name} the path to write")
    out = os.path.realpath(os.fspath(output))
    out_id = _file_id(out)
    for source in inputs:
        if source is None:
            continue
        src = os.path.realpath(os.fspath(source))
        if src == out or (out_id is not None and _file_id(src) == out_id):
            relation = "is the input file"
        elif out.startswith(src.rstrip(os.sep) + os.sep):
            relation = "lies inside the input file"
        elif _has_ancestor(src, out, out_id):
            relation = "contains the input file"
        else:
            continue
        raise UnsafeOutputError(
            f"{what or name + ' ' + os.fspath(output)} {relation} {source}; writing there "
            f"would replace or delete the input. Choose {name} outside the input's files "
            "and directory")


def _file_id(path):
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino


def _has_ancestor(path, ancestor, ancestor_id):
    """Whether ``ancestor`` is a directory above ``path`` (by name, or by identity)."""
    if path.startswith(ancestor.rstrip(os.sep) + os.sep):
        return True
    if ancestor_id is None:
        return False
    parent = os.path.dirname(path)
    while True:
        if _file_id(parent) == ancestor_id:
            return True
        up = os.path.dirname(parent)
        if up == parent:
            return False
        parent = up


def fsync_directory(directory):
    """Make a rename inside ``directory`` durable (a no-op where directories cannot be opened)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_write(path, mode="wb", fsync=True, direct=False):
    """Open a temp file beside ``path``; on success fsync and rename it onto ``path``.

    On any exception the temp file is removed and ``path`` is untouched. The file gets the
    usual ``0o666 & ~umask`` permissions (mkstemp alone would make it private).
    ``direct=True`` (binary mode only) yields an append-only
    :class:`~bertconvert.directio.DirectFile`: for big files written once, in order.
    """
    if "w" not in mode and "x" not in mode:
        raise ValueError("atomic_write needs a write mode")
    if direct and "b" not in mode:
        raise ValueError("atomic_write(direct=True) needs a binary mode")
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    tmp = temp_name_for(path)
    f = None
    try:  # created inside: an interrupt right after the file exists still removes it
        if direct:
            from .directio import DirectFile

            f = DirectFile(tmp, "x")
        else:
            f = open(tmp, mode.replace("x", "w"), encoding=None if "b" in mode else "utf-8")
        yield f
        f.flush()
        if fsync:
            os.fsync(f.fileno())
        f.close()
        _publish(tmp, path, fsync)
    except BaseException:
        with interrupts_deferred():
            if f is not None and direct:
                f.abort()  # the file is discarded: do not write what is still staged
            elif f is not None:
                f.close()
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
        raise


def _publish(tmp, path, fsync):
    """Give the finished temp file ``tmp`` the usual permissions and rename it onto ``path``
    (inside :func:`published_together`: at the end of that block)."""
    os.chmod(tmp, 0o666 & ~current_umask())
    stage = _STAGE.get()
    if stage is not None:
        stage["renames"].append((tmp, path, fsync))
        return
    with interrupts_deferred():
        os.replace(tmp, path)
    if fsync:
        fsync_directory(os.path.dirname(os.path.abspath(path)))


@contextlib.contextmanager
def atomic_path(path, fsync=True):
    """Yield a temp path beside ``path`` for a writer that wants a path, not a file object
    (``safetensors.save_file``, ``torch.save``); on success the file written there is
    fsynced and renamed onto ``path``, as :func:`atomic_write` does. On any exception it is
    removed and ``path`` is untouched.
    """
    path = os.fspath(path)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = temp_name_for(path)
    try:
        yield tmp
        if fsync:
            with open(tmp, "rb") as f:
                os.fsync(f.fileno())
        _publish(tmp, path, fsync)
    except BaseException:
        with interrupts_deferred(), contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def atomic_directory(path, overwrite=False, may_replace=None):
    """Yield a fresh temp directory that becomes ``path`` when the block succeeds.

    An existing ``path`` raises OutputExistsError up front unless ``overwrite``; with it, the
    old directory is swapped out once the new one is complete, if ``may_replace(path)`` (up
    front and again just before) raises nothing. The swap is one ``renameat2(RENAME_EXCHANGE)``
    where available, else two renames, interrupts deferred: ``path`` is never left absent.
    On failure the temp directory is removed and nothing at ``path`` changes.
    """
    path = os.path.abspath(os.fspath(path))
    if os.path.lexists(path):
        if not overwrite:
            raise OutputExistsError(f"output {path} already exists; pass "
                                    f"{option('--overwrite', 'overwrite=True')} to replace it")
        if may_replace is not None:
            may_replace(path)
    parent = os.path.dirname(path)
    os.makedirs(parent, exist_ok=True)
    remove_stale_temps(path)  # what killed runs to the same output left behind
    tmp = temp_name_for(path)
    try:  # created inside: an interrupt right after mkdir still removes it
        os.mkdir(tmp)
        os.chmod(tmp, 0o777 & ~current_umask())
        yield tmp
        with interrupts_deferred():
            _swap_into_place(tmp, path, overwrite, may_replace)
            announce_published()
    except BaseException:
        with interrupts_deferred():
            shutil.rmtree(tmp, ignore_errors=True)
        raise


def _swap_into_place(tmp, path, overwrite, may_replace):
    """Rename the finished directory ``tmp`` to ``path``, replacing what is there (see
    :func:`atomic_directory`); the old output is removed afterwards."""
    if not os.path.lexists(path):
        os.rename(tmp, path)
        fsync_directory(os.path.dirname(path))
        return
    if not overwrite:
        raise OutputExistsError(f"output {path} appeared while writing; not replacing it")
    if may_replace is not None:
        may_replace(path)  # it may have changed while we wrote
    if exchange_paths(tmp, path):
        old = tmp  # the previous output now has the temp name
    else:
        old = temp_name_for(path) + ".old"
        os.rename(path, old)
        try:
            os.rename(tmp, path)
        except BaseException:
            os.rename(old, path)  # put the previous output back
            raise
    fsync_directory(os.path.dirname(path))
    if os.path.isdir(old) and not os.path.islink(old):
        shutil.rmtree(old, ignore_errors=True)
    else:
        _discard([old])


_AT_FDCWD = -100
_RENAME_EXCHANGE = 2
_renameat2 = None


def exchange_paths(a, b):
    """Swap entries ``a`` and ``b`` atomically (Linux ``renameat2(RENAME_EXCHANGE)``; links are
    swapped, not followed). False, nothing changed, where libc or the filesystem lacks it."""
    global _renameat2
    if _renameat2 is None:
        try:
            _renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
            _renameat2.argtypes = (ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p,
                                   ctypes.c_uint)
        except (AttributeError, OSError):  # not glibc >= 2.28 / not Linux
            _renameat2 = False
    if _renameat2 is False:
        return False
    if _renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP):
        return False  # an old kernel, or a filesystem without the flag
    raise OSError(err, os.strerror(err), a, None, b)

