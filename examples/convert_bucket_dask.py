"""Convert every TF checkpoint under a folder or bucket prefix with dask.distributed.

    python examples/convert_bucket_dask.py s3://runs/bert/ s3://models/bert/ --workers 8
    python examples/convert_bucket_dask.py runs/ s3://models/bert/ --scheduler tcp://host:8786

Each checkpoint (every ``*.index`` under the source) becomes one task of ``Client.map``; the
workers run :func:`bertconvert.convert_checkpoint`, which is idempotent for S3 outputs (the
model is published complete or not at all, ``conversion.json`` last, once; the same
conversion again uploads nothing), so a task dask retries, or a second run of this script
after a crash, redoes only what is missing. Without ``--scheduler`` a ``LocalCluster`` with
``--workers`` processes (one thread each: conversion is CPU and I/O bound) is started.
Sources may be local paths, or any URL ``convert_checkpoint`` accepts. Prints one JSON line
per checkpoint; exits 1 if any failed. Needs ``pip install 'dask[distributed]'``.
"""
import argparse
import json
import sys

from checkpoints_under import checkpoint_jobs, convert_one


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("source", help="folder or s3://bucket/prefix/ holding checkpoints")
    p.add_argument("out", help="folder or s3://bucket/prefix/ for the model directories")
    p.add_argument("--scheduler", help="address of a running dask scheduler")
    p.add_argument("--workers", type=int, default=4, help="LocalCluster worker processes")
    p.add_argument("--dtype", default="float32")
    p.add_argument("--format", default="safetensors")
    args = p.parse_args(argv)
    import cloudpickle
    from dask.distributed import Client, LocalCluster, as_completed

    import checkpoints_under
    # Workers of a remote cluster do not have this folder on their path: ship the task's
    # code by value rather than by module name.
    cloudpickle.register_pickle_by_value(checkpoints_under)

    jobs = checkpoint_jobs(args.source, args.out)
    if not jobs:
        print(f"no checkpoint (*.index) under {args.source}", file=sys.stderr)
        return 1
    cluster = None if args.scheduler else LocalCluster(
        n_workers=args.workers, threads_per_worker=1, processes=True, dashboard_address=None)
    failed = 0
    try:
        with Client(args.scheduler or cluster) as client:
            # pure=False: a repeated run must convert (or find published) again, not reuse
            # a result the scheduler remembers.
            futures = client.map(convert_one, [c for c, _ in jobs], [o for _, o in jobs],
                                 dtype=args.dtype, format=args.format, pure=False)
            for future in as_completed(futures):
                result = future.result()
                failed += "error" in result
                print(json.dumps(result), flush=True)
    finally:
        if cluster is not None:
            cluster.close()
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
