"""Safe, atomic extraction of .tar(.gz/.bz2/.xz)/.tgz/.zip model archives.

Every member is checked before anything is written: absolute names, ``..`` components,
links whose target leaves the extraction directory, hard links to outside names, and
device files / FIFOs are refused with :class:`~bertconvert.errors.UnsafeArchiveError`
(0.6.2 handed archives to ``tarfile.extractall`` unfiltered). Extraction goes into a
temporary sibling directory that is renamed into place only when complete, so a reader
sees no directory or the whole one; the temporary directory's name carries the extracting
process's id and host, so ``bertconvert cache prune`` can tell one left by a killed process
from one still being filled (:mod:`.leftovers`). Files get ``0o666 & ~umask`` (``0o777`` for
directories and executables), so a group-shared cache stays usable.

Decompression bombs are refused before anything is written (:class:`~bertconvert.errors.
ArchiveTooLargeError`): the sizes the archive declares for its members may add up to at most
``max_extract_size`` (default 20 GiB) and ``max_extract_ratio`` (default 100) times the
archive's own size (small archives may always expand to 1 MiB); see
:mod:`bertconvert.cache.limits`. What is then written is counted as well, so a member that
lies about its size gains nothing. So are archives of too many members (``max_extract_members``,
default 10000; a million empty files pass every byte limit): they are counted while the listing
is read -- tar headers one by one, stopping at the limit; a zip's declared count before its
directory is parsed -- and refused before anything is written.

Example::

    extract_archive("cache/3f2a...9c", "cache/3f2a...9c-extracted")
"""
import logging
import lzma
import os
import re
import shutil
import stat
import struct
import tarfile
import zipfile
import zlib

from ..atomic import current_umask, fsync_directory, temp_name_for
from ..errors import (ArchiveTooLargeError, CacheWriteError, CorruptArchiveError,
                     NotAnArchiveError, UnsafeArchiveError, option)

log = logging.getLogger(__name__)

_DRIVE = re.compile(r"^[A-Za-z]:")


#: Leading bytes of the compressed streams tarfile reads: a file that starts like one but
#: does not read as a tar is a damaged archive, not some other kind of file.
_COMPRESSED_MAGIC = (b"\x1f\x8b", b"BZh", b"\xfd7zXZ\x00")


def archive_kind(path):
    """``"zip"``, ``"tar"`` (any compression tarfile reads), or None — judged by content.

    A gzip/bz2/xz stream that cannot even be decompressed counts as "tar", a zip without its
    directory as "zip": extracting them then reports the damage (CorruptArchiveError)
    instead of calling them no archive at all.
    """
    if zipfile.is_zipfile(path):
        return "zip"
    try:
        if tarfile.is_tarfile(path):
            return "tar"
    except (OSError, EOFError, tarfile.TarError):
        pass
    try:
        with open(path, "rb") as f:
            head = f.read(6)
    except OSError:
        return None
    if head.startswith(b"PK\x03\x04"):
        return "zip"  # a zip's first member, but no readable directory: truncated
    if not head.startswith(_COMPRESSED_MAGIC):
        return None
    import bz2
    import gzip

    opener = {b"\x1f": gzip.open, b"B": bz2.open, b"\xfd": lzma.open}[head[:1]]
    try:
        with opener(path, "rb") as f:
            first = f.read(tarfile.BLOCKSIZE)
    except (OSError, EOFError, zlib.error, lzma.LZMAError):
        return "tar"  # a damaged compressed stream: most likely a damaged .tar.gz
    try:
        tarfile.TarInfo.frombuf(first, tarfile.ENCODING, "surrogateescape")
    except tarfile.HeaderError:
        # Something else compressed (a lone .gz file), or damage that the stream's own check
        # reveals only later: bz2 hands out a block's bytes before checking the block's CRC.
        return "tar" if _stream_is_damaged(opener, path) else None
    return "tar"  # starts like a tar, damaged further on


def _stream_is_damaged(opener, path):
    """True when decompressing all of ``path`` fails (bad data, CRC, truncation)."""
    try:
        with opener(path, "rb") as f:
            while f.read(1 << 20):
                pass
    except (OSError, EOFError, zlib.error, lzma.LZMAError):
        return True
    return False


