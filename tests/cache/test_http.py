"""cached_path over HTTP against a real loopback server with injected faults."""
import hashlib
import json
import logging
import os
import threading

import pytest

from bertconvert import cached_path, filename_to_url, url_to_filename
from bertconvert.cache.entries import default_cache_dir
from bertconvert.errors import (CacheEntryNotFoundError, DownloadError, IntegrityError,
                                NetworkUnavailableError, OfflineError, PathNotFoundError,
                                RemoteNotFoundError, UnsupportedURLError)
from .servers import LoopbackServer, cache_files, entry_names
from .keys import expected_key

pytestmark = pytest.mark.usefixtures("cache_env")

DATA = os.urandom(3 * 1024 * 1024 + 123)  # a few 1 MiB server chunks, odd length


def _sha(b):
    return hashlib.sha256(b).hexdigest()


def _read(path):
    with open(path, "rb") as f:
        return f.read()


def test_download_then_hit_costs_one_head(http_server, cache_env):
    res = http_server.add("/w.bin", DATA, flavor="s3")
    url = http_server.url("/w.bin")
    path = cached_path(url, progress=False)
    assert os.path.dirname(path) == str(cache_env)
    assert os.path.basename(path) == expected_key(url, res.etag_header)
    assert _read(path) == DATA
    meta = json.load(open(path + ".json"))
    assert meta["url"] == url and meta["etag"] == res.etag_header
    assert meta["size"] == len(DATA) and meta["sha256"] == _sha(DATA)
    assert "md5" in meta["verified"]  # S3's plain-MD5 ETag was checked
    assert [r.method for r in http_server.requests] == ["HEAD", "GET"]

    http_server.reset_log()
    assert cached_path(url, progress=False) == path
    assert [r.method for r in http_server.requests] == ["HEAD"]


def test_keys_and_metadata_compatible_with_ppb_062(tmp_path):
    ppb = pytest.importorskip("pytorch_pretrained_bert.file_utils")
    cases = [("https://s3.amazonaws.com/models.huggingface.co/bert/bert-base-uncased.tar.gz",
              '"61343686707ed78320e9e7f406946db2-10"'),
             ("s3://b/k", None), ("http://x/y", 'W/"1"')]
    for url, etag in cases:
        assert url_to_filename(url, etag) == ppb.url_to_filename(url, etag) == expected_key(url, etag)
    key = expected_key("http://x/y", '"e"')
    (tmp_path / key).write_bytes(b"data")
    (tmp_path / (key + ".json")).write_text(json.dumps({"url": "http://x/y", "etag": '"e"'}))
    expected = ("http://x/y", '"e"')
    assert filename_to_url(key, str(tmp_path)) == ppb.filename_to_url(key, str(tmp_path)) == expected
    with pytest.raises(CacheEntryNotFoundError) as err:
        filename_to_url("0" * 64, str(tmp_path))
    assert isinstance(err.value, EnvironmentError)  # what 0.6.2 callers catch
    (tmp_path / (key + ".json")).unlink()
    with pytest.raises(CacheEntryNotFoundError, match="metadata"):
        filename_to_url(key, str(tmp_path))


def test_reuses_an_existing_ppb_062_cache(http_server, tmp_path):
    ppb = pytest.importorskip("pytorch_pretrained_bert.file_utils")
    http_server.add("/vocab.txt", b"[PAD]\n[UNK]\nhello\n")
    url = http_server.url("/vocab.txt")
    legacy = str(tmp_path / "pytorch_pretrained_bert")
    old_path = ppb.cached_path(url, cache_dir=legacy)
    http_server.reset_log()
    assert cached_path(url, legacy, progress=False) == old_path
    assert [r.method for r in http_server.requests] == ["HEAD"]


