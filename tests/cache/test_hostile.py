"""Hostile cache directories and settings give one-line errors (exit 2) or a warning, never
a traceback; URL credentials never reach metadata, listings, logs or error messages."""
import json
import logging
import os
import subprocess
import sys

import pytest

from bertconvert import cached_path
from bertconvert.cli import main
from bertconvert.errors import NetworkUnavailableError, RemoteNotFoundError
from bertconvert.cache.redact import redact_url, scrub
from .servers import LoopbackServer, cache_files
from .keys import expected_key

pytestmark = pytest.mark.usefixtures("cache_env")

ACTIONS = [["ls"], ["ls", "--json"], ["verify"], ["prune"], ["prune", "--dry-run"],
           ["rm", "--all"], ["fetch", "http://127.0.0.1:9/w.bin"]]


def _cli(*args, env=None):
    """``python -m bertconvert cache ...`` in a subprocess: (exit code, stdout, stderr).
    Not ``-q``: warnings must show (the commands draw no progress bars without a tty)."""
    proc = subprocess.run([sys.executable, "-m", "bertconvert", "cache", *args],
                          capture_output=True, text=True, timeout=120,
                          env=dict(os.environ, **(env or {})))
    return proc.returncode, proc.stdout, proc.stderr


def _one_line_error(stderr):
    lines = stderr.strip().splitlines()
    return len(lines) == 1 and lines[0].startswith("bertconvert cache: error:") and \
        "Traceback" not in stderr


@pytest.mark.parametrize("kind", ["file", "symlink-loop", "dangling-symlink"])
@pytest.mark.parametrize("action", ACTIONS, ids=lambda a: "-".join(a))
def test_cache_dir_that_is_no_directory(tmp_path, kind, action):
    bad = tmp_path / "cache-dir"
    if kind == "file":
        bad.write_text("not a directory")
    elif kind == "symlink-loop":
        os.symlink(bad, bad)
    else:
        os.symlink(tmp_path / "nowhere", bad)
    code, out, err = _cli(*action, "--cache-dir", str(bad))
    assert code == 2, err
    assert _one_line_error(err) and str(bad) in err, err


def test_prune_max_size_with_400_digits(http_server, cache_env):
    http_server.add("/a", b"a" * 100)
    cached_path(http_server.url("/a"), progress=False)
    code, out, err = _cli("prune", "--max-size", "9" * 400)
    assert code == 0 and "Traceback" not in err
    assert any(not n.endswith((".lock", ".json")) for n in cache_files(cache_env))  # kept
    code, out, err = _cli("prune", "--older-than", "9" * 400)
    assert code == 2 and "Traceback" not in err and "too large" in err


MALFORMED = ['{"url": 5}', "[]", '{"url": "http://x/y", "size": "big"}',
             '{"url": "http://x/y", "created": "yesterday", "size": 4}', "not json", "[" * 100_000]


@pytest.mark.parametrize("metadata", MALFORMED, ids=range(len(MALFORMED)))
def test_malformed_metadata_is_reported_and_skipped(http_server, cache_env, metadata):
    http_server.add("/good", b"good bytes")
    good = cached_path(http_server.url("/good"), progress=False)
    key = "ab" * 32
    (cache_env / key).write_bytes(b"data")
    (cache_env / (key + ".json")).write_text(metadata)

    code, out, err = _cli("ls", "--json")
    assert code == 0 and "Traceback" not in err
    assert ("malformed cache metadata" in err or "unreadable cache metadata" in err) and key in err
    listed = {e["key"]: e for e in json.loads(out)}
    assert listed[key]["complete"] is False and listed[key]["url"] is None
    assert listed[os.path.basename(good)]["complete"] is True

    code, out, err = _cli("ls")
    assert code == 0 and "Traceback" not in err and key[:16] in out

    code, out, err = _cli("verify")
    assert code == 1 and "Traceback" not in err  # the malformed entry fails verification
    assert f"FAIL {key[:16]}" in out and f"OK   {os.path.basename(good)[:16]}" in out

    old = 1_000_000_000
    os.utime(cache_env / key, (old, old))
    code, out, err = _cli("prune")
    assert code == 0 and "Traceback" not in err
    assert not (cache_env / key).exists() and os.path.exists(good)


