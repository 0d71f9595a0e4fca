"""Reading small input files (configs, vocabularies, checkpoint indexes, shard maps) safely.

Every such file comes from the user, so it may be anything: a FIFO (a plain ``open`` then
waits forever for a writer), a link to ``/dev/zero`` (``read()`` never ends, then
MemoryError), a directory, a multi-gigabyte file where a few kilobytes were expected, or
JSON nested 100,000 levels deep (RecursionError in the parser). These helpers turn each of
those into the caller's named error before any unbounded work starts.
"""
import errno
import json
import math
import os
import stat

#: Upper bounds on what each kind of input may sensibly weigh. Real files are far smaller
#: (BERT-large's .index is ~20 KB, a 250k-token vocab.txt ~3 MB, a config with a million
#: labels ~60 MB); the bounds only stop reads that would never end or exhaust memory.
MAX_INDEX_BYTES = 1 << 30
MAX_JSON_BYTES = 256 << 20
MAX_VOCAB_BYTES = 1 << 30

_KINDS = ((stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISCHR, "a character device"),
          (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))


def file_kind(mode):
    """A few words naming what a non-regular ``st_mode`` is ("a FIFO (named pipe)"...)."""
    for test, words in _KINDS:
        if test(mode):
            return words
    return "not a regular file"


def read_regular_file(path, limit, error, what):
    """The bytes of ``path`` if it is (or links to) a regular file of at most ``limit`` bytes.

    ``error`` is the exception class raised for anything else (a FIFO, a device, a file
    over the limit), its message naming ``what`` the file was meant to be. A directory
    raises IsADirectoryError and a missing file FileNotFoundError, as ``open`` would, so
    callers keep their own messages for those. The file is opened without blocking (a
    FIFO with no writer would otherwise hang in ``open``) and checked with ``fstat`` on
    the opened descriptor, so a swap between the check and the read cannot slip past.
    """
    path = os.fspath(path)
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0)
    fd = os.open(path, flags)
    with os.fdopen(fd, "rb", buffering=0) as f:
        info = os.fstat(f.fileno())
        if stat.S_ISDIR(info.st_mode):
            raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), path)
        if not stat.S_ISREG(info.st_mode):
            raise error(f"{what} {path} is {file_kind(info.st_mode)}, not a regular file; "
                        "pass the path of the file itself")
        if info.st_size > limit:
            raise error(f"{what} {path} is {info.st_size} bytes, more than the {limit} bytes "
                        f"such a file can sensibly have; check that it is the right file")
        chunks, total = [], 0
        while total <= limit:  # read to EOF, but never past the limit (the file may grow)
            chunk = f.read(min(1 << 20, limit + 1 - total))
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
        if total > limit:
            raise error(f"{what} {path} grew past {limit} bytes while being read; check "
                        "that it is the right file")
        return b"".join(chunks)


def copy_regular_file(src, dst, limit, error, what):
    """Copy ``src`` to the new file ``dst`` if it is (or links to) a regular file of at most
    ``limit`` bytes, checked with ``fstat`` on the opened descriptor (as
    :func:`read_regular_file`); anything else raises ``error``. Streams in 1 MiB chunks and
    stops at the limit, should the file grow while it is copied. Returns the bytes copied."""
    src = os.fspath(src)
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0)
    with os.fdopen(os.open(src, flags), "rb", buffering=0) as f:
        info = os.fstat(f.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise error(f"{what} {src} is {file_kind(info.st_mode)}, not a regular file")
        if info.st_size > limit:
            raise error(f"{what} {src} is {info.st_size} bytes, more than the {limit} bytes "
                        f"such a file can sensibly have; check that it is the right file")
        total = 0
        with open(dst, "xb") as out:
            while True:
                chunk = f.read(min(1 << 20, limit + 1 - total))
                if not chunk:
                    return total
                total += len(chunk)
                if total > limit:
                    raise error(f"{what} {src} grew past {limit} bytes while being copied")
                out.write(chunk)


def _refuse_constant(name):
    raise ValueError(f"{name} is not valid JSON (only Python writes it); use a finite number")


def parse_json(text, error, what):
    """``json.loads(text)`` with every failure as ``error``: syntax errors, nesting deep enough
    to exhaust the parser's recursion (RecursionError), and the non-standard constants NaN,
    Infinity and -Infinity (which would become silently wrong numbers)."""
    try:
        return json.loads(text, parse_constant=_refuse_constant)
    except RecursionError:
        raise error(f"{what} nests arrays or objects too deeply to parse; it is not a "
                    "real configuration file") from None
    except ValueError as e:  # JSONDecodeError, UnicodeDecodeError, _refuse_constant
        raise error(f"{what} is not valid JSON: {e}") from e


def dumps_json(data, error, what, **kwargs):
    """``json.dumps(data, allow_nan=False, **kwargs)``: never writes NaN or Infinity (which
    standard JSON readers reject); a non-finite number raises ``error`` naming ``what``."""
    try:
        return json.dumps(data, allow_nan=False, **kwargs)
    except ValueError as e:
        bad = sorted(k for k, v in data.items() if isinstance(v, float) and not math.isfinite(v)) \
            if isinstance(data, dict) else []
        detail = f" (field {', '.join(bad)})" if bad else ""
        raise error(f"cannot write {what}: it holds a NaN or infinite number{detail}, which "
                    f"JSON cannot represent; fix that value: {e}") from e