@pytest.mark.parametrize("status", [404, 403])
def test_missing_or_denied_is_named_and_nothing_is_cached(http_server, cache_env, status):
    http_server.add("/gone", status=status)
    url = http_server.url("/gone")
    with pytest.raises(RemoteNotFoundError, match=str(status)) as err:
        cached_path(url, progress=False)
    assert url in str(err.value)
    assert entry_names(cache_env) == []
    with pytest.raises(OfflineError):  # and nothing that a later offline call could return
        cached_path(url, local_files_only=True)


def test_transient_500_is_retried(http_server, cache_env):
    http_server.add("/flaky", DATA, fail_first=2)
    path = cached_path(http_server.url("/flaky"), progress=False)
    assert _read(path) == DATA
    assert [r.status for r in http_server.requests] == [500, 500, 200, 200]


def test_persistent_500_caches_nothing(http_server, cache_env, monkeypatch):
    monkeypatch.setenv("BERTCONVERT_HTTP_RETRIES", "3")
    http_server.add("/down", DATA, fail_first=1000)
    with pytest.raises(NetworkUnavailableError) as err:
        cached_path(http_server.url("/down"), progress=False)
    assert isinstance(err.value, DownloadError) and isinstance(err.value, OfflineError)
    assert http_server.count() == 3
    assert entry_names(cache_env) == []


def test_connection_dropped_mid_body_resumes_with_range(http_server):
    res = http_server.add("/drop", DATA, drop_after=1_500_000)
    path = cached_path(http_server.url("/drop"), progress=False)
    assert _read(path) == DATA
    gets = http_server.log("GET")
    assert len(gets) == 2
    assert gets[1].headers["range"] == "bytes=1500000-"
    assert gets[1].headers["if-range"] == res.etag_header
    assert gets[1].status == 206 and gets[1].body_bytes == len(DATA) - 1_500_000


def test_server_ignoring_range_restarts_instead_of_appending(http_server):
    http_server.add("/norange", DATA, drop_after=1_000_000, ignore_range=True)
    path = cached_path(http_server.url("/norange"), progress=False)
    assert _read(path) == DATA  # an appended 200 body would be 1 MB too long
    gets = http_server.log("GET")
    assert gets[1].headers.get("range") == "bytes=1000000-" and gets[1].status == 200


def test_weak_etag_keys_the_entry_but_is_neither_md5_nor_resume_validator(http_server):
    weak = 'W/"%s"' % hashlib.md5(b"something else").hexdigest()
    http_server.add("/weak", DATA, etag=weak, drop_after=1_000_000)
    url = http_server.url("/weak")
    path = cached_path(url, progress=False)
    assert os.path.basename(path) == expected_key(url, weak)
    assert _read(path) == DATA
    gets = http_server.log("GET")
    assert "range" not in gets[1].headers  # no strong validator: restart, never splice


def test_no_etag_entry_is_keyed_by_url_and_refreshed_when_last_modified_changes(http_server):
    res = http_server.add("/plain", DATA, etag=None)
    url = http_server.url("/plain")
    path = cached_path(url, progress=False)
    assert os.path.basename(path) == expected_key(url)
    http_server.reset_log()
    assert cached_path(url, progress=False) == path
    assert [r.method for r in http_server.requests] == ["HEAD"]

    res.replace(DATA[::-1], etag=None)  # same URL, new content, new Last-Modified
    assert cached_path(url, progress=False) == path
    assert _read(path) == DATA[::-1]


def test_changed_etag_makes_a_new_entry_and_offline_uses_the_newest(http_server, cache_env):
    res = http_server.add("/v", b"version one")
    url = http_server.url("/v")
    first = cached_path(url, progress=False)
    os.utime(first, (1_000_000_000, 1_000_000_000))  # downloaded long ago
    res.replace(b"version two")
    second = cached_path(url, progress=False)
    assert second != first and _read(second) == b"version two"
    assert _read(first) == b"version one"  # the old entry is kept for other readers
    http_server.reset_log()
    assert cached_path(url, local_files_only=True) == second
    assert http_server.count() == 0


