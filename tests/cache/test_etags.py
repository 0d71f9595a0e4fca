"""ETags are opaque (RFC 9110): an MD5 only where the server documents it so (S3 and
S3-compatible stores); GCS is checked with x-goog-hash; lengths known from any header stop a
truncated body from being committed."""
import base64
import gzip
import hashlib
import json
import os

import google_crc32c  # a required dependency (setup.cfg): never skipped
import pytest

from bertconvert import cached_path
from bertconvert.errors import CacheSettingError, IntegrityError
from .servers import entry_names
from .keys import expected_key

pytestmark = pytest.mark.usefixtures("cache_env")

DATA = os.urandom(2 * 1024 * 1024 + 77)


def _meta(path):
    with open(path + ".json") as f:
        return json.load(f)


def _read(path):
    with open(path, "rb") as f:
        return f.read()


def _b64(raw):
    return base64.b64encode(raw).decode()


def _crc32c(data):
    return google_crc32c.value(data).to_bytes(4, "big")


@pytest.mark.parametrize("etag", ["opaque", "md5"])
def test_plain_server_etag_is_a_key_not_a_checksum(http_server, cache_env, etag):
    """32 hex digits that are not the content's MD5 (a version hash, say) must not fail the
    download; a plain server's ETag is never claimed as an md5 check, even when it is one."""
    res = http_server.add("/w.bin", DATA, etag=etag)
    assert len(res.etag_header.strip('"')) == 32
    url = http_server.url("/w.bin")
    path = cached_path(url, progress=False)
    assert _read(path) == DATA
    assert os.path.basename(path) == expected_key(url, res.etag_header)  # still the key
    meta = _meta(path)
    assert meta["etag"] == res.etag_header and "md5" not in meta["verified"]


def test_opaque_etag_still_validates_a_resume(http_server):
    res = http_server.add("/w.bin", DATA, etag="opaque", drop_after=1_000_000)
    path = cached_path(http_server.url("/w.bin"), progress=False)
    assert _read(path) == DATA
    gets = http_server.log("GET")
    assert gets[1].headers["range"] == "bytes=1000000-"
    assert gets[1].headers["if-range"] == res.etag_header


@pytest.mark.parametrize("headers", [{"Server": "AmazonS3"}, {"x-amz-request-id": "4442587FB7D0A2F9"},
                                     {"x-amz-id-2": "vlR7PnpV2Ce81puvqd", "Server": "MinIO"}],
                         ids=["server", "request-id", "minio"])
def test_s3_like_servers_etag_is_an_md5(http_server, cache_env, headers):
    wrong = '"%s"' % hashlib.md5(DATA + b"x").hexdigest()
    http_server.add("/bad.bin", DATA, etag=wrong, headers=headers)
    with pytest.raises(IntegrityError, match="md5 .* ETag"):
        cached_path(http_server.url("/bad.bin"), progress=False)
    assert entry_names(cache_env) == []
    http_server.add("/ok.bin", DATA, headers=headers)
    assert _meta(cached_path(http_server.url("/ok.bin"), progress=False))["verified"] == ["md5"]


def test_s3_like_server_with_a_corrupted_body(http_server, cache_env):
    """The flavor's own headers (x-amz-request-id, x-amz-id-2, Server: AmazonS3)."""
    corrupted = bytearray(DATA)
    corrupted[123_456] ^= 1
    res = http_server.add("/c.bin", bytes(corrupted), flavor="s3")
    res.replace(etag='"%s"' % hashlib.md5(DATA).hexdigest())  # the ETag of the good bytes
    with pytest.raises(IntegrityError, match="md5"):
        cached_path(http_server.url("/c.bin"), progress=False)
    assert entry_names(cache_env) == []