@pytest.mark.parametrize("value", ["0", "-1", "nan", "soon"])
def test_invalid_http_timeout_on_the_command_line(http_server, value):
    http_server.add("/w.bin", b"weights")
    code, out, err = _cli("fetch", http_server.url("/w.bin"),
                          env={"BERTCONVERT_HTTP_TIMEOUT": value})
    assert code == 2 and _one_line_error(err) and "BERTCONVERT_HTTP_TIMEOUT" in err, err
    assert http_server.count() == 0


# --- credentials in URLs -----------------------------------------------------------------------
SECRET = "s3cretPassw0rd"
SIGNATURE = "f00dfacecafe1234abcd"


def test_redact_url():
    assert redact_url(f"https://me:{SECRET}@host/w.bin") == "https://***:***@host/w.bin"
    assert redact_url("https://me@host/w.bin") == "https://***@host/w.bin"
    url = (f"https://b.s3.amazonaws.com/w.bin?X-Amz-Algorithm=AWS4-HMAC-SHA256&"
           f"X-Amz-Credential=AKIAEXAMPLE%2F20240101&X-Amz-Signature={SIGNATURE}&"
           "X-Amz-Security-Token=tok&versionId=3")
    assert redact_url(url) == ("https://b.s3.amazonaws.com/w.bin?X-Amz-Algorithm=AWS4-HMAC-SHA256&"
                               "X-Amz-Credential=***&X-Amz-Signature=***&"
                               "X-Amz-Security-Token=***&versionId=3")
    assert redact_url("s3://bucket/key") == "s3://bucket/key"
    message = f"GET /w.bin?X-Amz-Signature={SIGNATURE} failed for {url}"
    assert SIGNATURE not in scrub(message, url) and "AKIAEXAMPLE" not in scrub(message, url)


def _url_with_secrets(server, path):
    return (f"http://reader:{SECRET}@127.0.0.1:{server.port}{path}"
            f"?X-Amz-Signature={SIGNATURE}&v=1")


def test_credentials_are_never_stored_listed_or_logged(http_server, cache_env, caplog, capsys):
    res = http_server.add("/w.bin", b"weights" * 1000)
    url = _url_with_secrets(http_server, "/w.bin")
    with caplog.at_level(logging.DEBUG, logger="bertconvert"):
        path = cached_path(url, progress=False)
        assert cached_path(url, local_files_only=True) == path  # found by the full URL
    # The key still derives from the full URL, exactly as 0.6.2's did.
    assert os.path.basename(path) == expected_key(url, res.etag_header)
    assert http_server.log("GET")[0].headers["authorization"].startswith("Basic ")
    for name in cache_files(cache_env):
        if os.path.isfile(cache_env / name):
            content = (cache_env / name).read_bytes()
            assert SECRET.encode() not in content and SIGNATURE.encode() not in content
    meta = json.loads((cache_env / (os.path.basename(path) + ".json")).read_text())
    assert meta["url"] == redact_url(url) and "***" in meta["url"]
    assert caplog.records and not any(SECRET in r.getMessage() or SIGNATURE in r.getMessage()
                                      for r in caplog.records)

    for args in (["ls"], ["ls", "--json"], ["verify"], ["fetch", url]):
        assert main(["cache", *args, "-q"]) == 0
        out, err = capsys.readouterr()
        assert SECRET not in out + err and SIGNATURE not in out + err
        assert "***:***@" in out
    assert main(["cache", "rm", url]) == 0  # the full URL still selects its entries
    assert not os.path.exists(path)


def test_credentials_are_not_in_error_messages(http_server, cache_env, capsys):
    http_server.add("/gone", status=404)
    url = _url_with_secrets(http_server, "/gone")
    with pytest.raises(RemoteNotFoundError) as err:
        cached_path(url, progress=False)
    assert SECRET not in str(err.value) and SIGNATURE not in str(err.value)
    assert "***:***@" in str(err.value)
    assert main(["cache", "fetch", url]) == 2
    assert SECRET not in capsys.readouterr().err

    server = LoopbackServer().start()
    down = _url_with_secrets(server, "/w.bin")
    server.stop()  # connection refused: requests' own message quotes the path and query
    with pytest.raises(NetworkUnavailableError) as err:
        cached_path(down, progress=False)
    assert SECRET not in str(err.value) and SIGNATURE not in str(err.value)
