"""Where outputs go: what ``--overwrite`` may replace, and what a failed write means.

The rule: bertconvert replaces only what a previous run of its own wrote. For ``convert``
that is a previous model directory -- one holding ``conversion.json``, or a config and a
weights file, and nothing a conversion does not write (an empty directory holds nothing to
lose). For ``export`` it is a previous checkpoint at the prefix and its side files, for the
legacy command a previous ``pytorch_model.bin``. Anything else -- a directory of other files,
a regular file, a link, the current directory or one above it, the home directory, ``/`` --
is refused with :class:`~bertconvert.errors.OutputNotReplaceableError` (exit 2), whatever
the flags, before anything is changed. Messages name the path as the user typed it.
"""
import errno
import functools
import json
import os
import stat

from ..atomic import temp_target
from ..checkpoint.table import FOOTER_SIZE, MAGIC
from ..errors import (OutputExistsError, OutputNotReplaceableError, OutputWriteError,
                      UnsupportedURLError, option)
from ..layout import (CONFIG_NAME, CONFIG_NAMES, GOOGLE_CONFIG_NAME, OPTIMIZER_NAME, PYTORCH_NAME,
                      REPORT_NAME, SAFETENSORS_NAME, TOKENIZER_CONFIG_NAME, VOCAB_NAME)
from ..safeio import MAX_JSON_BYTES, file_kind, read_regular_file

#: Every file a conversion writes into its model directory (``--optimizer-state`` included),
#: and nothing else.
MODEL_DIR_FILES = frozenset((CONFIG_NAME, GOOGLE_CONFIG_NAME, SAFETENSORS_NAME, PYTORCH_NAME,
                             VOCAB_NAME, TOKENIZER_CONFIG_NAME, REPORT_NAME, OPTIMIZER_NAME))
_WEIGHT_FILES = (SAFETENSORS_NAME, PYTORCH_NAME)
#: How many foreign entries a refusal lists before "... (N more)".
_SHOWN = 5


def _refuse(message):
    raise OutputNotReplaceableError(f"{message}; nothing was changed")


def _describe(path, st):
    """A few words for what a non-directory entry is."""
    if stat.S_ISLNK(st.st_mode):
        return f"a symbolic link (to {os.readlink(path)})"
    if stat.S_ISREG(st.st_mode):
        return "a regular file"
    if stat.S_ISDIR(st.st_mode):
        return "a directory"
    return file_kind(st.st_mode) or "a special file"


def _same(a, b):
    try:
        return os.path.samestat(os.stat(a), os.stat(b))
    except OSError:
        return False


def _encloses(directory, path):
    """Whether ``directory`` is ``path`` or one of its ancestors (by identity, so bind mounts
    and other spellings count)."""
    path = os.path.realpath(path)
    while True:
        if _same(directory, path):
            return True
        parent = os.path.dirname(path)
        if parent == path:
            return False
        path = parent


def protected_reason(path):
    """Why the existing directory ``path`` must never be replaced (the current directory or
    one above it, the home directory or one above it, the root), or None."""
    cwd = os.getcwd()
    if _same(path, cwd):
        return "is the current directory"
    if _encloses(path, cwd):
        return f"is a directory above the current directory ({cwd})"
    if os.path.dirname(os.path.realpath(path)) == os.path.realpath(path):
        return "is the root directory"
    home = os.path.expanduser("~")
    if home != "~" and _same(path, home):
        return "is your home directory"
    if home != "~" and _encloses(path, home):
        return f"is a directory above your home directory ({home})"
    return None


def _listing(names):
    shown = ", ".join(names[:_SHOWN])
    return shown + (f" ... ({len(names) - _SHOWN} more)" if len(names) > _SHOWN else "")


def _entry_is_ours(directory, entry):
    """A regular file a conversion writes (or our temp name for one)."""
    name = temp_target(entry) or entry
    if name not in MODEL_DIR_FILES:
        return False
    try:
        return stat.S_ISREG(os.lstat(os.path.join(directory, entry)).st_mode)
    except OSError:  # gone meanwhile, or unreadable: not known to be ours
        return False