def test_md5_etag_mismatch_is_an_integrity_error_and_nothing_is_kept(http_server, cache_env):
    """An S3-like server (its headers say so) documents plain ETags as MD5s: a body that
    does not match is corrupt."""
    http_server.add("/corrupt", DATA, etag='"%s"' % hashlib.md5(b"other").hexdigest(),
                    flavor="s3")
    with pytest.raises(IntegrityError, match="md5"):
        cached_path(http_server.url("/corrupt"), progress=False)
    assert [n for n in cache_files(cache_env) if not n.endswith(".lock")] == []


def test_sha256_argument_is_enforced(http_server, cache_env):
    http_server.add("/s", DATA)
    url = http_server.url("/s")
    with pytest.raises(IntegrityError, match="sha256"):
        cached_path(url, sha256=_sha(b"not it"), progress=False)
    assert entry_names(cache_env) == []
    path = cached_path(url, sha256=_sha(DATA).upper(), progress=False)
    assert _read(path) == DATA
    with pytest.raises(OfflineError):  # the cached copy does not have the asked-for hash
        cached_path(url, sha256=_sha(b"not it"), local_files_only=True)


@pytest.mark.parametrize("direct_io", ["1", "0"])  # O_DIRECT partials, and page-cache ones
def test_truncating_server_leaves_only_a_hidden_partial_that_is_resumed(http_server, cache_env,
                                                                        monkeypatch, direct_io):
    monkeypatch.setenv("BERTCONVERT_DIRECT_IO", direct_io)
    monkeypatch.setenv("BERTCONVERT_HTTP_RETRIES", "2")
    res = http_server.add("/trunc", DATA, drop_after=2_000_000, drop_times=100)
    url = http_server.url("/trunc")
    with pytest.raises(DownloadError):
        cached_path(url, progress=False)
    assert entry_names(cache_env) == [n for n in entry_names(cache_env) if n.startswith(".")]
    assert any(".part-" in n for n in cache_files(cache_env))
    with pytest.raises(OfflineError):
        cached_path(url, local_files_only=True)

    res.drop_after = None
    http_server.reset_log()
    path = cached_path(url, progress=False)
    assert _read(path) == DATA
    assert http_server.log("GET")[0].headers["range"] == "bytes=2000000-"
    assert not any(".part-" in n for n in cache_files(cache_env))


def test_stall_longer_than_read_timeout_resumes(http_server, monkeypatch):
    """The server stalls until the test releases it (after the client has finished), so the
    read timeout fires however slow the machine is; the client resumes with a ranged GET."""
    monkeypatch.setenv("BERTCONVERT_HTTP_TIMEOUT", "1")
    release = threading.Event()
    http_server.add("/slow", DATA, stall_after=2 * 1024 * 1024, stall_until=release, chunk=256 * 1024)
    try:
        path = cached_path(http_server.url("/slow"), progress=False)
    finally:
        release.set()
    assert _read(path) == DATA
    gets = http_server.log("GET")
    # A busy machine may add a timeout of its own; each later GET must still be a resume.
    assert len(gets) >= 2 and "range" not in gets[0].headers
    assert all(g.headers["range"].startswith("bytes=") for g in gets[1:])


def test_offline_env_makes_no_network_call(http_server, monkeypatch):
    http_server.add("/o", DATA)
    url = http_server.url("/o")
    path = cached_path(url, progress=False)
    http_server.reset_log()
    monkeypatch.setenv("BERTCONVERT_OFFLINE", "1")
    assert cached_path(url) == path
    with pytest.raises(OfflineError, match="not in the cache"):
        cached_path(http_server.url("/never"))
    with pytest.raises(OfflineError):
        cached_path(url, force_download=True)
    assert http_server.count() == 0


