"""What the bucket examples convert: every checkpoint under a folder or an S3 prefix, and
where each one's model directory goes. (Shared by ``convert_bucket_dask.py`` and
``convert_bucket_futures.py``; they run it on the client only, never on a worker.)

A checkpoint is found by its ``.index`` file (``run/model.ckpt-1000.index`` -> the source
``run/model.ckpt-1000``); its model directory is the same relative path under ``out``
(``OUT/run/model.ckpt-1000/``), so every checkpoint of a training run is converted, and
the output layout mirrors the input's. Sources and outputs may be local paths or
``s3://`` URLs (listed with boto3's standard configuration: ``AWS_ENDPOINT_URL_S3``,
profiles, instance roles).
"""
import os

INDEX = ".index"


def _list_s3(url):
    import boto3

    bucket, _, prefix = url[len("s3://"):].partition("/")
    pages = boto3.client("s3").get_paginator("list_objects_v2").paginate(Bucket=bucket,
                                                                         Prefix=prefix)
    for page in pages:
        for obj in page.get("Contents", []):
            if obj["Key"].endswith(INDEX):
                key = obj["Key"][:-len(INDEX)]
                yield f"s3://{bucket}/{key}", key[len(prefix):].lstrip("/")


def _list_local(root):
    for directory, dirs, names in os.walk(root):
        dirs.sort()
        for name in sorted(names):
            if name.endswith(INDEX) and not name.startswith("."):
                prefix = os.path.join(directory, name[:-len(INDEX)])
                yield prefix, os.path.relpath(prefix, root).replace(os.sep, "/")


def checkpoint_jobs(source, out):
    """``[(checkpoint, output)]`` for every checkpoint under ``source`` (a folder or an
    ``s3://bucket/prefix/``), each output under ``out`` (a folder or an S3 prefix)."""
    found = _list_s3(source) if source.startswith("s3://") else _list_local(source)
    jobs = []
    for checkpoint, relative in found:
        if out.startswith("s3://"):
            jobs.append((checkpoint, f"{out.rstrip('/')}/{relative}/"))
        else:
            jobs.append((checkpoint, os.path.join(out, *relative.split("/"))))
    return jobs


def convert_one(checkpoint, output, **options):
    """Convert one checkpoint; a result line (a dict) rather than an exception, so that one
    bad checkpoint does not stop the others. Safe to run twice at once for the same
    output: an S3 output is published once (the other run reports it unchanged or already
    published); a local one is written by the first run to finish, and an existing local
    output is kept ("exists")."""
    from bertconvert import convert_checkpoint
    from bertconvert.errors import BertConvertError

    from bertconvert.errors import OutputExistsError, PublishConflictError

    try:
        report = convert_checkpoint(checkpoint, output, progress=False, **options)
    except OutputExistsError as e:
        if "://" in output or isinstance(e, PublishConflictError):
            return {"checkpoint": checkpoint, "output": output, "error": type(e).__name__,
                    "message": str(e)}
        # A local output of an earlier run: kept (not compared; S3 outputs are compared).
        return {"checkpoint": checkpoint, "output": output, "status": "exists"}
    except BertConvertError as e:
        return {"checkpoint": checkpoint, "output": output, "error": type(e).__name__,
                "message": str(e)}
    status = (report.publication or {}).get("status", "converted")
    return {"checkpoint": checkpoint, "output": output, "status": status, "head": report.head}