def test_etag_md5_setting(http_server, cache_env, monkeypatch):
    wrong = '"%s"' % hashlib.md5(b"other").hexdigest()
    http_server.add("/plain.bin", DATA, etag=wrong)
    http_server.add("/s3.bin", DATA, etag=wrong, flavor="s3")
    monkeypatch.setenv("BERTCONVERT_ETAG_MD5", "1")  # "this mirror's ETags are MD5s"
    with pytest.raises(IntegrityError):
        cached_path(http_server.url("/plain.bin"), progress=False)
    monkeypatch.setenv("BERTCONVERT_ETAG_MD5", "0")
    assert _read(cached_path(http_server.url("/s3.bin"), progress=False)) == DATA
    monkeypatch.setenv("BERTCONVERT_ETAG_MD5", "sometimes")
    with pytest.raises(CacheSettingError, match="BERTCONVERT_ETAG_MD5"):
        cached_path(http_server.url("/plain.bin"), progress=False)


# --- Google Cloud Storage ----------------------------------------------------------------------
def test_gcs_hashes_are_verified_and_its_etag_is_not(http_server):
    http_server.add("/g.bin", DATA, flavor="gcs", etag="opaque")
    meta = _meta(cached_path(http_server.url("/g.bin"), progress=False))
    assert sorted(meta["verified"]) == ["crc32c", "md5"]


@pytest.mark.parametrize("bad", ["md5", "crc32c", "both"])
def test_gcs_hash_mismatch_is_an_integrity_error(http_server, cache_env, bad):
    other = DATA[:-1] + bytes([DATA[-1] ^ 1])
    md5 = hashlib.md5(other if bad in ("md5", "both") else DATA).digest()
    crc = _crc32c(other if bad in ("crc32c", "both") else DATA)
    if bad == "both":  # the flavor's own corrupted copy
        http_server.add("/g.bin", DATA, flavor="gcs", checksum_data=other)
    else:
        http_server.add("/g.bin", DATA, flavor="gcs",
                        headers={"x-goog-hash": f"crc32c={_b64(crc)},md5={_b64(md5)}"})
    expected = "md5" if bad == "md5" else "crc32c|md5"
    with pytest.raises(IntegrityError, match=f"({expected}) .*x-goog-hash"):
        cached_path(http_server.url("/g.bin"), progress=False)
    assert entry_names(cache_env) == []


def test_gcs_transcoded_object_skips_hashes_of_the_stored_bytes(http_server):
    """GCS decompresses a gzip-stored object for a client that does not accept gzip; its
    x-goog-hash then describes the stored (compressed) bytes, not the body."""
    stored = gzip.compress(DATA)
    http_server.add("/t.bin", DATA, flavor="gcs", checksum_data=stored,
                    headers={"x-goog-stored-content-encoding": "gzip",
                             "x-goog-stored-content-length": str(len(stored))})
    path = cached_path(http_server.url("/t.bin"), progress=False)
    assert _read(path) == DATA and _meta(path)["verified"] == []


# --- bodies without a Content-Length -------------------------------------------------------------
def test_body_without_length_that_ends_early_uses_the_stored_length(http_server):
    """A close-delimited body that stops early looks complete to HTTP; GCS's
    x-goog-stored-content-length says otherwise, so it is resumed, not committed."""
    res = http_server.add("/n.bin", DATA, flavor="gcs", content_length=False,
                          drop_after=1_000_000, headers={"x-goog-hash": ""})
    path = cached_path(http_server.url("/n.bin"), progress=False)
    assert _read(path) == DATA
    gets = http_server.log("GET")
    assert len(gets) == 2 and gets[1].headers["range"] == "bytes=1000000-"
    assert res.etag_header == _meta(path)["etag"]


def test_encoded_body_cut_at_a_gzip_member_boundary_is_not_committed(http_server):
    """Each gzip member decodes cleanly, so only the length HEAD announced shows that the
    second one never came."""
    first, second = gzip.compress(DATA[:1_000_000]), gzip.compress(DATA[1_000_000:])
    http_server.add("/e.bin", first + second, headers={"Content-Encoding": "gzip"},
                    content_length="head", drop_after=len(first))
    path = cached_path(http_server.url("/e.bin"), progress=False)
    assert _read(path) == DATA
    assert len(http_server.log("GET")) == 2