def test_network_failure_falls_back_to_newest_cached_entry_with_warning(cache_env, caplog):
    server = LoopbackServer().start()
    server.add("/fb", DATA)
    url = server.url("/fb")
    path = cached_path(url, progress=False)
    server.stop()  # connection refused from now on
    with caplog.at_level(logging.WARNING, logger="bertconvert.cache.store"):
        assert cached_path(url, progress=False) == path
    assert any("network failure" in r.getMessage() and url in r.getMessage() for r in caplog.records)


def test_force_download_fetches_again(http_server):
    http_server.add("/f", DATA)
    url = http_server.url("/f")
    path = cached_path(url, progress=False)
    assert cached_path(url, force_download=True, progress=False) == path
    assert http_server.count("GET") == 2


def test_proxies_argument_routes_through_the_proxy(http_server, cache_env, monkeypatch):
    monkeypatch.delenv("NO_PROXY")
    monkeypatch.delenv("no_proxy")
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")  # the argument must win over this
    http_server.add("/via-proxy", DATA)  # the "proxy" answers absolute-URI requests itself
    url = "http://weights.example.invalid/via-proxy"
    path = cached_path(url, proxies={"http": http_server.url("")}, progress=False)
    assert _read(path) == DATA
    assert {r.proxied_host for r in http_server.requests} == {"weights.example.invalid"}


def test_local_paths_pass_through(tmp_path):
    f = tmp_path / "vocab.txt"
    f.write_text("hello\n")
    assert cached_path(str(f)) == str(f)
    assert cached_path(f) == str(f)
    assert cached_path(f.as_uri()) == str(f)
    with pytest.raises(PathNotFoundError) as err:
        cached_path(str(tmp_path / "missing.bin"))
    assert isinstance(err.value, EnvironmentError)
    with pytest.raises(UnsupportedURLError):
        cached_path("ftp://example.org/model.bin")
    with pytest.raises(IntegrityError):
        cached_path(str(f), sha256=_sha(b"nope"))


def test_cache_dir_resolution_order(monkeypatch, tmp_path):
    monkeypatch.setenv("BERTCONVERT_CACHE", str(tmp_path / "a"))
    monkeypatch.setenv("PYTORCH_PRETRAINED_BERT_CACHE", str(tmp_path / "b"))
    assert default_cache_dir() == str(tmp_path / "a")
    monkeypatch.delenv("BERTCONVERT_CACHE")
    assert default_cache_dir() == str(tmp_path / "b")
    monkeypatch.delenv("PYTORCH_PRETRAINED_BERT_CACHE")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_cache_dir() == str(tmp_path / "home" / ".cache" / "bertconvert")


def test_server_refusing_head_is_probed_with_a_ranged_get(http_server):
    res = http_server.add("/nohead", DATA, head_status=405)
    url = http_server.url("/nohead")
    path = cached_path(url, progress=False)
    assert _read(path) == DATA and os.path.basename(path) == expected_key(url, res.etag_header)
    assert [(r.method, r.headers.get("range")) for r in http_server.requests] == \
        [("HEAD", None), ("GET", "bytes=0-0"), ("GET", None)]


def test_object_replaced_between_head_and_get_is_fetched_consistently(http_server):
    res = http_server.add("/moving", b"old bytes", replace_after_head=b"new bytes")
    url = http_server.url("/moving")
    path = cached_path(url, progress=False)
    assert _read(path) == b"new bytes"
    assert os.path.basename(path) == expected_key(url, res.etag_header)  # keyed by the new ETag
    assert [r.method for r in http_server.requests] == ["HEAD", "GET", "HEAD", "GET"]


def _amz_checksum(algo, data):
    """An x-amz-checksum-* header value: base64 of the big-endian digest, as S3 sends it."""
    import base64
    import zlib

    if algo == "crc32":
        raw = zlib.crc32(data).to_bytes(4, "big")
    elif algo == "crc32c":
        import google_crc32c
        raw = google_crc32c.value(data).to_bytes(4, "big")
    elif algo == "crc64nvme":
        from awscrt.checksums import crc64nvme
        raw = crc64nvme(data).to_bytes(8, "big")
    else:
        raw = hashlib.new(algo, data).digest()
    return base64.b64encode(raw).decode()