def _split_name(name, archive):
    """Normalised components of a member name; refuse absolute paths and ``..``."""
    if not name or name.startswith(("/", "\\")) or _DRIVE.match(name):
        raise UnsafeArchiveError(f"{archive}: member {name!r} has an absolute path; refusing to "
                                 "extract an archive that writes outside its directory")
    parts = [p for p in re.split(r"[\\/]+", name) if p not in ("", ".")]
    if ".." in parts:
        raise UnsafeArchiveError(f"{archive}: member {name!r} contains '..'; refusing to extract "
                                 "an archive that writes outside its directory")
    return parts


def _inside(root, parts):
    """Lexically resolve ``parts`` (may hold '..' from a link target) under root; None if it escapes."""
    stack = []
    for p in parts:
        if p == "..":
            if not stack:
                return None
            stack.pop()
        elif p not in ("", "."):
            stack.append(p)
    return os.path.join(root, *stack)


def _check_tar_member(m, archive):
    parts = _split_name(m.name, archive)
    if m.ischr() or m.isblk() or m.isfifo() or m.isdev():
        raise UnsafeArchiveError(f"{archive}: member {m.name!r} is a device file or FIFO; refused")
    if m.issym():
        target = m.linkname
        if not target or target.startswith(("/", "\\")) or _DRIVE.match(target):
            raise UnsafeArchiveError(f"{archive}: symlink {m.name!r} points to the absolute path "
                                     f"{target!r}; refused")
        link_parts = parts[:-1] + re.split(r"[\\/]+", target)
        if _inside("", link_parts) is None:
            raise UnsafeArchiveError(f"{archive}: symlink {m.name!r} -> {target!r} points outside "
                                     "the archive; refused")
    elif m.islnk():
        _split_name(m.linkname, archive)  # hard link targets are archive-relative names
    elif not (m.isfile() or m.isdir()):
        raise UnsafeArchiveError(f"{archive}: member {m.name!r} has an unsupported type; refused")
    return parts


class _Budget:
    """How many bytes an extraction may still write (see the module docstring)."""

    def __init__(self, archive, limits):
        from .limits import (ENV_MAX_EXTRACT_MEMBERS, ENV_MAX_EXTRACT_RATIO, ENV_MAX_EXTRACT_SIZE,
                             human_size)

        self.archive, self.limits = archive, limits
        self.packed = os.path.getsize(archive)
        self.allowed = limits.expansion_allowance(self.packed)
        self._human = human_size
        self._envs = (ENV_MAX_EXTRACT_SIZE, ENV_MAX_EXTRACT_RATIO)
        self._members_env = ENV_MAX_EXTRACT_MEMBERS
        self.used = 0

    def count(self, members):
        """The archive holds (at least) ``members`` members: refuse more than the limit."""
        limit = self.limits.max_extract_members
        if members > limit:
            raise ArchiveTooLargeError(
                f"{self.archive} holds more than {limit} members (max_extract_members= / "
                f"{self._members_env}: {limit}; a model archive holds a handful of files); "
                "refused, nothing was extracted. Raise that limit if you trust it")

    def refuse(self, total):
        size_env, ratio_env = self._envs
        human = self._human
        raise ArchiveTooLargeError(
            f"{self.archive} ({human(self.packed)}) would extract to at least {human(total)}, "
            f"more than the {human(self.allowed)} allowed (max_extract_size= / {size_env}: "
            f"{human(self.limits.max_extract_size)}; max_extract_ratio= / {ratio_env}: "
            f"{self.limits.max_extract_ratio:g} times the archive); refused as a possible "
            "decompression bomb, nothing was extracted. Raise those limits if you trust it")

    def declare(self, total):
        """The members' declared sizes add up to ``total``."""
        if total > self.allowed:
            self.refuse(total)

    def drain(self, stream):
        """Read ``stream`` to its end (nothing is written), at most the allowance."""
        read = 0
        while True:
            block = stream.read(1 << 20)
            if not block:
                return
            read += len(block)
            if read > self.allowed:
                self.refuse(read)

    def spend(self, n):
        """``n`` more bytes were decompressed."""
        self.used += n
        if self.used > self.allowed:
            self.refuse(self.used)


