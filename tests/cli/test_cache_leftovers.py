"""`cache prune`, `cache rm` and `cache rm --all` see and remove every temp a killed process
leaves in the cache (extractions included), and leave alone those a live process writes."""
import io
import os
import subprocess
import sys
import tarfile
import textwrap
import time
import uuid

import pytest

from bertconvert import cached_path, url_to_filename
from bertconvert.atomic import temp_name_for
from bertconvert.cli import main
from ..cache.servers import cache_env, cache_files, http_server  # noqa: F401

pytestmark = pytest.mark.usefixtures("cache_env")

HOST = temp_name_for("x").rpartition("@")[2]


def _dead_pid():
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _archive(n_files=3):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for i in range(n_files):
            data = f"file {i}".encode()
            info = tarfile.TarInfo(f"model/f{i}.txt")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _age(path, seconds):
    t = time.time() - seconds
    os.utime(path, (t, t))


def _fill_temp_dir(path, files=50):
    os.makedirs(os.path.join(path, "model"))
    for i in range(files):
        open(os.path.join(path, "model", f"f{i}"), "w").close()
    return path


def _killed_extraction(http_server, cache_env):
    """A real `cache fetch --extract` killed (SIGKILL) once its files are written and before
    it publishes them: returns the entry's data path."""
    http_server.add("/m.tar.gz", _archive(20))
    url = http_server.url("/m.tar.gz")
    script = textwrap.dedent(f"""
        import os, signal
        from bertconvert.cache import archives
        def killed(root):  # the point after every member is written, before the rename
            os.kill(os.getpid(), signal.SIGKILL)
        archives._normalise_permissions = killed
        from bertconvert import cached_path
        cached_path({url!r}, extract=True, progress=False)
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=120, env=dict(os.environ, BERTCONVERT_CACHE=str(cache_env)))
    assert proc.returncode == -9, proc.stderr
    key = url_to_filename(url, http_server.resources["/m.tar.gz"].etag_header)
    return str(cache_env / key)


def _temps(cache_env):
    return [n for n in cache_files(cache_env) if ".tmp-" in n]


def test_prune_removes_the_temp_of_a_killed_extraction(http_server, cache_env, capsys):
    data_path = _killed_extraction(http_server, cache_env)
    (temp,) = _temps(cache_env)
    assert temp.startswith("." + os.path.basename(data_path) + "-extracted.tmp-")
    assert len(os.listdir(cache_env / temp / "model")) == 20

    assert main(["cache", "ls"]) == 0
    assert "1 leftover temp(s)" in capsys.readouterr().out
    assert main(["cache", "prune", "--dry-run", "-q"]) == 0
    assert str(cache_env / temp) in capsys.readouterr().out and _temps(cache_env) == [temp]
    assert main(["cache", "prune", "-q"]) == 0
    assert _temps(cache_env) == []
    assert os.path.isfile(data_path)  # the complete download stays
    # ...and the next fetch extracts it properly.
    out = cached_path(http_server.url("/m.tar.gz"), extract=True, progress=False)
    assert len(os.listdir(os.path.join(out, "model"))) == 20


def test_rm_all_removes_temps_of_entries_and_of_no_entry(http_server, cache_env, capsys):
    data_path = _killed_extraction(http_server, cache_env)
    orphan_key = url_to_filename("http://gone.example/x.tar.gz", '"e"')
    orphan = _fill_temp_dir(str(cache_env / f".{orphan_key}-extracted.tmp-"
                                             f"{_dead_pid()}-{uuid.uuid4().hex[:12]}@{HOST}"))
    meta_tmp = cache_env / f".{orphan_key}.json.tmp-{_dead_pid()}-{uuid.uuid4().hex[:12]}@{HOST}"
    meta_tmp.write_text("{")
    assert len(_temps(cache_env)) == 3
    assert main(["cache", "rm", "--all", "-q"]) == 0
    out = capsys.readouterr().out
    assert orphan in out and str(meta_tmp) in out
    assert _temps(cache_env) == [] and not os.path.exists(data_path)
    assert all(n.endswith(".lock") for n in cache_files(cache_env))


def test_rm_of_one_entry_removes_its_temps_only(http_server, cache_env):
    data_path = _killed_extraction(http_server, cache_env)
    other_key = url_to_filename("http://other.example/y.tar.gz")
    other = _fill_temp_dir(str(cache_env / f".{other_key}-extracted.tmp-"
                                            f"{_dead_pid()}-{uuid.uuid4().hex[:12]}@{HOST}"))
    assert main(["cache", "rm", os.path.basename(data_path)[:16], "-q"]) == 0
    assert _temps(cache_env) == [os.path.basename(other)]


def test_temps_of_live_or_unknown_owners_are_kept_until_stale(cache_env):
    os.makedirs(cache_env)
    key = url_to_filename("http://example/z.tar.gz")
    # A live process of this host (our parent), another host, and a name without an owner.
    live = _fill_temp_dir(str(cache_env / f".{key}-extracted.tmp-{os.getppid()}-"
                                           f"{uuid.uuid4().hex[:12]}@{HOST}"))
    remote = _fill_temp_dir(str(cache_env / f".{key}-extracted.tmp-{_dead_pid()}-"
                                             f"{uuid.uuid4().hex[:12]}@elsewhere.example"))
    anonymous = _fill_temp_dir(str(cache_env / f".{key}-extracted.tmp-a1b2c3d4"))
    partial = cache_env / f".{key}.part-{HOST}-{os.getppid()}-abcdef"
    partial.write_bytes(b"half")
    unrelated = cache_env / ".not-ours.tmp-1-0123456789ab@host"
    unrelated.write_text("someone else's")
    _age(unrelated, 100 * 86400)
    names = sorted(cache_files(cache_env))

    assert main(["cache", "prune", "-q"]) == 0
    assert sorted(cache_files(cache_env)) == names  # all kept: fresh, or owner alive
    for path in (remote, anonymous):
        _age(path, 2 * 3600)  # untouched for two hours: abandoned
    assert main(["cache", "rm", "--all", "-q"]) == 0
    left = cache_files(cache_env)
    assert os.path.basename(live) in left and partial.name in left and unrelated.name in left
    assert os.path.basename(remote) not in left and os.path.basename(anonymous) not in left
    _age(live, 2 * 86400)  # a live pid two days later is a reused one
    assert main(["cache", "prune", "-q"]) == 0
    assert os.path.basename(live) not in cache_files(cache_env)
    assert unrelated.exists()  # not a cache name: never touched
