"""A checkpoint in one bucket converted into another prefix: the source's pins identify the
conversion, so running it again reads the .index and the marker and no shard byte."""
from bertconvert.convert.run import convert_checkpoint
from ..cache.servers import s3_calls  # noqa: F401  (fixture)
from .helpers import upload


def _shard_reads(calls, bucket):
    return [p for op, p in calls if op == "GetObject" and p.get("Bucket") == bucket
            and ".data-" in p.get("Key", "")]


def test_s3_source_to_s3_output_then_a_rerun_is_a_no_op(s3_env, cache_env, adam_checkpoint,
                                                        s3_calls, tmp_path):  # noqa: F811
    directory, prefix, _ = adam_checkpoint
    source = upload(s3_env, directory, "run") + "model.ckpt-1000"
    out = f"s3://{s3_env.bucket}/converted/"
    first = convert_checkpoint(source, out, progress=False)
    assert first.publication["status"] == "published"
    assert _shard_reads(s3_calls, s3_env.bucket), "the first run reads the planned ranges"
    identity = first.publication["identity"]["source"]["checkpoint"]
    assert [o["etag"] for o in identity["objects"]] and all(o["etag"] for o in identity["objects"])

    del s3_calls[:]
    again = convert_checkpoint(source, out, progress=False)
    assert again.publication["status"] == "unchanged"
    assert _shard_reads(s3_calls, s3_env.bucket) == []
    puts = [op for op, _ in s3_calls if op in ("PutObject", "CreateMultipartUpload")]
    assert puts == []

    # The same weights as a local conversion of the same checkpoint.
    local = convert_checkpoint(prefix, tmp_path / "local", progress=False)
    body = s3_env.client().get_object(Bucket=s3_env.bucket,
                                      Key="converted/model.safetensors")["Body"].read()
    assert body == (tmp_path / "local" / "model.safetensors").read_bytes()
    assert local.head == first.head
