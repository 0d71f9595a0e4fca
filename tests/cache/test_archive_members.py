"""The member-count cap of extraction: an archive of many (empty) members, which no byte
limit notices, is refused while its listing is read, before anything is written."""
import gzip
import io
import os
import struct
import subprocess
import sys
import tarfile
import zipfile

import pytest

from bertconvert import cached_path
from bertconvert.cache.archives import extract_archive
from bertconvert.cache.limits import DEFAULT_MAX_EXTRACT_MEMBERS
from bertconvert.errors import ArchiveTooLargeError, CacheSettingError, CorruptArchiveError
from .servers import cache_files

pytestmark = pytest.mark.usefixtures("cache_env")

CAP = 40


def _empty_members_tar(count, mode="w:gz", tail=None):
    """A tar of ``count`` empty files (plus ``tail``: (name, bytes) appended after them)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode=mode) as tar:
        for i in range(count):
            tar.addfile(tarfile.TarInfo(f"many/f{i:07d}"))
        if tail is not None:
            info = tarfile.TarInfo(tail[0])
            info.size = len(tail[1])
            tar.addfile(info, io.BytesIO(tail[1]))
    return buf.getvalue()


def _empty_members_zip(count):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for i in range(count):
            zf.writestr(f"many/f{i:07d}", b"")
    return buf.getvalue()


def _nothing_extracted(directory):
    return not [n for n in os.listdir(directory) if "extracted" in n or ".tmp-" in n]


def test_default_is_documented_and_generous_for_model_archives():
    assert DEFAULT_MAX_EXTRACT_MEMBERS == 10_000


@pytest.mark.parametrize("kind", ["tar.gz", "tar", "zip"])
def test_one_member_over_the_cap_is_refused(tmp_path, kind):
    maker = _empty_members_zip if kind == "zip" else \
        (lambda n: _empty_members_tar(n, "w:gz" if kind == "tar.gz" else "w"))
    archive = tmp_path / f"many.{kind}"
    archive.write_bytes(maker(CAP + 1))
    with pytest.raises(ArchiveTooLargeError) as err:
        extract_archive(archive, tmp_path / "out", max_members=CAP)
    assert f"more than {CAP} members" in str(err.value)
    assert "BERTCONVERT_MAX_EXTRACT_MEMBERS" in str(err.value)
    assert _nothing_extracted(tmp_path)

    archive.write_bytes(maker(CAP))  # exactly at the cap: extracted
    out = extract_archive(archive, tmp_path / "out", max_members=CAP)
    assert len(os.listdir(os.path.join(out, "many"))) == CAP


def test_tar_headers_past_the_cap_are_never_read(tmp_path):
    """Counting stops at the cap: a damaged stream further on is not even decompressed
    (reading the whole listing first would report the damage instead)."""
    data = _empty_members_tar(CAP + 1, tail=("many/big", os.urandom(1 << 20)))
    damaged = bytearray(data)
    at = len(damaged) - (256 << 10)  # deep inside the incompressible tail
    damaged[at:at + 4096] = os.urandom(4096)
    archive = tmp_path / "many.tar.gz"
    archive.write_bytes(bytes(damaged))
    with pytest.raises(CorruptArchiveError):  # the damage is real...
        extract_archive(archive, tmp_path / "whole", max_members=CAP + 2)
    with pytest.raises(ArchiveTooLargeError):  # ...and never reached under the cap
        extract_archive(archive, tmp_path / "capped", max_members=CAP)
    assert _nothing_extracted(tmp_path)


def test_zip_whose_end_record_understates_its_members(tmp_path):
    data = bytearray(_empty_members_zip(CAP + 1))
    end = data.rindex(b"PK\x05\x06")
    struct.pack_into("<HH", data, end + 8, 1, 1)  # entries on this disk / in total: "1"
    archive = tmp_path / "liar.zip"
    archive.write_bytes(bytes(data))
    with pytest.raises(ArchiveTooLargeError):
        extract_archive(archive, tmp_path / "out", max_members=CAP)
    assert _nothing_extracted(tmp_path)


def test_cap_through_the_environment_and_keyword(http_server, cache_env, monkeypatch):
    http_server.add("/many.tar.gz", _empty_members_tar(CAP + 1))
    url = http_server.url("/many.tar.gz")
    monkeypatch.setenv("BERTCONVERT_MAX_EXTRACT_MEMBERS", str(CAP))
    with pytest.raises(ArchiveTooLargeError):
        cached_path(url, extract=True, progress=False)
    # The download is cached; only the extraction was refused, and left nothing behind.
    assert not [n for n in cache_files(cache_env) if "extracted" in n or ".tmp-" in n]
    # A keyword wins over the environment.
    out = cached_path(url, extract=True, progress=False, max_extract_members=CAP + 1)
    assert len(os.listdir(os.path.join(out, "many"))) == CAP + 1


@pytest.mark.parametrize("value", ["0", "-3", "nan", "1.5", "lots"])
def test_invalid_member_caps_are_named_errors(tmp_path, monkeypatch, value):
    archive = tmp_path / "a.tar.gz"
    archive.write_bytes(_empty_members_tar(1))
    monkeypatch.setenv("BERTCONVERT_MAX_EXTRACT_MEMBERS", value)
    with pytest.raises(CacheSettingError) as err:
        extract_archive(archive, tmp_path / "out")
    assert "BERTCONVERT_MAX_EXTRACT_MEMBERS" in str(err.value)
    monkeypatch.delenv("BERTCONVERT_MAX_EXTRACT_MEMBERS")
    with pytest.raises(CacheSettingError):
        cached_path(str(archive), extract=True, max_extract_members=value)


def test_cli_refusal_is_one_line(http_server, cache_env):
    http_server.add("/many.tar.gz", _empty_members_tar(CAP + 1))
    proc = subprocess.run([sys.executable, "-m", "bertconvert", "cache", "fetch", "-q", "--extract",
                           http_server.url("/many.tar.gz")], capture_output=True, text=True,
                          timeout=120, env=dict(os.environ, BERTCONVERT_MAX_EXTRACT_MEMBERS=str(CAP)))
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and f"more than {CAP} members" in lines[0], proc.stderr
