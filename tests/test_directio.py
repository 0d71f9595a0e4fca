"""DirectFile: append-only files written past the page cache (or plainly), byte-exact on every path."""
import io
import os
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from bertconvert.directio import ALIGN, DirectFile, direct_io_enabled

SMALL = 4 * ALIGN  # small staging buffers: every boundary is crossed many times


@pytest.fixture(params=["auto", "page-cache"])
def direct(request):
    return None if request.param == "auto" else False


def _pieces(seed=0):
    rng = np.random.default_rng(seed)
    sizes = [0, 1, ALIGN - 1, ALIGN, ALIGN + 1, SMALL - 3, SMALL, SMALL + 5, 3 * SMALL + 7, 17]
    return [rng.integers(0, 256, n, dtype=np.uint8).tobytes() for n in sizes]


def _read(path):
    with open(path, "rb") as f:
        return f.read()


def test_assorted_write_sizes_give_exactly_the_bytes(tmp_path, direct):
    path = tmp_path / "out.bin"
    pieces = _pieces()
    with DirectFile(path, "x", direct=direct, buffer_bytes=SMALL, buffers=2, idle_flush=None) as f:
        for i, p in enumerate(pieces):
            assert f.write(p) == len(p)
            assert f.tell() == sum(map(len, pieces[:i + 1]))
    assert _read(path) == b"".join(pieces)


def test_default_sizes_and_numpy_arrays(tmp_path):
    a = np.arange(3 * 1024 * 1024, dtype=np.float32).reshape(1024, -1)  # 12 MiB, 2-D
    path = tmp_path / "a.bin"
    with DirectFile(path, "x") as f:
        f.write(a)
        f.write(b"tail")
    assert _read(path) == a.tobytes() + b"tail"


def test_flush_puts_every_byte_in_the_file_and_writing_goes_on(tmp_path, direct):
    path = tmp_path / "out.bin"
    pieces = _pieces(1)
    with DirectFile(path, "x", direct=direct, buffer_bytes=SMALL, idle_flush=None) as f:
        written = b""
        for p in pieces:
            f.write(p)
            written += p
            f.flush()  # unaligned tails go through the page cache, then are rewritten
            assert _read(path) == written
    assert _read(path) == b"".join(pieces)


@pytest.mark.parametrize("existing", [0, 5000, 2 * ALIGN])
def test_append_continues_after_existing_bytes(tmp_path, direct, existing):
    path = tmp_path / "partial"
    old = os.urandom(existing)
    path.write_bytes(old)
    new = os.urandom(3 * SMALL + 11)
    with DirectFile(path, "a", direct=direct, buffer_bytes=SMALL, idle_flush=None) as f:
        assert f.tell() == existing
        assert f.seek(0, io.SEEK_END) == existing
        f.write(new)
    assert _read(path) == old + new


def test_modes(tmp_path):
    path = tmp_path / "f"
    path.write_bytes(b"old contents")
    with pytest.raises(FileExistsError):
        DirectFile(path, "x")
    with DirectFile(path, "w") as f:
        f.write(b"new")
    assert _read(path) == b"new"
    with pytest.raises(ValueError):
        DirectFile(path, "r")


def test_truncate_to_zero_restarts_and_only_zero_is_allowed(tmp_path, direct):
    path = tmp_path / "f"
    with DirectFile(path, "x", direct=direct, buffer_bytes=SMALL, idle_flush=None) as f:
        f.write(os.urandom(2 * SMALL + 99))
        assert f.truncate(0) == 0 and f.tell() == 0 and f.seek(0) == 0
        f.write(b"x")
        with pytest.raises(io.UnsupportedOperation):
            f.truncate(5)
        with pytest.raises(io.UnsupportedOperation):
            f.seek(0)  # it is 1 byte long now: append-only
        f.write(b"yz")
    assert _read(path) == b"xyz"


def test_files_get_the_umask_permissions(tmp_path):
    old = os.umask(0o027)
    try:
        with DirectFile(tmp_path / "p", "x") as f:
            f.write(b"1")
    finally:
        os.umask(old)
    assert (tmp_path / "p").stat().st_mode & 0o777 == 0o640


