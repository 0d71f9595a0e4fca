"""A separate process that converts a checkpoint to an S3 prefix (the publish tests start
several at once, or kill one mid-upload). Prints one JSON line: the publication status, or
the error class.

    python -m tests.convert.publish_worker CKPT s3://bucket/prefix/ [--dtype D] [--format F]
        [--kill-before KEY_SUFFIX] [--barrier DIR N]
"""
import argparse
import json
import os
import signal
import sys
import time


def _kill_before(suffix):
    """Die (SIGKILL: no clean-up of any kind) when a PutObject for ``suffix`` is about to be
    sent: a process killed mid-upload. Registered on boto3's default session through
    botocore's public event system before the client exists; boto3 is not patched."""
    import boto3

    boto3.setup_default_session()

    def handler(params, **kwargs):
        if str(params.get("Key", "")).endswith(suffix):
            os.kill(os.getpid(), signal.SIGKILL)

    boto3.DEFAULT_SESSION.events.register("provide-client-params.s3.PutObject", handler)
    boto3.DEFAULT_SESSION.events.register("provide-client-params.s3.CreateMultipartUpload",
                                          handler)


def _barrier(directory, count):
    """Start together: each worker drops a file, then waits (bounded) for ``count`` of them."""
    open(os.path.join(directory, f"ready-{os.getpid()}"), "w").close()
    for _ in range(3000):
        if len([n for n in os.listdir(directory) if n.startswith("ready-")]) >= count:
            return
        time.sleep(0.01)


def main(argv=None):
    p = argparse.ArgumentParser()
    p.add_argument("checkpoint")
    p.add_argument("out")
    p.add_argument("--dtype", default="float32")
    p.add_argument("--format", default="safetensors")
    p.add_argument("--kill-before")
    p.add_argument("--barrier", nargs=2)
    args = p.parse_args(argv)
    if args.kill_before:
        _kill_before(args.kill_before)
    from bertconvert import convert_checkpoint
    from bertconvert.errors import BertConvertError

    if args.barrier:
        _barrier(args.barrier[0], int(args.barrier[1]))
    try:
        report = convert_checkpoint(args.checkpoint, args.out, dtype=args.dtype,
                                    format=args.format, progress=False)
    except BertConvertError as e:
        print(json.dumps({"error": type(e).__name__, "message": str(e)}))
        return 2
    print(json.dumps({"status": report.publication["status"], "dtype": args.dtype}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