def check_replaceable_model_dir(path, given=None, flag="--out", keyword="out_dir"):
    """Raise :class:`OutputNotReplaceableError` unless the existing ``path`` is a previous
    model directory (see the module docstring), or an empty one that is not protected.

    ``given`` is ``path`` as the user spelt it, for the message; ``flag``/``keyword`` name
    the option. Symbolic links are refused: replacing one must not empty its target.
    """
    given = os.fspath(path) if given is None else os.fspath(given)
    name, hint = f"{option(flag, keyword)} {given}", option(flag, keyword)
    new = os.path.join(given, "bert-model")
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return  # nothing there (any more): nothing to replace
    if stat.S_ISLNK(st.st_mode):
        _refuse(f"{name} is {_describe(path, st)}; {option('--overwrite', 'overwrite=True')} "
                f"never replaces a link or what it points to. Give {hint} the directory itself "
                "or a new path")
    if not stat.S_ISDIR(st.st_mode):
        _refuse(f"{name} is {_describe(path, st)}, not a previous model directory, the only "
                f"thing {option('--overwrite', 'overwrite=True')} replaces. Choose a new "
                f"{hint} path")
    why = protected_reason(path)
    if why:
        _refuse(f"{name} {why}; {option('--overwrite', 'overwrite=True')} never replaces it. "
                f"Give {hint} a new directory, e.g. {new}")
    try:
        entries = sorted(os.listdir(path))
    except OSError as e:
        _refuse(f"{name} cannot be listed ({e.strerror}), so what it holds is unknown and "
                f"{option('--overwrite', 'overwrite=True')} does not replace it. Give {hint} "
                "a new directory")
    foreign = [e + ("/" if os.path.isdir(os.path.join(path, e))
                    and not os.path.islink(os.path.join(path, e)) else "")
               for e in entries if not _entry_is_ours(path, e)]
    if foreign:
        _refuse(f"{name} holds files a conversion does not write: {_listing(foreign)}; "
                f"{option('--overwrite', 'overwrite=True')} replaces only a previous model "
                f"directory. Give {hint} a new directory, e.g. {new}")
    if entries and REPORT_NAME not in entries and not (
            any(c in entries for c in CONFIG_NAMES) and any(w in entries for w in _WEIGHT_FILES)):
        _refuse(f"{name} is not a previous model directory (it holds {_listing(entries)}, but "
                f"no {REPORT_NAME} and no config with a weights file); "
                f"{option('--overwrite', 'overwrite=True')} replaces only those. Give {hint} a "
                f"new directory, e.g. {new}")


def check_model_dir_output(out_dir, given, overwrite):
    """Before any work: refuse an existing ``out_dir`` that is not a previous model directory
    (whatever ``overwrite`` says), or any existing one without ``overwrite``. Returns the
    ``may_replace`` check for :func:`~bertconvert.atomic.atomic_directory`, which repeats it
    just before the swap. ``given`` is ``out_dir`` as the user spelt it."""
    may_replace = functools.partial(check_replaceable_model_dir, given=given)
    if os.path.lexists(out_dir):
        may_replace(out_dir)
        if not overwrite:  # said before any work, with the path as the caller gave it
            what = "a previous model directory" if os.listdir(out_dir) else "empty"
            raise OutputExistsError(f"{option('--out', 'out_dir')} {given} already exists "
                                    f"({what}); pass "
                                    f"{option('--overwrite', 'overwrite=True')} to replace it")
    return may_replace


def _kind_problem(path, kind):
    """Why the existing file ``path`` is not a previous output of ``kind`` ("index", "data",
    "config", "vocab", "state dict"), or None."""
    st = os.lstat(path)
    if not stat.S_ISREG(st.st_mode):
        return f"is {_describe(path, st)}"
    if kind == "index":
        magic = None
        if st.st_size >= FOOTER_SIZE:
            with open(path, "rb") as f:
                f.seek(-8, os.SEEK_END)
                magic = int.from_bytes(f.read(8), "little")
        if magic != MAGIC:
            return "is not a TensorFlow checkpoint index"
    elif kind == "config":
        try:
            data = json.loads(read_regular_file(path, MAX_JSON_BYTES, ValueError, "config"))
        except (ValueError, OSError, RecursionError):
            data = None
        if not isinstance(data, dict):
            return "is not a JSON config"
    elif kind == "state dict" and st.st_size:
        with open(path, "rb") as f:
            head = f.read(4)
        # torch.save's zip archive, or the legacy pickle format (protocol 2 and up)
        if head != b"PK\x03\x04" and head[:1] != b"\x80":
            return "is not a PyTorch state dict (a zip archive or pickle)"
    return None


