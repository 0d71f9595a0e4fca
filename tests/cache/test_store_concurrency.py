"""Many processes and threads on one cache: one download, no torn reads, kills, read-only dirs."""
import contextlib
import hashlib
import json
import os
import signal
import stat
import subprocess
import sys
import textwrap
import threading
import time

import pytest

import bertconvert.cache.store as cache_mod
from bertconvert import cached_path
from bertconvert.errors import OfflineError
from .servers import cache_files
from .keys import expected_key

pytestmark = pytest.mark.usefixtures("cache_env")

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DATA = os.urandom(2 * 1024 * 1024 + 17)
SHA = hashlib.sha256(DATA).hexdigest()


def _python(code, **kwargs):
    env = dict(os.environ, PYTHONPATH=REPO, PYTHONDONTWRITEBYTECODE="1")
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(code)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kwargs)


@pytest.mark.slow
def test_processes_racing_on_one_url_download_it_once(http_server, tmp_path, cache_env):
    # ~0.8 s of body, so every process arrives while the first one is still downloading.
    http_server.add("/race.bin", DATA, chunk=128 * 1024, delay=0.05)
    url = http_server.url("/race.bin")
    gate = tmp_path / "go"
    n = 4
    procs = [_python(f"""
        import hashlib, os, sys, time
        from bertconvert.cache.store import cached_path
        open({str(tmp_path)!r} + "/ready-%d" % os.getpid(), "w").close()
        while not os.path.exists({str(gate)!r}):
            time.sleep(0.005)
        path = cached_path({url!r}, progress=False)
        print(path, hashlib.sha256(open(path, "rb").read()).hexdigest())
        """) for _ in range(n)]
    deadline = time.time() + 120
    while len(list(tmp_path.glob("ready-*"))) < n and time.time() < deadline:
        time.sleep(0.02)
    gate.touch()
    outputs = []
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
        outputs.append(out.split())
    assert http_server.count("GET") == 1
    assert http_server.count("HEAD") == n  # each process: one HEAD, then the lock, then a hit
    key = expected_key(url, http_server.resources["/race.bin"].etag_header)
    assert {tuple(o) for o in outputs} == {(str(cache_env / key), SHA)}


def test_threads_racing_download_once(http_server):
    http_server.add("/t.bin", DATA, chunk=256 * 1024, delay=0.02)
    url = http_server.url("/t.bin")
    results, errors = [], []

    def worker():
        try:
            p = cached_path(url, progress=False)
            results.append((p, hashlib.sha256(open(p, "rb").read()).hexdigest()))
        except Exception as e:  # surfaced by the assert below
            errors.append(e)

    threads = [threading.Thread(target=worker) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors
    assert len(set(results)) == 1 and results[0][1] == SHA
    assert http_server.count("GET") == 1


def test_correctness_does_not_depend_on_the_lock(http_server, monkeypatch):
    # As on NFS where flock silently succeeds for everyone: all download, all get whole files.
    @contextlib.contextmanager
    def no_lock(path):
        yield False

    monkeypatch.setattr(cache_mod, "entry_lock", no_lock)
    http_server.add("/nolock.bin", DATA, chunk=256 * 1024, delay=0.01)
    url = http_server.url("/nolock.bin")
    results = []
    threads = [threading.Thread(target=lambda: results.append(cached_path(url, progress=False)))
               for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert len(results) == 4 and len(set(results)) == 1
    with open(results[0], "rb") as f:
        assert f.read() == DATA


@pytest.mark.slow
def test_process_killed_mid_download_leaves_nothing_complete_and_is_resumed(http_server, cache_env):
    stall_at = 1024 * 1024 + 512 * 1024
    res = http_server.add("/kill.bin", DATA, chunk=256 * 1024, stall_after=stall_at, stall=5)
    url = http_server.url("/kill.bin")
    proc = _python(f"""
        from bertconvert.cache.store import cached_path
        cached_path({url!r}, {str(cache_env)!r}, progress=False)
        """)
    deadline = time.time() + 60
    partial = None
    while time.time() < deadline:
        parts = [n for n in cache_files(cache_env) if ".part-" in n]
        if parts and os.path.getsize(cache_env / parts[0]) >= stall_at:
            partial = parts[0]
            break
        time.sleep(0.02)
    assert partial, "the child never reached the stall point"
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)

    key = expected_key(url, res.etag_header)
    assert key not in cache_files(cache_env) and key + ".json" not in cache_files(cache_env)
    with pytest.raises(OfflineError):
        cached_path(url, local_files_only=True)

    http_server.reset_log()
    path = cached_path(url, progress=False)
    with open(path, "rb") as f:
        assert f.read() == DATA
    gets = http_server.log("GET")
    assert len(gets) == 1 and gets[0].headers["range"] == f"bytes={stall_at}-"
    assert gets[0].status == 206
    assert not [n for n in cache_files(cache_env) if ".part-" in n]


def test_unusable_lock_file_is_not_fatal(http_server, cache_env, caplog):
    res = http_server.add("/l.bin", DATA)
    url = http_server.url("/l.bin")
    key = expected_key(url, res.etag_header)
    cache_env.mkdir(parents=True)
    (cache_env / (key + ".lock")).mkdir()  # open() on the lock path fails
    path = cached_path(url, progress=False)
    with open(path, "rb") as f:
        assert f.read() == DATA
    assert any("lock" in r.getMessage() for r in caplog.records if r.levelname == "WARNING")


def test_files_are_group_usable_and_respect_umask(http_server, cache_env):
    http_server.add("/g.bin", DATA)
    old = os.umask(0o002)
    try:
        path = cached_path(http_server.url("/g.bin"), progress=False)
    finally:
        os.umask(old)
    for p in (path, path + ".json", path + ".lock"):
        assert stat.S_IMODE(os.stat(p).st_mode) == 0o664, p
    assert stat.S_IMODE(os.stat(cache_env).st_mode) == 0o775


_PR_CAPBSET_DROP = 24
# CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH, CAP_FOWNER: what lets root ignore permission bits.
_ROOT_OVERRIDES = (1, 2, 3)


def _drop_root_overrides():
    """preexec_fn: the child keeps uid 0 but obeys file permissions like any user."""
    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)
    for cap in _ROOT_OVERRIDES:
        if libc.prctl(_PR_CAPBSET_DROP, cap, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP) failed")


