"""How the cache shows URLs: a token in the userinfo (user name only, no password) never
reaches the metadata, `cache ls` or an error message; control characters in URLs and paths
are escaped, so one message stays one line."""
import json
import os

import pytest

from bertconvert import cached_path
from bertconvert.cli import main
from bertconvert.errors import (NetworkUnavailableError, PathNotFoundError, RemoteNotFoundError,
                                UnsupportedURLError)
from bertconvert.cache.redact import printable, redact_url, scrub, shown_url
from .servers import LoopbackServer, cache_files

pytestmark = pytest.mark.usefixtures("cache_env")

TOKEN = "ghp_R4nd0mT0kenValue0123456789"


def _token_url(server, path):
    return f"http://{TOKEN}@127.0.0.1:{server.port}{path}"


def _files_text(cache_dir):
    """Everything the cache directory holds, as one byte string (files only)."""
    blob = b""
    for d, _, names in os.walk(cache_dir):
        for name in names:
            blob += name.encode() + b"\n"
            with open(os.path.join(d, name), "rb") as f:
                blob += f.read()
    return blob


def test_redact_url_hides_any_userinfo():
    assert redact_url(f"https://{TOKEN}@host/w.bin") == "https://***@host/w.bin"
    assert redact_url(f"https://oauth2:{TOKEN}@host/w.bin") == "https://***:***@host/w.bin"
    assert redact_url(f"https://{TOKEN}:x-oauth-basic@host/w.bin") == "https://***:***@host/w.bin"
    assert redact_url(f"https://{TOKEN}:@host/w") == "https://***:@host/w"
    assert redact_url("https://host/w.bin?v=1") == "https://host/w.bin?v=1"
    message = f"failed: http://{TOKEN}@host:8/x and again {TOKEN}"
    assert TOKEN not in scrub(message, f"http://{TOKEN}@host:8/x")


def test_user_only_token_is_never_stored_or_listed(http_server, cache_env, capsys):
    http_server.add("/w.bin", b"weights" * 100)
    url = _token_url(http_server, "/w.bin")
    path = cached_path(url, progress=False)
    assert http_server.count("GET", "/w.bin") == 1
    assert TOKEN.encode() not in _files_text(cache_env)
    meta = json.loads(open(path + ".json").read())
    assert meta["url"] == f"http://***@127.0.0.1:{http_server.port}/w.bin"
    assert cached_path(url, local_files_only=True) == path  # still found by its full URL

    for args in (["ls"], ["ls", "--json"], ["verify"], ["fetch", url]):
        assert main(["cache", *args, "-q"]) == 0
        out, err = capsys.readouterr()
        assert TOKEN not in out + err
        assert "***@127.0.0.1" in out


def test_entry_written_by_an_older_version_is_listed_redacted(http_server, cache_env, capsys):
    http_server.add("/w.bin", b"weights")
    path = cached_path(http_server.url("/w.bin"), progress=False)
    meta = json.loads(open(path + ".json").read())
    meta["url"] = _token_url(http_server, "/w.bin")  # as 0.6.2 or an older bertconvert wrote it
    with open(path + ".json", "w") as f:
        json.dump(meta, f)
    for args in (["ls"], ["ls", "--json"], ["verify"]):
        assert main(["cache", *args, "-q"]) == 0
        out, err = capsys.readouterr()
        assert TOKEN not in out + err and "***@127.0.0.1" in out


def test_user_only_token_is_not_in_error_messages(http_server, cache_env, capsys):
    http_server.add("/gone", status=404)
    url = _token_url(http_server, "/gone")
    with pytest.raises(RemoteNotFoundError) as err:
        cached_path(url, progress=False)
    assert TOKEN not in str(err.value) and "***@127.0.0.1" in str(err.value)
    assert main(["cache", "fetch", url]) == 2
    out, err_text = capsys.readouterr()
    assert TOKEN not in out + err_text and "HTTP 404" in err_text
    assert TOKEN.encode() not in _files_text(cache_env)

    server = LoopbackServer().start()
    down = _token_url(server, "/w.bin")
    server.stop()  # connection refused
    with pytest.raises(NetworkUnavailableError) as err:
        cached_path(down, progress=False)
    assert TOKEN not in str(err.value)


# --- control characters -------------------------------------------------------------------------
def test_printable_escapes_control_characters():
    assert printable("a\r\nb\x00c\x1b[31m\x7f\u2028d\te") == "a\\r\\nb\\x00c\\x1b[31m\\x7f\\u2028d\\te"
    assert printable("plain/path é") == "plain/path é"
    # Not lost either: urlsplit alone would drop CR, LF and TAB silently.
    assert shown_url(f"http://{TOKEN}@h/a\r\nb") == "http://***@h/a\\r\\nb"


@pytest.mark.parametrize("suffix", ["\r\nX-Forged: 1", "\x00evil", "\nbertconvert: fake line",
                                    "\u2028x"])
def test_control_characters_in_a_url_are_refused_and_escaped(http_server, cache_env, capsys,
                                                             suffix):
    http_server.add("/w.bin", b"weights")
    url = http_server.url("/w.bin") + suffix
    with pytest.raises(UnsupportedURLError) as err:
        cached_path(url, progress=False)
    message = str(err.value)
    assert printable(suffix) in message and not any(c in message for c in "\r\n\x00\u2028")
    assert http_server.count() == 0 and cache_files(cache_env) == []
    assert main(["cache", "fetch", url]) == 2
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("bertconvert cache: error:"), lines
    assert "\x00" not in lines[0] and "\u2028" not in lines[0]


def test_control_characters_in_a_missing_path_are_escaped(tmp_path):
    with pytest.raises(PathNotFoundError) as err:
        cached_path(str(tmp_path / "no\nsuch\rfile"))
    assert "no\\nsuch\\rfile" in str(err.value) and "\n" not in str(err.value)


def test_ls_escapes_control_characters_in_recorded_urls(http_server, cache_env, capsys):
    http_server.add("/w.bin", b"weights")
    path = cached_path(http_server.url("/w.bin"), progress=False)
    meta = json.loads(open(path + ".json").read())
    meta["url"] = http_server.url("/w.bin") + "\r\nforged row"
    with open(path + ".json", "w") as f:
        json.dump(meta, f)
    assert main(["cache", "ls"]) == 0
    out = capsys.readouterr().out
    assert "\\r\\nforged row" in out and "\r" not in out
    assert len(out.strip().splitlines()) == 3  # the summary, the header, one entry