def check_replaceable_files(files, given, flag, keyword, what):
    """Raise :class:`OutputNotReplaceableError` if one of ``files`` (``[(path, kind)]``, see
    :func:`_kind_problem`) exists but is not what a previous ``what`` wrote there. ``given``
    is the output as the user typed it (the export prefix, the legacy output file)."""
    for path, kind in files:
        if not os.path.lexists(path):
            continue
        try:
            problem = _kind_problem(path, kind)
        except OSError as e:
            problem = f"cannot be read ({e.strerror})"
        if problem:
            which = "" if os.fspath(path) == os.fspath(given) else \
                f": {path}, which it would write,"
            _refuse(f"{option(flag, keyword)} {given}{which} {problem}; bertconvert "
                    f"replaces only what a previous {what} wrote there. Choose another "
                    f"{option(flag, keyword)}")


def check_local_output(output, flag, keyword, what):
    """Refuse a URL as the output of a command that writes local files only (``export``,
    the legacy command): it would otherwise become a local folder named ``s3:`` or ``https:``
    while the summary showed the URL, as if uploaded."""
    text = os.fspath(output) if isinstance(output, (str, os.PathLike)) else None
    if isinstance(text, str) and "://" in text:
        from ..cache.redact import shown_url

        raise UnsupportedURLError(
            f"{option(flag, keyword)} '{shown_url(text)}' is a URL, but {what} writes local "
            f"files only; give a local path (and upload the files yourself)")


def check_export_prefix(prefix):
    """Refuse a checkpoint prefix that names no file stem: empty basename, ``.``, ``..`` or
    an existing directory (files named ``..index`` would appear)."""
    base = os.path.basename(os.fspath(prefix))
    if base in ("", ".", "..") or os.path.isdir(prefix):
        what = "is a directory" if os.path.isdir(prefix) else "names no file"
        example = os.path.join(os.fspath(prefix) if os.path.isdir(prefix) else "DIR",
                               "bert_model.ckpt")
        raise OutputNotReplaceableError(
            f"{option('--out', 'prefix')} {prefix} {what}: a checkpoint prefix is the start of "
            f"file names (PREFIX.index, PREFIX.data-00000-of-00001). Give a prefix like "
            f"{example}")


#: errno -> (what happened, what to do); only a full disk or quota talks about free space.
_WRITE_ERRORS = {
    errno.ENOSPC: ("the disk is full", "Free space or choose another {flag}"),
    errno.EDQUOT: ("the disk quota is exceeded", "Free space (or raise the quota) or choose "
                                                 "another {flag}"),
    errno.EFBIG: ("a file grew past the size limit (the file system's, or ulimit -f)",
                  "Raise the limit or choose another {flag}"),
    errno.EROFS: ("the file system is read-only", "Choose a {flag} on a writable file system"),
    errno.EACCES: ("permission was denied", "Choose a {flag} you may write, or fix the "
                                            "permissions of its directory"),
    errno.EPERM: ("the operation is not permitted there", "Choose a {flag} in an ordinary "
                                                          "directory you may write"),
    errno.ENOENT: ("a directory on its path does not exist or does not allow new files "
                   "(as in /proc or /sys)", "Choose a {flag} in an ordinary directory"),
    errno.ENOTDIR: ("a part of its path is not a directory", "Choose a {flag} whose parents "
                                                             "are directories"),
    errno.ENAMETOOLONG: ("the name is too long for the file system",
                         "Choose a shorter {flag}"),
    errno.EBUSY: ("the path is busy (a mount point, or in use by the system)",
                  "Choose another {flag}"),
    errno.EEXIST: ("something else was created at that path meanwhile",
                   "Run again, or choose another {flag}"),
    errno.EINVAL: ("the file system refused the name or the operation (invalid argument)",
                   "Choose a {flag} on an ordinary file system, with a plain name"),
    errno.ELOOP: ("its path has too many levels of symbolic links", "Choose another {flag}"),
    errno.EIO: ("the device reported an I/O error", "Check the device, or choose another "
                                                    "{flag}"),
}


def write_error(e, target, flag="--out", keyword="out_dir", error=OutputWriteError):
    """The named error for OSError ``e`` raised while writing ``target``: one accurate line
    per errno, so that only a full disk or quota is reported as a space problem."""
    words, advice = _WRITE_ERRORS.get(e.errno, (None, "Choose another {flag}"))
    detail = e.strerror or str(e)
    if e.filename is not None and not temp_target(os.path.basename(os.fspath(e.filename))):
        detail += f": {e.filename}"  # (our temp names mean nothing to the user)
    what = f"{words} ({detail})" if words else detail
    return error(f"writing {target} failed: {what}; nothing was published there. "
                 f"{advice.format(flag=option(flag, keyword))}, then run again")