def _make_read_only(cache_dir):
    """chmod a-w the cache; as root also give it to 'nobody' and drop root's overrides in the
    child, since root ignores permission bits. Returns Popen kwargs for the reader child."""
    for name in os.listdir(cache_dir):
        os.chmod(os.path.join(cache_dir, name), 0o444)
    os.chmod(cache_dir, 0o555)
    if os.geteuid() != 0:
        return {}
    if not sys.platform.startswith("linux"):
        pytest.skip("running as root off Linux: cannot make a read-only cache for the test")
    probe = subprocess.run([sys.executable, "-c", "pass"], preexec_fn=_drop_root_overrides,
                           capture_output=True)
    if probe.returncode != 0:
        pytest.skip("running as root without CAP_SETPCAP: cannot drop root's file overrides")
    for name in [""] + os.listdir(cache_dir):  # owned by someone else, like a shared cache
        os.chown(os.path.join(cache_dir, name), 65534, 65534)
    return {"preexec_fn": _drop_root_overrides}


@pytest.mark.slow
def test_read_only_cache_dir_still_serves_hits(http_server, tmp_path):
    http_server.add("/ro.bin", DATA)
    url = http_server.url("/ro.bin")
    http_server.add("/ro-miss.bin", b"not cached")
    cache_dir = str(tmp_path / "shared-cache")
    path = cached_path(url, cache_dir, progress=False)
    names_before = sorted(os.listdir(cache_dir))
    try:
        kwargs = _make_read_only(cache_dir)
        before = {n: os.stat(os.path.join(cache_dir, n)).st_mtime_ns for n in os.listdir(cache_dir)}
        http_server.reset_log()
        proc = _python(f"""
            import json
            from bertconvert.cache.store import cached_path
            from bertconvert.errors import CacheError
            hit = cached_path({url!r}, {cache_dir!r}, progress=False)
            try:
                cached_path({http_server.url("/ro-miss.bin")!r}, {cache_dir!r}, progress=False)
                miss = "written?!"
            except CacheError as e:
                miss = type(e).__name__ + ": " + str(e)
            print(json.dumps([hit, miss]))
            """, **kwargs)
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        hit, miss = json.loads(out)
        assert hit == path
        assert "cannot write to the cache directory" in miss
        assert [r.method for r in http_server.log(path="/ro.bin")] == ["HEAD"]
        after = {n: os.stat(os.path.join(cache_dir, n)).st_mtime_ns for n in os.listdir(cache_dir)}
        assert after == before  # nothing written, nothing touched
        assert sorted(after) == names_before
    finally:
        os.chmod(cache_dir, 0o755)
        for name in [""] + os.listdir(cache_dir):
            with contextlib.suppress(OSError):
                os.chown(os.path.join(cache_dir, name), os.getuid(), os.getgid())
