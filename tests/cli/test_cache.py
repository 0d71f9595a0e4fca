"""`bertconvert cache fetch|ls|verify|prune|rm` on a real cache filled from a loopback server."""
import json
import os
import time

import pytest

from bertconvert import cached_path
from bertconvert.cache.locks import _HOST
from bertconvert.cache.admin import list_entries, parse_age, parse_size
from bertconvert.cli import main
from ..cache.servers import cache_env, cache_files, http_server  # noqa: F401
from ..cache.keys import expected_key

pytestmark = pytest.mark.usefixtures("cache_env")


def _fill(http_server, sizes=(1000, 2000, 3000)):
    urls = []
    for i, n in enumerate(sizes):
        http_server.add(f"/f{i}", os.urandom(n))
        urls.append(http_server.url(f"/f{i}"))
        cached_path(urls[-1], progress=False)
    return urls


def _age(path, seconds):
    t = time.time() - seconds
    os.utime(path, (t, t))


def test_fetch_and_ls(http_server, cache_env, capsys):
    http_server.add("/a.bin", b"a" * 5000)
    url = http_server.url("/a.bin")
    assert main(["cache", "fetch", url, "--quiet"]) == 0
    out = capsys.readouterr().out
    assert url in out and str(cache_env) in out
    assert main(["cache", "ls"]) == 0
    out = capsys.readouterr().out
    for column in ("URL", "ETAG", "SIZE", "LAST USED", "COMPLETE"):
        assert column in out
    assert url in out and http_server.resources["/a.bin"].etag_header in out and "4.9K" in out
    assert main(["cache", "ls", "--json"]) == 0
    (entry,) = json.loads(capsys.readouterr().out)
    assert entry["url"] == url and entry["size"] == 5000 and entry["complete"] is True


def test_fetch_model_name_through_http_mirror(http_server, tmp_path, monkeypatch, capsys):
    from bertconvert.cache.archives import make_archive

    model = tmp_path / "bert-base-cased"
    model.mkdir()
    (model / "config.json").write_text("{}")
    (model / "model.safetensors").write_bytes(b"w")
    archive = make_archive(model, tmp_path / "a.tgz")
    http_server.add("/bert/bert-base-cased.tar.gz", archive.read_bytes())
    http_server.add("/bert/bert-base-cased-vocab.txt", b"[PAD]\n")
    monkeypatch.setenv("BERTCONVERT_MIRROR", http_server.url("/bert"))
    assert main(["cache", "fetch", "bert-base-cased", "-q"]) == 0
    name, model_dir, vocab = capsys.readouterr().out.split()
    assert name == "bert-base-cased" and os.path.isfile(os.path.join(model_dir, "model.safetensors"))
    assert open(vocab).read() == "[PAD]\n"


def test_verify_detects_corruption(http_server, cache_env, capsys):
    urls = _fill(http_server)
    assert main(["cache", "verify", "-q"]) == 0
    bad = cached_path(urls[1], local_files_only=True)
    with open(bad, "r+b") as f:  # same size, one byte flipped: only a hash notices
        first = f.read(1)
        f.seek(0)
        f.write(bytes([first[0] ^ 0xFF]))
    capsys.readouterr()
    assert main(["cache", "verify", "-q"]) == 1
    out = capsys.readouterr().out
    assert out.count("OK  ") == 2 and "FAIL" in out and urls[1] in out
    assert main(["cache", "verify", urls[1], "--remove-bad", "-q"]) == 1
    assert not os.path.exists(bad)
    assert main(["cache", "verify", "-q"]) == 0


def test_prune_older_than_and_max_size(http_server, cache_env):
    urls = _fill(http_server, sizes=(1000, 2000, 3000))
    paths = [cached_path(u, local_files_only=True) for u in urls]
    _age(paths[0] + ".json", 40 * 86400)  # last used 40 days ago
    _age(paths[1] + ".json", 2 * 86400)
    assert main(["cache", "prune", "--older-than", "30d", "--dry-run", "-q"]) == 0
    assert os.path.exists(paths[0])
    assert main(["cache", "prune", "--older-than", "30d", "-q"]) == 0
    assert not os.path.exists(paths[0]) and os.path.exists(paths[1])
    assert os.path.exists(paths[0] + ".lock")  # lock files are kept
    # 5000 bytes left; a 3500-byte budget drops the least recently used (paths[1])
    assert main(["cache", "prune", "--max-size", "3500", "-q"]) == 0
    assert not os.path.exists(paths[1]) and os.path.exists(paths[2])


def test_prune_removes_abandoned_partials_and_orphans(http_server, cache_env):
    (url,) = _fill(http_server, sizes=(100,))
    key = expected_key(url, http_server.resources["/f0"].etag_header)
    dead = cache_env / f".{key}.part-{_HOST}-999999999-abcdef"
    dead.write_bytes(b"half")
    orphan = cache_env / (expected_key("http://gone/x") + ".json")
    orphan.write_text(json.dumps({"url": "http://gone/x", "etag": None}))
    _age(orphan, 3600)
    assert main(["cache", "prune", "-q"]) == 0
    assert not dead.exists() and not orphan.exists()
    assert os.path.exists(cache_env / key)


def test_rm(http_server, cache_env, capsys):
    urls = _fill(http_server)
    assert main(["cache", "rm", urls[0], "-q"]) == 0
    assert [e.url for e in list_entries()] and urls[0] not in [e.url for e in list_entries()]
    key = expected_key(urls[1], http_server.resources["/f1"].etag_header)
    assert main(["cache", "rm", key[:12], "-q"]) == 0
    assert [e.url for e in list_entries()] == [urls[2]]
    assert main(["cache", "rm", "http://never/cached", "-q"]) == 2
    assert "not in the cache" in capsys.readouterr().err
    assert main(["cache", "rm", "--all", "-q"]) == 0
    assert list_entries() == []
    assert all(n.endswith(".lock") for n in cache_files(cache_env))


def test_size_and_age_parsing():
    assert parse_size("20G") == 20 << 30 and parse_size("500MB") == 500 << 20 and parse_size("7") == 7
    assert parse_age("12h") == 43200 and parse_age("2w") == 14 * 86400
    with pytest.raises(ValueError):
        parse_size("lots")
    with pytest.raises(SystemExit):  # argparse rejects a bad --max-size
        main(["cache", "prune", "--max-size", "lots"])


def test_full_disk_during_fetch_is_one_line_and_leaves_no_partial(http_server, cache_env):
    """RLIMIT_FSIZE makes the kernel refuse writes past 64 KiB (EFBIG), as a full disk would."""
    import resource
    import subprocess
    import sys

    http_server.add("/big.bin", os.urandom(3 << 20))

    def limit():
        resource.setrlimit(resource.RLIMIT_FSIZE, (64 << 10, 64 << 10))

    proc = subprocess.run([sys.executable, "-m", "bertconvert", "cache", "fetch",
                           http_server.url("/big.bin"), "--quiet"], preexec_fn=limit,
                          capture_output=True, text=True, timeout=120,
                          env=dict(os.environ, BERTCONVERT_CACHE=str(cache_env)))
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("bertconvert cache: error: writing the download")
    assert "File too large" in lines[0] and "Traceback" not in proc.stderr
    assert [n for n in cache_files(cache_env) if not n.endswith(".lock")] == []
