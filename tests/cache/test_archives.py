"""extract=True: archives extracted once, atomically, and dangerous members refused."""
import io
import os
import stat
import tarfile
import threading
import zipfile

import pytest

from bertconvert import cached_path
from bertconvert.cache.archives import archive_kind, extract_archive, make_archive
from bertconvert.errors import CorruptArchiveError, NotAnArchiveError, UnsafeArchiveError
from .servers import cache_files

pytestmark = pytest.mark.usefixtures("cache_env")

FILES = {"bert-tiny/config.json": b'{"vocab_size": 5}', "bert-tiny/pytorch_model.bin": os.urandom(5000)}


def _tar_bytes(members, mode="w:gz"):
    """members: list of (TarInfo, bytes or None)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode=mode) as tar:
        for info, data in members:
            if data is not None:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
            else:
                tar.addfile(info)
    return buf.getvalue()


def _file(name, data, mode=0o644):
    info = tarfile.TarInfo(name)
    info.mode = mode
    return info, data


def _special(name, kind, target=""):
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = target
    return info, None


def _good_tar():
    return _tar_bytes([_file(n, d, 0o600) for n, d in FILES.items()])


def _zip_bytes(entries):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data, mode in entries:
            info = zipfile.ZipInfo(name)
            if mode is not None:
                info.external_attr = mode << 16
            zf.writestr(info, data)
    return buf.getvalue()


def test_tar_gz_is_extracted_once_into_a_sibling_directory(http_server, cache_env):
    http_server.add("/m.tar.gz", _good_tar())
    url = http_server.url("/m.tar.gz")
    d = cached_path(url, extract=True, progress=False)
    assert os.path.isdir(d) and d.endswith("-extracted")
    assert os.path.dirname(d) == str(cache_env)
    for name, data in FILES.items():
        with open(os.path.join(d, name), "rb") as f:
            assert f.read() == data
    # 0600 in the archive becomes group-usable per the umask
    umask = os.umask(0)
    os.umask(umask)
    mode = stat.S_IMODE(os.stat(os.path.join(d, "bert-tiny/config.json")).st_mode)
    assert mode == 0o666 & ~umask
    marker = os.path.join(d, "marker")
    open(marker, "w").close()
    assert cached_path(url, extract=True, progress=False) == d
    assert os.path.exists(marker)  # not extracted again
    assert not [n for n in cache_files(cache_env) if n.startswith(".")]  # no temp dirs left


def test_zip_is_extracted(http_server):
    http_server.add("/m.zip", _zip_bytes([(n, d, 0o644) for n, d in FILES.items()]))
    d = cached_path(http_server.url("/m.zip"), extract=True, progress=False)
    with open(os.path.join(d, "bert-tiny/pytorch_model.bin"), "rb") as f:
        assert f.read() == FILES["bert-tiny/pytorch_model.bin"]


def test_internal_relative_symlink_is_allowed(tmp_path):
    arch = tmp_path / "a.tar"
    members = [_file("d/real.txt", b"x"), _special("d/link.txt", tarfile.SYMTYPE, "real.txt")]
    arch.write_bytes(_tar_bytes(members, mode="w"))
    out = extract_archive(arch, tmp_path / "out")
    assert open(os.path.join(out, "d/link.txt")).read() == "x"


UNSAFE_TARS = {
    "absolute path": [_file("/tmp/evil-abs", b"x")],
    "dot-dot": [_file("../evil", b"x")],
    "nested dot-dot": [_file("a/../../evil", b"x")],
    "absolute symlink": [_special("link", tarfile.SYMTYPE, "/etc/passwd")],
    "escaping symlink": [_special("a/link", tarfile.SYMTYPE, "../../evil")],
    "symlink then write through it": [_special("link", tarfile.SYMTYPE, ".."), _file("link/evil", b"x")],
    "escaping hard link": [_special("hard", tarfile.LNKTYPE, "../outside")],
    "char device": [_special("dev", tarfile.CHRTYPE)],
    "block device": [_special("blk", tarfile.BLKTYPE)],
    "fifo": [_special("pipe", tarfile.FIFOTYPE)],
}


@pytest.mark.parametrize("case", sorted(UNSAFE_TARS))
def test_unsafe_tar_members_are_refused_and_nothing_is_left(http_server, cache_env, tmp_path, case):
    http_server.add("/bad.tar.gz", _tar_bytes([_file("ok.txt", b"fine")] + UNSAFE_TARS[case]))
    with pytest.raises(UnsafeArchiveError):
        cached_path(http_server.url("/bad.tar.gz"), extract=True, progress=False)
    names = cache_files(cache_env)
    assert not [n for n in names if n.endswith("-extracted") or n.startswith(".")]
    assert not (tmp_path / "evil").exists() and not (cache_env.parent / "evil").exists()


@pytest.mark.parametrize("entry", [("../evil", b"x", 0o644), ("/abs/evil", b"x", 0o644),
                                   ("link", b"../../etc/passwd", 0o120777),
                                   ("dev", b"", 0o020644)])
def test_unsafe_zip_members_are_refused(tmp_path, entry):
    arch = tmp_path / "bad.zip"
    arch.write_bytes(_zip_bytes([("ok.txt", b"fine", 0o644), entry]))
    with pytest.raises(UnsafeArchiveError):
        extract_archive(arch, tmp_path / "out")
    assert os.listdir(tmp_path) == ["bad.zip"]


def test_not_an_archive(http_server):
    http_server.add("/vocab.txt", b"[PAD]\n")
    with pytest.raises(NotAnArchiveError):
        cached_path(http_server.url("/vocab.txt"), extract=True, progress=False)
    assert archive_kind(cached_path(http_server.url("/vocab.txt"), progress=False)) is None


def test_local_archive_is_extracted_into_the_cache(tmp_path, cache_env):
    arch = tmp_path / "model.tgz"
    arch.write_bytes(_good_tar())
    d = cached_path(str(arch), extract=True)
    assert d.startswith(str(cache_env)) and os.path.isfile(os.path.join(d, "bert-tiny/config.json"))
    assert cached_path(str(arch), extract=True) == d
    assert cached_path(str(tmp_path), extract=True) == str(tmp_path)  # directories pass through


def test_threads_extracting_the_same_entry_agree(http_server):
    http_server.add("/c.tar.gz", _good_tar())
    url = http_server.url("/c.tar.gz")
    cached_path(url, progress=False)
    out = []
    def extract():
        out.append(cached_path(url, extract=True, progress=False))

    threads = [threading.Thread(target=extract) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert len(out) == 4 and len(set(out)) == 1


def test_make_archive_round_trips(tmp_path):
    src = tmp_path / "bert-x"
    src.mkdir()
    (src / "config.json").write_text("{}")
    (src / ".hidden").write_text("no")
    arch = make_archive(src, tmp_path / "bert-x.tar.gz")
    out = extract_archive(arch, tmp_path / "out")
    assert sorted(os.listdir(os.path.join(out, "bert-x"))) == ["config.json"]


def _damaged(data, how):
    data = bytearray(data)
    if how == "flipped byte":  # random payload: stored blocks, so only the CRC can tell
        data[len(data) // 2] ^= 0xFF
    elif how == "flipped crc":
        data[-6] ^= 0xFF
    else:
        data = data[:len(data) // 2]
    return bytes(data)


@pytest.mark.parametrize("kind", ["w:gz", "w:bz2", "w:xz", "zip"])
@pytest.mark.parametrize("how", ["flipped byte", "flipped crc", "truncated"])
def test_damaged_archive_is_refused_and_nothing_is_extracted(tmp_path, kind, how):
    big = {"m/pytorch_model.bin": os.urandom(300_000)}
    if kind == "zip":
        if how == "flipped crc":
            pytest.skip("a zip's CRC sits in its headers, not at the end")
        data = _zip_bytes([(n, d, 0o644) for n, d in big.items()])
    else:
        data = _tar_bytes([_file(n, d) for n, d in big.items()], mode=kind)
    archive = tmp_path / "a"
    archive.write_bytes(_damaged(data, how))
    with pytest.raises(CorruptArchiveError, match="truncated or corrupt"):
        extract_archive(archive, tmp_path / "a-x")
    assert sorted(os.listdir(tmp_path)) == ["a"]


def test_damaged_tar_gz_from_a_server_is_not_extracted(http_server, cache_env):
    """The server's ETag is the MD5 of its (damaged) copy, so the download verifies; gzip's
    own CRC, checked at the end of the stream, is what catches it."""
    data = _tar_bytes([_file("m/pytorch_model.bin", os.urandom(300_000))])
    http_server.add("/bad.tar.gz", _damaged(data, "flipped byte"))
    url = http_server.url("/bad.tar.gz")
    with pytest.raises(CorruptArchiveError):
        cached_path(url, progress=False, extract=True)
    assert not [n for n in cache_files(cache_env) if n.endswith("-extracted") or ".tmp-" in n]
    with open(cached_path(url, progress=False), "rb") as f:  # the file itself is served as is
        assert f.read() == _damaged(data, "flipped byte")


@pytest.mark.parametrize("suffix", ["gz", "bz2", "xz"])
def test_a_single_compressed_file_is_not_an_archive(tmp_path, suffix):
    import bz2
    import gzip
    import lzma

    compress = {"gz": gzip.compress, "bz2": bz2.compress, "xz": lzma.compress}[suffix]
    path = tmp_path / f"w.{suffix}"
    path.write_bytes(compress(b"weights" * 1000))
    with pytest.raises(NotAnArchiveError):
        extract_archive(path, tmp_path / "x")
    assert archive_kind(path) is None


def test_full_disk_while_extracting_is_cache_write_error(tmp_path):
    """RLIMIT_FSIZE makes the kernel refuse writes past 64 KiB (EFBIG), as a full disk would."""
    import subprocess
    import sys
    import textwrap

    archive = tmp_path / "m.tar.gz"
    archive.write_bytes(_tar_bytes([_file("m/pytorch_model.bin", bytes(1 << 20))]))  # ~1 KB
    code = textwrap.dedent(f"""
        import resource
        resource.setrlimit(resource.RLIMIT_FSIZE, (64 << 10, 64 << 10))
        from bertconvert.cache.archives import extract_archive
        from bertconvert.errors import CacheWriteError
        try:
            extract_archive({str(archive)!r}, {str(tmp_path / "x")!r})
        except CacheWriteError as e:
            print("CacheWriteError", "File too large" in str(e))
        """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.stdout.strip() == "CacheWriteError True", proc.stderr
    assert os.listdir(tmp_path) == ["m.tar.gz"]