def _tar_members(tar, path, budget):
    """The members of ``tar``, each checked, read header by header and refused as soon as
    there are more than the budget allows (getmembers() would read them all first)."""
    members = []
    while True:
        m = tar.next()
        if m is None:
            return members
        members.append(m)
        budget.count(len(members))
        _check_tar_member(m, path)


def _extract_tar(path, dest, budget):
    with tarfile.open(path, "r:*") as tar:
        members = _tar_members(tar, path, budget)
        # tarfile writes exactly the size a header declares, so this sum bounds the output.
        budget.declare(sum(m.size for m in members if m.isfile()))
        kwargs = {}
        if hasattr(tarfile, "data_filter"):
            # Second line of defence: the stdlib filter re-checks against the real paths on
            # disk as members are written (links created by earlier members included).
            kwargs["filter"] = "data"
        try:
            tar.extractall(dest, members=members, **kwargs)
        except getattr(tarfile, "FilterError", ()) as e:
            raise UnsafeArchiveError(f"{path}: {e}; refused") from e
        # gzip/bz2/xz check their CRC only at the end of the stream, which tarfile never
        # reaches (it stops at the last member): without this, a corrupt archive whose
        # damage the decompressor does not notice would be extracted with wrong bytes.
        stream = tar.fileobj
        if stream is not None and hasattr(stream, "read"):
            # Bounded: megabytes of compressed padding after the last member could
            # otherwise cost minutes of CPU (nothing is written, but nobody should wait).
            budget.drain(stream)


def _declared_zip_members(path):
    """The member count a zip's end record declares (zip64 too), or None when unreadable.

    Read before ZipFile parses the whole central directory (seconds for a million entries).
    """
    end_record = getattr(zipfile, "_EndRecData", None)  # the stdlib's own reader
    if end_record is None:  # pragma: no cover - every CPython since 2.x has it
        return None
    try:
        with open(path, "rb") as f:
            record = end_record(f)
    except (OSError, ValueError, struct.error):
        return None
    return record[getattr(zipfile, "_ECD_ENTRIES_TOTAL", 4)] if record else None


def _extract_zip(path, dest, budget):
    declared = _declared_zip_members(path)
    if declared is not None:
        budget.count(declared)
    with zipfile.ZipFile(path) as zf:
        budget.count(len(zf.infolist()))  # the count a lying end record hid
        # Declared sizes first: overlapping-entry bombs declare every copy they expand to.
        budget.declare(sum(info.file_size for info in zf.infolist()))
        plan = []
        for info in zf.infolist():
            parts = _split_name(info.filename, path)
            mode = info.external_attr >> 16
            kind = stat.S_IFMT(mode)  # 0 when the zip tool stored permission bits only
            if kind and kind not in (stat.S_IFREG, stat.S_IFDIR):
                raise UnsafeArchiveError(f"{path}: zip member {info.filename!r} is a link or device "
                                         "file; refused")
            plan.append((info, parts, mode))
        for info, parts, mode in plan:
            target = os.path.join(dest, *parts) if parts else dest
            if info.is_dir():
                os.makedirs(target, exist_ok=True)
                continue
            os.makedirs(os.path.dirname(target), exist_ok=True)
            with zf.open(info) as src, open(target, "wb") as dst:
                while True:
                    block = src.read(1 << 20)
                    if not block:
                        break
                    budget.spend(len(block))  # a member larger than it declared is caught too
                    dst.write(block)
            if mode & 0o111:
                os.chmod(target, 0o755)


def _normalise_permissions(root):
    """Group-usable modes that respect the umask (archives often carry 0600 files)."""
    umask = current_umask()
    for d, dirs, files in os.walk(root):
        os.chmod(d, 0o777 & ~umask)
        for name in files:
            p = os.path.join(d, name)
            if os.path.islink(p):
                continue
            executable = os.stat(p).st_mode & 0o111
            os.chmod(p, (0o777 if executable else 0o666) & ~umask)


