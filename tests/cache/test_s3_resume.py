"""An S3 resume never splices two versions of an object: the ranged GET carries If-Match.

The object is replaced on moto's server at the exact moment the resume's ranged GetObject is
about to be sent (a botocore ``provide-client-params`` handler on the client cached_path
builds: the test only watches the call and changes the object through its own client; the
request itself goes out unchanged)."""
import os

import pytest

from bertconvert import cached_path
from bertconvert.cache import s3 as s3_transport
from bertconvert.errors import RemoteChangedError
from .keys import expected_key

pytestmark = pytest.mark.usefixtures("cache_env")


def _abandoned_partial(cache_env, url, etag, data):
    import subprocess

    from bertconvert.cache.locks import _HOST, PARTIAL_MARKER

    dead = subprocess.Popen(["true"])
    dead.wait()
    cache_env.mkdir(parents=True, exist_ok=True)
    partial = cache_env / f".{expected_key(url, etag)}{PARTIAL_MARKER}{_HOST}-{dead.pid}-0123456789ab"
    partial.write_bytes(data)
    return partial


def test_object_replaced_before_the_resume_is_never_spliced(s3_env, cache_env, monkeypatch):
    old, new = os.urandom(3_000_000), os.urandom(3_000_000)   # same size: only the ETag differs
    owner = s3_env.client()
    owner.put_object(Bucket=s3_env.bucket, Key="c.bin", Body=old)
    etag = owner.head_object(Bucket=s3_env.bucket, Key="c.bin")["ETag"]
    url = s3_env.url("c.bin")
    _abandoned_partial(cache_env, url, etag, old[:1_000_000])
    ranged_gets = []

    def replace_before_the_ranged_get(params, **_):
        if params.get("Range") and not ranged_gets:
            ranged_gets.append(dict(params))
            owner.put_object(Bucket=s3_env.bucket, Key="c.bin", Body=new)

    real_make_client = s3_transport.make_client

    def make_client(*args, **kwargs):
        client = real_make_client(*args, **kwargs)
        client.meta.events.register("provide-client-params.s3.GetObject", replace_before_the_ranged_get)
        return client

    monkeypatch.setattr(s3_transport, "make_client", make_client)
    try:
        path = cached_path(url, progress=False)
    except RemoteChangedError as e:        # detected: the download fails, saying why
        assert "changed" in str(e)
        path = None
    assert ranged_gets and ranged_gets[0]["Range"] == "bytes=1000000-"  # it was a resume
    if path is not None:                    # or restarted from byte 0: the new object, whole
        with open(path, "rb") as f:
            assert f.read() == new
    # Nothing of the old version is kept to be resumed again, and a new fetch is the new object.
    assert not [n for n in os.listdir(cache_env) if ".part-" in n]
    with open(cached_path(url, progress=False), "rb") as f:
        assert f.read() == new
