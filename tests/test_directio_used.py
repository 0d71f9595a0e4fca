"""O_DIRECT is really used where the filesystem takes it: by DirectFile itself, by the
converter's weight files and by cache downloads.

What is checked is the kernel's view of the open descriptor (``/proc/self/fdinfo/FD``, its
``flags`` field), not DirectFile's own ``direct`` attribute. The writers are observed through a
subclass that reads those flags after each ``write`` (a spy: it changes nothing they do).
"""
import errno
import os
import tempfile

import pytest

import bertconvert.directio as directio
from bertconvert.directio import ALIGN, DirectFile

pytestmark = pytest.mark.skipif(not (hasattr(os, "O_DIRECT") and os.path.isdir("/proc/self/fdinfo")),
                                reason="O_DIRECT and /proc/self/fdinfo are Linux features")


def _takes_o_direct(directory):
    """Whether files in ``directory`` can be opened and written with O_DIRECT (tmpfs on older
    kernels and some FUSE filesystems refuse it)."""
    import mmap

    path = os.path.join(directory, ".o_direct_probe")
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_DIRECT, 0o600)
    except OSError as e:
        if e.errno == errno.EINVAL:
            return False
        raise
    try:
        buf = mmap.mmap(-1, ALIGN)  # page-aligned memory, as direct writes need
        os.write(fd, buf)
        return True
    except OSError as e:
        if e.errno == errno.EINVAL:
            return False
        raise
    finally:
        os.close(fd)
        os.unlink(path)


@pytest.fixture
def direct_dir(tmp_path):
    """A directory on a filesystem that takes O_DIRECT: pytest's tmp_path, else /var/tmp or
    the repository's own filesystem; a skip saying why when none does."""
    if _takes_o_direct(tmp_path):
        yield tmp_path
        return
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    for parent in ("/var/tmp", repo):
        try:
            d = tempfile.mkdtemp(prefix="bertconvert-odirect-", dir=parent)
        except OSError:
            continue
        try:
            if _takes_o_direct(d):
                yield type(tmp_path)(d)
                return
        finally:
            import shutil
            shutil.rmtree(d, ignore_errors=True)
    pytest.skip("no filesystem here takes O_DIRECT (tmp_path, /var/tmp, the repository)")


def fd_flags(fd):
    """The open file's status flags as the kernel reports them (octal in fdinfo)."""
    with open(f"/proc/self/fdinfo/{fd}") as f:
        for line in f:
            if line.startswith("flags:"):
                return int(line.split()[1], 8)
    raise AssertionError(f"no flags line for fd {fd}")


class SpyFile(DirectFile):
    """A DirectFile that records, per file name, whether O_DIRECT was set on its descriptor
    after any write (staged bytes are written by the writer thread with O_DIRECT on)."""

    seen = {}

    def write(self, data):
        n = super().write(data)
        direct = bool(fd_flags(self.fileno()) & os.O_DIRECT)
        SpyFile.seen[os.path.basename(self.name)] = SpyFile.seen.get(os.path.basename(self.name), False) or direct
        return n


@pytest.fixture
def spy(monkeypatch):
    SpyFile.seen = {}
    monkeypatch.delenv(directio.ENV_DIRECT_IO, raising=False)
    return SpyFile


def test_direct_file_sets_o_direct_on_its_descriptor(direct_dir, monkeypatch):
    monkeypatch.delenv(directio.ENV_DIRECT_IO, raising=False)
    path = direct_dir / "f.bin"
    data = os.urandom(5 * 4 * ALIGN + 11)
    with DirectFile(path, "x", buffer_bytes=4 * ALIGN, idle_flush=None) as f:
        f.write(data[:3 * 4 * ALIGN])
        assert f.direct
        assert fd_flags(f.fileno()) & os.O_DIRECT, "DirectFile wrote through the page cache"
        f.write(data[3 * 4 * ALIGN:])
        f.flush()                     # the unaligned tail goes through the page cache...
        assert fd_flags(f.fileno()) & os.O_DIRECT  # ...and O_DIRECT is back on afterwards
    with open(path, "rb") as f:
        assert f.read() == data


def test_env_switch_really_leaves_o_direct_off(direct_dir, monkeypatch):
    """The control: the same check sees a plain descriptor when O_DIRECT is switched off."""
    monkeypatch.setenv(directio.ENV_DIRECT_IO, "0")
    with DirectFile(direct_dir / "f.bin", "x") as f:
        f.write(b"x" * (3 * ALIGN))
        assert not fd_flags(f.fileno()) & os.O_DIRECT


def test_converter_writes_weight_files_with_o_direct(direct_dir, spy, monkeypatch):
    from bertconvert.convert import outputs
    from bertconvert.convert.run import convert_checkpoint
    from .conftest import fixture_checkpoint

    monkeypatch.setattr(outputs, "DirectFile", spy)
    convert_checkpoint(fixture_checkpoint("sequence-classification"), direct_dir / "out",
                       format="both", progress=False)
    assert spy.seen == {"model.safetensors": True, "pytorch_model.bin": True}, spy.seen


def test_cache_download_is_written_with_o_direct(direct_dir, spy, monkeypatch):
    from bertconvert import cached_path
    from .cache.servers import LoopbackServer

    monkeypatch.setattr(directio, "DirectFile", spy)
    cache = direct_dir / "cache"
    server = LoopbackServer().start()
    try:
        data = os.urandom(3 << 20)
        server.add("/w.bin", data)
        path = cached_path(server.url("/w.bin"), cache_dir=str(cache), progress=False)
    finally:
        server.stop()
    with open(path, "rb") as f:
        assert f.read() == data
    assert spy.seen and all(spy.seen.values()), spy.seen