@pytest.mark.parametrize("algo", ["crc32", "crc32c", "sha1", "sha256", "crc64nvme"])
def test_s3_style_checksum_headers_are_verified(http_server, cache_env, algo):
    header = f"x-amz-checksum-{algo}"
    http_server.add("/ok", DATA, etag='"opaque-v1"', headers={header: _amz_checksum(algo, DATA)})
    meta = json.load(open(cached_path(http_server.url("/ok"), progress=False) + ".json"))
    assert algo in meta["verified"]
    http_server.add("/bad", DATA, etag='"opaque-v2"',
                    headers={header: _amz_checksum(algo, DATA + b"x")})
    with pytest.raises(IntegrityError, match=header):
        cached_path(http_server.url("/bad"), progress=False)
    assert not [n for n in entry_names(cache_env) if "opaque-v2" in n]
    assert len([n for n in entry_names(cache_env) if not n.endswith(".json")]) == 1


def test_multipart_etag_trusts_crc64nvme_but_not_part_checksums(http_server):
    """A multipart object's CRC32 is a checksum of part checksums unless marked FULL_OBJECT;
    CRC64NVME exists only as a full-object checksum, so it is checked either way."""
    multipart = '"%s-3"' % hashlib.md5(b"parts").hexdigest()
    http_server.add("/m", DATA, etag=multipart,
                    headers={"x-amz-checksum-crc32": _amz_checksum("crc32", b"part checksums"),
                             "x-amz-checksum-crc64nvme": _amz_checksum("crc64nvme", DATA)})
    meta = json.load(open(cached_path(http_server.url("/m"), progress=False) + ".json"))
    assert meta["verified"] == ["crc64nvme"]


def test_checksum_without_its_library_is_not_claimed_verified(http_server, cache_env):
    """Without awscrt a CRC64NVME header cannot be checked: the download still succeeds
    (sha256 is recorded) but the metadata does not claim the check."""
    import subprocess
    import sys
    import textwrap

    http_server.add("/n", DATA, etag='"opaque-n"',
                    headers={"x-amz-checksum-crc64nvme": _amz_checksum("crc64nvme", DATA)})
    code = textwrap.dedent(f"""
        import json, sys
        sys.modules["awscrt"] = None  # as if awscrt had no wheel for this platform
        from bertconvert.cache.store import cached_path
        path = cached_path({http_server.url("/n")!r}, progress=False)
        print(json.dumps(json.load(open(path + ".json"))["verified"]))
        """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, env=dict(os.environ, BERTCONVERT_CACHE=str(cache_env)))
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == []


def test_redirect_to_a_get_only_signed_url_is_followed(http_server):
    """Mirrors often redirect to presigned S3 URLs, which are signed for GET: HEAD gets 403."""
    http_server.add("/signed/w.bin", DATA, head_status=403, flavor="s3")
    http_server.add("/mirror/w.bin", redirect_to="/signed/w.bin")
    path = cached_path(http_server.url("/mirror/w.bin"), progress=False)
    assert _read(path) == DATA
    assert json.load(open(path + ".json"))["verified"] == ["md5"]
    http_server.add("/gone", status=403)  # a real 403 (no redirect) is still final
    http_server.add("/mirror/gone", redirect_to="/gone")
    for url in ("/gone", "/mirror/gone"):
        with pytest.raises(RemoteNotFoundError):
            cached_path(http_server.url(url), progress=False)


# --- how bodies are received and hashed ----------------------------------------------------------
def _receive_paths(caplog):
    """How each body was received, from the receive module's debug lines."""
    return [r.getMessage()[len("receiving "):] for r in caplog.records
            if r.name == "bertconvert.cache.receive" and r.getMessage().startswith("receiving ")]


