"""Big sequential output files written straight to the disk (``O_DIRECT``), made durable cheaply.

Converted weights (1.3 GB for BERT-large) and cached downloads (440 MB for BERT-base) must
be on disk (fsync) before they are published. Written through the page cache, every byte is
first copied into freshly allocated cache pages and written back by the kernel only at the
fsync. On the 2-vCPU benchmark VM (virtio disk, ext4) a durable 441 MB write took 0.9-1.2 s
that way (``dd conv=fsync``) and 0.3-0.4 s with ``oflag=direct``; a BERT-base conversion
took about 0.2 s longer with the plain writer (README, Benchmarks).

:class:`DirectFile` is that file object. ``write`` copies into one of a few reused, aligned
staging buffers; full buffers go to one writer thread (``pwrite`` releases the GIL, so the
disk works while the caller produces the next bytes). The unaligned tail is written through
the page cache by :meth:`~DirectFile.flush`, so the file never holds padding. When the
caller goes quiet (a stalled download), the writer thread writes what is staged after
``idle_flush`` seconds, so a killed process leaves almost everything it received.

The plain fallback, with the same interface: where ``O_DIRECT`` is unavailable (not Linux,
tmpfs on older kernels, some FUSE filesystems) or ``BERTCONVERT_DIRECT_IO=0`` is set, every
``write`` goes straight to the kernel (no thread, no staging buffers) and the fsync does
the disk work. A filesystem that takes ``O_DIRECT`` at open but refuses the first write
gets the rest through the page cache from the writer thread. The bytes are the same on
every path. The price of ``O_DIRECT``: the file is not in the page cache afterwards, so
reading it back right away comes from the disk.

Example::

    with DirectFile(path, "x") as f:      # flushed, fsynced and closed on success
        for block in blocks:
            f.write(block)
"""
import errno
import io
import logging
import mmap
import os
import queue
import threading

log = logging.getLogger(__name__)

#: File offsets, lengths and memory addresses of direct writes are multiples of this
#: (the largest logical block size in use; mmap buffers are page-aligned).
ALIGN = 4096
#: Staging buffer size and count: big writes for the disk, double buffering plus one.
BUFFER_BYTES = 8 << 20
BUFFERS = 3
#: Seconds without a full buffer after which the writer thread writes what is staged.
IDLE_FLUSH = 0.1
ENV_DIRECT_IO = "BERTCONVERT_DIRECT_IO"

_O_DIRECT = getattr(os, "O_DIRECT", 0)


def direct_io_enabled():
    """True unless the platform lacks ``O_DIRECT`` or ``BERTCONVERT_DIRECT_IO=0`` is set."""
    flag = os.environ.get(ENV_DIRECT_IO, "1").strip().lower()
    return bool(_O_DIRECT) and flag not in ("0", "false", "no", "off")


def _set_direct(fd, on):
    """Turn ``O_DIRECT`` on or off for an open descriptor (Linux allows both through F_SETFL)."""
    import fcntl

    flags = fcntl.fcntl(fd, fcntl.F_GETFL)
    fcntl.fcntl(fd, fcntl.F_SETFL, (flags | _O_DIRECT) if on else (flags & ~_O_DIRECT))


def _pwrite(fd, view, offset):
    if hasattr(os, "pwrite"):
        return os.pwrite(fd, view, offset)
    os.lseek(fd, offset, os.SEEK_SET)  # pragma: no cover - Windows: only the writer thread writes
    return os.write(fd, view)


def _pwrite_all(fd, view, offset):
    while len(view):
        n = _pwrite(fd, view, offset)
        if n <= 0:  # pwrite of a regular file does not return 0 for a non-empty buffer
            raise OSError(errno.EIO, "short write")
        view, offset = view[n:], offset + n


class _Job:
    """Write ``buf[start:end]`` at file offset ``base + start`` (start rounded down to ALIGN)."""

    __slots__ = ("buf", "start", "end", "base", "release")

    def __init__(self, buf, start, end, base, release):
        self.buf, self.start, self.end, self.base, self.release = buf, start, end, base, release


