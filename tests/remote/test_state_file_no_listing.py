"""An s3:// directory whose ``checkpoint`` state file names an existing checkpoint is resolved
without listing the bucket: a reader granted s3:GetObject only (no s3:ListBucket, common for
shared read-only buckets) must not be refused. The listing is the fallback when the state
file is missing or names a checkpoint that is not there."""
from bertconvert.cache.objects import S3Objects
from bertconvert.cache.remote_checkpoint import resolve_remote_prefix
from ..cache.servers import s3_calls  # noqa: F401 - a fixture


def _put(s3_env, names):
    client = s3_env.client()
    for key, body in names.items():
        client.put_object(Bucket=s3_env.bucket, Key=key, Body=body)
    return f"s3://{s3_env.bucket}/run/"


def _operations(calls):
    return [op for op, _ in calls]


def test_a_valid_state_file_needs_no_listing(s3_env, cache_env, s3_calls):
    base = _put(s3_env, {"run/checkpoint": b'model_checkpoint_path: "/tpu/out/model.ckpt-1000"\n',
                         "run/model.ckpt-1000.index": b"index",
                         "run/model.ckpt-500.index": b"older"})
    del s3_calls[:]
    assert resolve_remote_prefix(S3Objects(), base) == base + "model.ckpt-1000"
    assert "ListObjectsV2" not in _operations(s3_calls), _operations(s3_calls)


def test_a_stale_state_file_falls_back_to_the_listing(s3_env, cache_env, s3_calls):
    base = _put(s3_env, {"run/checkpoint": b'model_checkpoint_path: "model.ckpt-2000"\n',
                         "run/model.ckpt-1000.index": b"index"})
    del s3_calls[:]
    assert resolve_remote_prefix(S3Objects(), base) == base + "model.ckpt-1000"
    assert "ListObjectsV2" in _operations(s3_calls)