def test_plain_bodies_are_read_straight_from_the_socket(http_server, caplog):
    """The zero-allocation receive path relies on the http.client response that urllib3 keeps
    privately; if a requests/urllib3 release moves it, downloads fall back to urllib3's reads
    (still correct, ~0.2 s slower per 440 MB). This notices that move."""
    http_server.add("/plain.bin", b"x" * 5000)
    http_server.add("/chunked.bin", b"y" * 5000, chunked=True)
    with caplog.at_level(logging.DEBUG, logger="bertconvert.cache.receive"):
        assert _read(cached_path(http_server.url("/plain.bin"), progress=False)) == b"x" * 5000
        assert _read(cached_path(http_server.url("/chunked.bin"), progress=False)) == b"y" * 5000
    assert _receive_paths(caplog) == [f"{http_server.url('/plain.bin')} straight from the socket",
                                      f"{http_server.url('/chunked.bin')} through urllib3"]


@pytest.mark.parametrize("way", ["socket", "chunked", "no socket access"])
def test_dropped_body_is_resumed_on_either_receive_path(http_server, monkeypatch, way):
    """Whichever way the body comes in -- from the socket, through urllib3 for a chunked
    body, or through urllib3 because this requests/urllib3 offers no way to the socket --
    the entry is the same: whole, verified, resumed after the drop."""
    if way == "no socket access":
        from bertconvert.cache import receive

        monkeypatch.setattr(receive, "socket_reader", lambda response: None)
    data = os.urandom(3 * 1024 * 1024 + 17)  # over several receive blocks, not a multiple
    http_server.add("/drop.bin", data, chunk=200_000, drop_after=1_500_001,
                    chunked=way == "chunked", flavor="s3")
    path = cached_path(http_server.url("/drop.bin"), progress=False)
    assert _read(path) == data
    meta = json.loads(_read(path + ".json"))
    assert meta["sha256"] == _sha(data) and meta["verified"] == ["md5"]
    gets = http_server.log("GET")
    assert len(gets) == 2 and gets[1].headers["range"].startswith("bytes=")


# --- HTTPS ----------------------------------------------------------------------------------------
def test_https_download_is_verified_and_resumed(https_server, caplog):
    """Over TLS too the body is read straight from the socket, verified, and resumed."""
    data = os.urandom(3 * 1024 * 1024 + 5)
    https_server.add("/tls.bin", data, chunk=200_000, drop_after=1_500_001, flavor="s3")
    url = https_server.url("/tls.bin")
    assert url.startswith("https://")
    with caplog.at_level(logging.DEBUG, logger="bertconvert.cache.receive"):
        path = cached_path(url, progress=False)
    assert _read(path) == data
    assert json.loads(_read(path + ".json"))["verified"] == ["md5"]
    gets = https_server.log("GET")
    assert [g.status for g in gets] == [200, 206]
    assert _receive_paths(caplog) == [f"{url} straight from the socket"] * 2


def test_untrusted_certificate_fails_at_once_with_a_hint(tls_certificate, monkeypatch, cache_env):
    from bertconvert.errors import CertificateError, NetworkUnavailableError

    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)
    with LoopbackServer(tls=tls_certificate) as server:
        server.add("/tls.bin", b"weights")
        url = server.url("/tls.bin")
        with pytest.raises(NetworkUnavailableError, match="certificate verification failed .*"
                           "REQUESTS_CA_BUNDLE") as info:
            cached_path(url, progress=False)
        assert isinstance(info.value.__cause__, CertificateError)
        # A failed verification is not retried: one connection, whose handshake failed.
        assert server.count() == 0 and server.connections == 1
        # With a copy cached earlier, the copy is served, as for any network failure.
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", tls_certificate[0])
        path = cached_path(url, progress=False)
        monkeypatch.delenv("REQUESTS_CA_BUNDLE")
        assert cached_path(url, progress=False) == path