class DirectFile:
    """An append-only binary file written with ``O_DIRECT`` where possible (see the module doc).

    ``mode``: ``"x"`` (create, must not exist), ``"w"`` (create or truncate) or ``"a"``
    (continue after the existing bytes: a resumed download). ``direct``: None follows
    :func:`direct_io_enabled`; False forces the page cache.

    Supports ``write``, ``tell``, ``flush`` (everything written so far is in the file when it
    returns), ``fileno``, ``truncate(0)``, ``seek`` to the current end, ``close(fsync=...)``
    and ``abort``. A write error from the writer thread (a full disk) is raised as OSError
    by the next ``write``, ``flush`` or ``close``. One thread at a time may write to it.
    """

    def __init__(self, path, mode="x", *, direct=None, buffer_bytes=BUFFER_BYTES,
                 buffers=BUFFERS, idle_flush=IDLE_FLUSH):
        if mode not in ("x", "w", "a"):
            raise ValueError(f"mode must be 'x', 'w' or 'a', not {mode!r}")
        self.name = os.fspath(path)
        self.mode = mode
        self._size = max(ALIGN, int(buffer_bytes) - int(buffer_bytes) % ALIGN)
        self._idle = idle_flush
        flags = os.O_WRONLY | os.O_CREAT | getattr(os, "O_CLOEXEC", 0)
        flags |= {"x": os.O_EXCL, "w": os.O_TRUNC, "a": 0}[mode]
        self._fd = os.open(self.name, flags, 0o666)  # the umask applies, as for open()
        self.closed = False
        self.direct = False
        try:
            if direct_io_enabled() if direct is None else (direct and bool(_O_DIRECT)):
                self.direct = self._try_direct()
            if not self.direct:
                self._start_plain()
                return
            self._plain = False
            self._free = queue.Queue()
            self._bufs = [mmap.mmap(-1, self._size) for _ in range(max(2, int(buffers)))]
            for b in self._bufs[1:]:
                self._free.put(b)
            self._lock = threading.Lock()
            self._jobs = queue.Queue()
            self._error = None
            self._cur, self._base, self._fill, self._synced = self._bufs[0], 0, 0, 0
            if mode == "a":
                self._adopt_existing()
            self._thread = threading.Thread(target=self._run, daemon=True,
                                            name="bertconvert-direct-write")
            self._thread.start()
        except BaseException:
            os.close(self._fd)
            self.closed = True
            raise

    def _start_plain(self):
        """The plain path: every write goes straight to the kernel (the page cache); no
        thread, no staging buffers. Bytes written are in the file at once, so a killed
        process keeps them without any idle flushing."""
        self._plain, self._error, self._bufs = True, None, []
        self._pos = os.fstat(self._fd).st_size if self.mode == "a" else 0

    def _plain_write(self, view):
        try:
            _pwrite_all(self._fd, view, self._pos)
        except OSError as e:
            raise OSError(e.errno, e.strerror, self.name) from e
        self._pos += view.nbytes

    def _try_direct(self):
        try:
            _set_direct(self._fd, True)
            return True
        except OSError as e:  # EINVAL: this filesystem does not do O_DIRECT
            log.debug("O_DIRECT unavailable for %s (%s); writing through the page cache", self.name, e)
            return False

    def _adopt_existing(self):
        """Continue after the bytes already in the file: the last partial block is staged
        again so every direct write stays aligned (it is rewritten with the same bytes)."""
        size = os.fstat(self._fd).st_size
        keep = size % ALIGN
        self._base = size - keep
        if keep:
            with open(self.name, "rb") as f:
                f.seek(self._base)
                head = f.read(keep)
            if len(head) != keep:
                raise OSError(errno.EIO, f"{self.name} shrank while being opened for append")
            self._cur[:keep] = head
        self._fill = self._synced = keep

    # -- the writer thread ---------------------------------------------------------------
    def _run(self):
        while True:
            try:
                job = self._jobs.get(timeout=self._idle) if self._idle else self._jobs.get()
            except queue.Empty:
                self._write_idle()
                continue
            if job is None:
                self._jobs.task_done()
                return
            try:
                if self._error is None:
                    self._write(job.buf, job.start, job.end, job.base)
            except BaseException as e:  # reported to the producer; never kills the thread
                self._fail(e)
            finally:
                if job.release:
                    self._free.put(job.buf)
                self._jobs.task_done()

    def _write_idle(self):
        """Nothing arrived for a while: write what is staged (a stalled download keeps its
        bytes on disk even if the process is killed during the stall)."""
        with self._lock:
            if self._error is not None or self._cur is None or self._fill <= self._synced:
                return
            try:
                self._write(self._cur, self._synced, self._fill, self._base)
                self._synced = self._fill
            except BaseException as e:
                self._fail(e)

    def _fail(self, e):
        # Without its traceback: those frames hold views of the staging buffers, which
        # could then not be unmapped.
        self._error = e.with_traceback(None)

    def _write(self, buf, start, end, base):
        start -= start % ALIGN
        view = memoryview(buf)
        try:
            aligned_end = end - end % ALIGN if self.direct else end
            if aligned_end > start:
                try:
                    _pwrite_all(self._fd, view[start:aligned_end], base + start)
                except OSError as e:
                    if not (self.direct and e.errno == errno.EINVAL):
                        raise
                    # Accepted by fcntl but refused by the filesystem at write time.
                    log.debug("O_DIRECT write refused for %s (%s); using the page cache", self.name, e)
                    _set_direct(self._fd, False)
                    self.direct = False
                    _pwrite_all(self._fd, view[start:end], base + start)
                    aligned_end = end
            if end > aligned_end:  # the unaligned tail, through the page cache
                _set_direct(self._fd, False)
                try:
                    _pwrite_all(self._fd, view[aligned_end:end], base + aligned_end)
                finally:
                    _set_direct(self._fd, True)
        finally:
            view.release()

    # -- the producer side -------------------------------------------------------------------
    def _check(self):
        if self.closed:
            raise ValueError(f"I/O operation on closed file {self.name}")
        if self._error is not None:
            e = self._error
            if isinstance(e, OSError):
                raise OSError(e.errno, e.strerror, self.name) from e
            raise OSError(errno.EIO, f"writing {self.name} failed: {e!r}") from e

    def write(self, data):
        """Append ``data`` (any C-contiguous buffer); returns its length in bytes."""
        self._check()
        view = memoryview(data)
        if view.ndim != 1 or view.format not in ("B", "b", "c"):
            view = view.cast("B")
        if self._plain:
            with view:
                self._plain_write(view)
                return view.nbytes
        total, done = view.nbytes, 0
        while done < total:
            with self._lock:
                k = min(total - done, self._size - self._fill)
                self._cur[self._fill:self._fill + k] = view[done:done + k]
                self._fill += k
                done += k
                full = self._fill == self._size
                if full:
                    self._jobs.put(_Job(self._cur, self._synced, self._fill, self._base, True))
                    self._cur, self._base = None, self._base + self._size
            if full:
                buf = self._free.get()  # waits while the disk is behind
                with self._lock:
                    self._cur, self._fill, self._synced = buf, 0, 0
                self._check()
        view.release()
        return total

    def tell(self):
        """Bytes in the file once everything written so far is flushed."""
        return self._pos if self._plain else self._base + self._fill

    def seek(self, offset, whence=io.SEEK_SET):
        """Only to where the file already is (it is append-only): ``seek(0, 2)`` works."""
        target = offset + (self.tell() if whence in (io.SEEK_CUR, io.SEEK_END) else 0)
        if target != self.tell():
            raise io.UnsupportedOperation(f"{type(self).__name__} only appends")
        return target

    def flush(self):
        """Write everything staged and wait for the writer: the file then holds every byte."""
        self._check()
        if self._plain:
            return
        with self._lock:
            if self._fill > self._synced:
                self._jobs.put(_Job(self._cur, self._synced, self._fill, self._base, False))
                self._synced = self._fill
        self._jobs.join()
        self._check()

    def truncate(self, size=None):
        """Only ``truncate(0)``: start the file over (a download restarted from byte 0)."""
        if size not in (0, None) or (size is None and self.tell() != 0):
            raise io.UnsupportedOperation(f"{type(self).__name__} can only be truncated to 0")
        self._check()
        if self._plain:
            os.ftruncate(self._fd, 0)
            self._pos = 0
            return 0
        self._jobs.join()
        with self._lock:
            os.ftruncate(self._fd, 0)
            self._base = self._fill = self._synced = 0
        self._check()
        return 0

    def fileno(self):
        return self._fd

    def writable(self):
        return True

    def readable(self):
        return False

    def seekable(self):
        return False

    def _stop(self, discard):
        if discard:
            self._error = self._error or OSError(errno.ECANCELED, "aborted")
        if not self._plain:
            self._jobs.put(None)
            self._thread.join()
        os.close(self._fd)
        self.closed = True
        for b in self._bufs:
            try:
                b.close()
            except BufferError:  # still viewed by a caller's frame: freed with that view
                pass

    def close(self, fsync=False):
        """Flush, optionally fsync, and close. A write error is raised (the file is still
        closed)."""
        if self.closed:
            return
        try:
            self.flush()
            if fsync:
                os.fsync(self._fd)
        finally:
            if not self.closed:
                self._stop(discard=False)

    def abort(self):
        """Close without writing what is still staged; never raises for write errors."""
        if not self.closed:
            self._stop(discard=True)

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            self.close(fsync=True)
        else:
            self.abort()

    def __del__(self):
        if not getattr(self, "closed", True):
            self.abort()

    def __repr__(self):
        how = "O_DIRECT" if self.direct else "page cache"
        return f"<DirectFile {self.name!r} {self.tell()} bytes, {how}>"