#: What a damaged archive raises while being read (gzip's BadGzipFile is an OSError without
#: an errno; OSErrors with one come from the disk).
_CORRUPT = (tarfile.ReadError, tarfile.CompressionError, EOFError, zlib.error, lzma.LZMAError,
            zipfile.BadZipFile, OSError)


def extract_archive(archive_path, target_dir, *, max_size=None, max_ratio=None, max_members=None):
    """Extract ``archive_path`` into ``target_dir`` atomically; returns ``target_dir``.

    If ``target_dir`` already exists it is returned untouched (extraction happens once).
    ``max_size`` (bytes) and ``max_ratio`` cap the extracted total (defaults: the
    ``BERTCONVERT_MAX_EXTRACT_SIZE`` / ``BERTCONVERT_MAX_EXTRACT_RATIO`` environment
    variables, else 20 GiB and 100 times the archive's size), ``max_members`` the number of
    members (``BERTCONVERT_MAX_EXTRACT_MEMBERS``, else 10000).
    Raises NotAnArchiveError for other files, UnsafeArchiveError for a dangerous member,
    ArchiveTooLargeError (an UnsafeArchiveError) beyond those caps, CorruptArchiveError for
    a truncated archive or one failing its CRC, CacheWriteError when the disk refuses the
    files (full, quota), CacheSettingError for an invalid cap; nothing is left behind.
    """
    from .limits import extract_limits

    archive_path, target_dir = os.fspath(archive_path), os.fspath(target_dir)
    limits = extract_limits(max_size, max_ratio, max_members)
    if os.path.isdir(target_dir):
        return target_dir
    kind = archive_kind(archive_path)
    if kind is None:
        raise NotAnArchiveError(f"{archive_path} is not a .tar(.gz/.bz2/.xz)/.tgz/.zip archive; "
                                f"fetch it without {option('--extract', 'extract=True')} to get "
                                "the file itself")
    budget = _Budget(archive_path, limits)
    # Named with our pid and host (not mkdtemp's random name): prune removes it once we are gone.
    tmp = temp_name_for(target_dir)
    os.mkdir(tmp, 0o700)
    try:
        (_extract_zip if kind == "zip" else _extract_tar)(archive_path, tmp, budget)
        _normalise_permissions(tmp)
        try:
            os.rename(tmp, target_dir)
        except OSError:
            if not os.path.isdir(target_dir):
                raise
            # Another process published the same extraction first; theirs is identical.
            shutil.rmtree(tmp, ignore_errors=True)
        fsync_directory(os.path.dirname(os.path.abspath(target_dir)))
    except _CORRUPT as e:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(e, OSError) and e.errno is not None:  # the disk, not the archive
            raise CacheWriteError(
                f"extracting {archive_path} into {os.path.dirname(os.path.abspath(target_dir))} "
                f"failed: {e.strerror or e}; nothing was left there. Free space (or raise the "
                "quota) there, then retry") from e
        raise CorruptArchiveError(
            f"{archive_path} is truncated or corrupt ({type(e).__name__}: {e}); nothing was "
            "extracted. Remove it (`bertconvert cache rm`) and fetch it again; if it persists, "
            "the source's copy is damaged") from e
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log.info("extracted %s into %s", archive_path, target_dir)
    return target_dir


def make_archive(directory, archive_path):
    """Pack a model directory as ``<archive_path>`` (.tar.gz), members under the directory's name.

    Hidden files are left out; the archive is written atomically. Used by ``cache push --name``
    to publish ``<name>.tar.gz`` on a mirror.
    """
    from ..atomic import atomic_write

    directory = os.path.abspath(os.fspath(directory))
    top = os.path.basename(directory.rstrip(os.sep)) or "model"
    with atomic_write(archive_path, "wb") as f, tarfile.open(fileobj=f, mode="w:gz") as tar:
        for root, dirs, files in os.walk(directory):
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            for name in sorted(files):
                if name.startswith("."):
                    continue
                full = os.path.join(root, name)
                rel = os.path.relpath(full, directory)
                tar.add(full, arcname=f"{top}/{rel}", recursive=False)
    return archive_path
