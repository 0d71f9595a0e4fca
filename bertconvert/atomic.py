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
import os
import shutil
import tempfile
import uuid

from .errors import OutputExistsError

TEMP_MARKER = ".tmp-"


def current_umask():
    """The process umask (read without changing it for good), for group-usable outputs."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


def temp_name_for(path):
    """A unique hidden name in the directory of ``path`` (same filesystem: rename is atomic)."""
    directory, name = os.path.split(os.path.abspath(path))
    return os.path.join(directory, f".{name}{TEMP_MARKER}{os.getpid()}-{uuid.uuid4().hex[:12]}")


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
    if direct:
        from .directio import DirectFile

        f = DirectFile(tmp, "x")
    else:
        f = open(tmp, mode.replace("x", "w"), encoding=None if "b" in mode else "utf-8")
    try:
        yield f
        f.flush()
        if fsync:
            os.fsync(f.fileno())
        f.close()
        os.chmod(tmp, 0o666 & ~current_umask())
        os.replace(tmp, path)
        if fsync:
            fsync_directory(directory)
    except BaseException:
        if direct:
            f.abort()  # the file is discarded: do not write what is still staged
        else:
            f.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def atomic_directory(path, overwrite=False):
    """Yield a fresh temp directory that becomes ``path`` when the block succeeds.

    An existing ``path`` raises OutputExistsError up front unless ``overwrite``; with
    ``overwrite`` the old directory is swapped out only after the new one is complete.
    On failure the temp directory is removed and nothing at ``path`` changes.
    """
    path = os.path.abspath(os.fspath(path))
    if os.path.lexists(path) and not overwrite:
        raise OutputExistsError(f"output {path} already exists; pass --overwrite (overwrite=True) to replace it")
    parent = os.path.dirname(path)
    os.makedirs(parent, exist_ok=True)
    tmp = temp_name_for(path)
    os.mkdir(tmp)
    os.chmod(tmp, 0o777 & ~current_umask())
    try:
        yield tmp
        if os.path.lexists(path):
            if not overwrite:
                raise OutputExistsError(f"output {path} appeared while writing; not replacing it")
            old = temp_name_for(path) + ".old"
            os.rename(path, old)
            os.rename(tmp, path)
            if os.path.isdir(old) and not os.path.islink(old):
                shutil.rmtree(old, ignore_errors=True)
            else:
                os.unlink(old)
        else:
            os.rename(tmp, path)
        fsync_directory(parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def make_temp_dir_beside(path):
    """A unique temp directory next to ``path`` (for callers that rename it themselves)."""
    parent = os.path.dirname(os.path.abspath(path)) or "."
    os.makedirs(parent, exist_ok=True)
    return tempfile.mkdtemp(prefix=f".{os.path.basename(path)}{TEMP_MARKER}", dir=parent)
