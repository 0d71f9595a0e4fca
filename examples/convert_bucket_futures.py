"""Convert every TF checkpoint under a folder or bucket prefix on one machine, with
``concurrent.futures`` (processes: conversion is CPU bound).

    python examples/convert_bucket_futures.py runs/ s3://models/bert/ --workers 4

The same jobs and the same idempotent :func:`bertconvert.convert_checkpoint` as
``convert_bucket_dask.py``, without a cluster. Prints one JSON line per checkpoint; exits 1
if any failed.
"""
import argparse
import json
import sys
from concurrent.futures import ProcessPoolExecutor, as_completed

from checkpoints_under import checkpoint_jobs, convert_one


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("source", help="folder or s3://bucket/prefix/ holding checkpoints")
    p.add_argument("out", help="folder or s3://bucket/prefix/ for the model directories")
    p.add_argument("--workers", type=int, default=None, help="processes (default: CPUs)")
    p.add_argument("--dtype", default="float32")
    p.add_argument("--format", default="safetensors")
    args = p.parse_args(argv)
    jobs = checkpoint_jobs(args.source, args.out)
    if not jobs:
        print(f"no checkpoint (*.index) under {args.source}", file=sys.stderr)
        return 1
    failed = 0
    with ProcessPoolExecutor(max_workers=args.workers) as pool:
        futures = [pool.submit(convert_one, c, o, dtype=args.dtype, format=args.format)
                   for c, o in jobs]
        for future in as_completed(futures):
            result = future.result()
            failed += "error" in result
            print(json.dumps(result), flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