def test_idle_writer_puts_staged_bytes_on_disk(tmp_path, direct):
    """A stalled producer (a download waiting on the network) still gets its bytes written,
    so a process killed during the stall leaves them for a resume."""
    path = tmp_path / "f"
    data = os.urandom(ALIGN * 3 + 123)
    f = DirectFile(path, "x", direct=direct, idle_flush=0.02)
    try:
        f.write(data)
        deadline = time.monotonic() + 10
        while os.path.getsize(path) < len(data) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert _read(path) == data
        f.write(b"more")
    finally:
        f.close()
    assert _read(path) == data + b"more"


def test_abort_discards_what_is_staged(tmp_path):
    path = tmp_path / "f"
    with pytest.raises(RuntimeError):
        with DirectFile(path, "x", idle_flush=None) as f:
            f.write(b"never written")
            raise RuntimeError("boom")
    assert f.closed
    if not f.direct:  # the plain path stages nothing: its bytes are in the file at once
        pytest.skip("this filesystem takes no O_DIRECT")
    assert _read(path) == b""
    f.close()  # closing again is a no-op
    with pytest.raises(ValueError, match="closed"):
        f.write(b"x")


def test_env_switch_forces_the_page_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("BERTCONVERT_DIRECT_IO", "0")
    assert not direct_io_enabled()
    with DirectFile(tmp_path / "f", "x") as f:
        assert not f.direct
        f.write(b"abc")
    assert _read(tmp_path / "f") == b"abc"


@pytest.mark.skipif(not os.path.isdir("/dev/shm"), reason="no tmpfs at /dev/shm")
def test_tmpfs_works_whether_or_not_it_takes_o_direct(tmp_path):
    import tempfile

    with tempfile.TemporaryDirectory(dir="/dev/shm") as d:
        path = os.path.join(d, "f")
        data = os.urandom(5 * SMALL + 3)
        with DirectFile(path, "x", buffer_bytes=SMALL) as f:
            f.write(data)
        assert _read(path) == data


@pytest.mark.parametrize("mode", ["auto", "page-cache"])
def test_write_error_is_raised_not_lost(tmp_path, mode):
    """RLIMIT_FSIZE makes the kernel refuse writes past 64 KiB (EFBIG), as a full disk would:
    the writer thread's error surfaces in the caller as OSError, and nothing hangs."""
    code = textwrap.dedent(f"""
        import errno, resource, sys
        resource.setrlimit(resource.RLIMIT_FSIZE, (64 << 10, 64 << 10))
        from bertconvert.directio import DirectFile
        f = DirectFile(sys.argv[1], "x", direct={None if mode == "auto" else False},
                       buffer_bytes=16 << 10)
        try:
            for _ in range(100):
                f.write(b"x" * 10000)
            f.close(fsync=True)
        except OSError as e:
            f.abort()
            print("errno", e.errno == errno.EFBIG, e.filename == sys.argv[1])
        else:
            print("no error")
        """)
    proc = subprocess.run([sys.executable, "-c", code, str(tmp_path / "f")], capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "errno True True"
    assert os.path.getsize(tmp_path / "f") <= 64 << 10



def test_write_refused_by_the_filesystem_falls_back_to_the_page_cache(tmp_path, monkeypatch):
    """Some filesystems accept O_DIRECT at open and refuse it at write time (EINVAL). Here the
    kernel really refuses: with ALIGN lowered to 256 the first direct write is 256-aligned
    but not a multiple of the disk's logical block size (512 or 4096)."""
    import bertconvert.directio as directio

    monkeypatch.setattr(directio, "ALIGN", 256)
    data = os.urandom(3 * 4352 + 100)
    path = tmp_path / "refused.bin"
    f = DirectFile(path, "x", buffer_bytes=4352, idle_flush=0)
    if not f.direct:
        f.abort()
        pytest.skip("this filesystem takes no O_DIRECT at all")
    f.write(data)
    f.close(fsync=True)
    assert not f.direct  # switched to the page cache after the refusal
    assert path.read_bytes() == data