# --- content-encoded objects (S3 objects stored with Content-Encoding metadata) -----------------
def _encoded(payload, encoding):
    import gzip
    import zlib

    if encoding == "gzip":  # two members, as `cat a.gz b.gz` makes: both must be decoded
        half = len(payload) // 2
        return gzip.compress(payload[:half]) + gzip.compress(payload[half:])
    return zlib.compress(payload)


@pytest.mark.parametrize("encoding", ["gzip", "deflate"])
def test_content_encoded_object_is_cached_decoded_and_checked_as_sent(http_server, encoding):
    """The ETag is the MD5 of the encoded bytes the server stores and sends; the cache holds
    the decoded file (as requests and ppb 0.6.2 give it), and checks the MD5 on what was sent."""
    payload = os.urandom(200_000) + b"weights " * 100_000
    body = _encoded(payload, encoding)
    http_server.add("/enc.bin", body, headers={"Content-Encoding": encoding}, flavor="s3")
    url = http_server.url("/enc.bin")
    path = cached_path(url, progress=False)
    assert _read(path) == payload
    meta = json.loads(_read(path + ".json"))
    assert meta["verified"] == ["md5"] and meta["content_encoding"] == encoding
    assert meta["sha256"] == _sha(payload) and meta["size"] == len(payload)
    http_server.reset_log()
    assert cached_path(url, progress=False) == path  # a hit: one HEAD
    assert [r.method for r in http_server.requests] == ["HEAD"]
    # sha256= describes the file the caller gets, i.e. the decoded one.
    assert cached_path(url, progress=False, sha256=_sha(payload)) == path


def test_content_encoded_body_damaged_on_the_wire_is_refused(http_server, cache_env):
    payload = b"weights " * 50_000
    body = _encoded(payload, "gzip")
    http_server.add("/enc.bin", body, headers={"Content-Encoding": "gzip"},
                    etag='"' + hashlib.md5(body + b"x").hexdigest() + '"', flavor="s3")
    with pytest.raises(IntegrityError, match="gzip-encoded bytes sent"):
        cached_path(http_server.url("/enc.bin"), progress=False)
    assert not [n for n in cache_files(cache_env) if not n.endswith(".lock")]


def test_content_encoded_body_that_does_not_decode_is_refused(http_server, cache_env):
    http_server.add("/bad.bin", os.urandom(5000), headers={"Content-Encoding": "gzip"})
    with pytest.raises(IntegrityError, match="does not decode"):
        cached_path(http_server.url("/bad.bin"), progress=False)
    assert not [n for n in cache_files(cache_env) if not n.endswith(".lock")]


def test_content_encoded_body_is_restarted_never_resumed(http_server):
    """Byte ranges count encoded bytes while the partial file holds decoded ones: after a
    dropped connection the download starts over."""
    payload = os.urandom(300_000) * 3
    body = _encoded(payload, "gzip")
    http_server.add("/enc.bin", body, headers={"Content-Encoding": "gzip"}, chunk=100_000,
                    drop_after=len(body) // 2)
    path = cached_path(http_server.url("/enc.bin"), progress=False)
    assert _read(path) == payload
    gets = http_server.log("GET")
    assert len(gets) == 2 and not any("range" in g.headers for g in gets)


def test_encoding_that_head_did_not_announce_is_a_named_error(http_server, cache_env):
    """Planned for an identity body, the ETag's MD5 would be compared with decoded bytes and
    a good download called corrupt: a server whose HEAD and GET disagree is said to be so."""
    from bertconvert.errors import RemoteChangedError

    body = _encoded(b"weights " * 10_000, "gzip")
    http_server.add("/enc.bin", body, get_headers={"Content-Encoding": "gzip"})
    with pytest.raises(RemoteChangedError, match="Content-Encoding gzip but its HEAD said "
                       "identity"):
        cached_path(http_server.url("/enc.bin"), progress=False)
    assert not [n for n in cache_files(cache_env) if not n.endswith(".lock")]
