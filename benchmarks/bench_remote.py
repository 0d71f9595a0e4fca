"""Converting straight from object storage vs downloading the whole checkpoint first.

A BERT-base-sized TF1 checkpoint with Adam slots (random model weights, ``adam_m``/``adam_v``
for every variable: 3x the model's bytes, written with bertconvert's own checkpoint writer)
is served from a loopback S3 endpoint (moto's ThreadedMotoServer, reached through boto3's
standard configuration) and a loopback HTTP server with Range support
(``tests/cache/servers.py``). A counting TCP proxy in front of each server measures the bytes
the server sent (headers included). Contenders, each timed wall-clock:

* ``bertconvert convert s3://...`` and ``bertconvert convert http://...`` (ranges only);
* (a) downloading every object whole with boto3 (``download_file``) / ``curl``, then converting
  the local copy;
* (b) the local conversion alone (the files already on disk).

Every output is checked byte-identical to (b)'s. Loopback hides network latency and
bandwidth: on a real network, the bytes column is what scales.

    python benchmarks/bench_remote.py [--size base|large|tiny] [--workdir DIR] [--skip-s3]
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from urllib.parse import urlsplit

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
os.environ.setdefault("TQDM_DISABLE", "1")

from bench_convert import SHAPES, synthesize  # noqa: E402
from tests.cache.servers import LoopbackServer  # noqa: E402
from tests.remote.proxy import CountingProxy  # noqa: E402

SHAPES.setdefault("tiny", dict(vocab_size=8000, hidden_size=256, num_hidden_layers=2,
                               num_attention_heads=4, intermediate_size=1024))


def configure_s3_env(endpoint, scratch):
    """Point boto3's standard chain at the loopback endpoint (environment only)."""
    os.environ.update({"AWS_ENDPOINT_URL_S3": endpoint, "AWS_ACCESS_KEY_ID": "bench",
                       "AWS_SECRET_ACCESS_KEY": "bench", "AWS_DEFAULT_REGION": "us-east-1",
                       "AWS_EC2_METADATA_DISABLED": "true",
                       "AWS_CONFIG_FILE": os.path.join(scratch, "absent"),
                       "AWS_SHARED_CREDENTIALS_FILE": os.path.join(scratch, "absent")})
    os.environ.pop("AWS_PROFILE", None)


def model_bytes(prefix):
    from bertconvert.checkpoint import load_checkpoint

    with load_checkpoint(prefix) as reader:
        return sum(reader.entry(n).size for n in reader
                   if not n.endswith(("adam_m", "adam_v")) and n != "global_step")


def convert(source, out):
    from bertconvert.convert.run import convert_checkpoint

    convert_checkpoint(source, out, progress=False)
    with open(os.path.join(out, "model.safetensors"), "rb") as f:
        return f.read()


def timed(label, proxy, fn):
    if proxy is not None:
        proxy.reset()
    start = time.perf_counter()
    result = fn()
    seconds = time.perf_counter() - start
    sent = proxy.sent if proxy is not None else 0
    return {"label": label, "seconds": seconds, "bytes": sent, "result": result}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=sorted(SHAPES), default="base")
    parser.add_argument("--workdir", help="scratch directory (default: a temporary one)")
    parser.add_argument("--skip-s3", action="store_true",
                        help="HTTP and local rows only (moto makes the S3 rows slow: it reads "
                             "the whole object for every ranged GetObject)")
    args = parser.parse_args(argv)
    scratch = tempfile.mkdtemp(prefix="bench-remote-", dir=args.workdir)
    os.environ["BERTCONVERT_CACHE"] = os.path.join(scratch, "cache")
    os.environ["NO_PROXY"] = os.environ["no_proxy"] = "127.0.0.1,localhost"
    try:
        run(args, scratch)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def run(args, scratch):
    import logging

    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto's request log

    src = os.path.join(scratch, "src")
    os.makedirs(src)
    t = time.perf_counter()
    prefix = synthesize(src, args.size, adam=True)
    names = sorted(os.listdir(src))
    total = sum(os.path.getsize(os.path.join(src, n)) for n in names)
    model = model_bytes(prefix)
    print(f"checkpoint: BERT-{args.size} + Adam slots, {total / 1e6:.0f} MB in {len(names)} files "
          f"(model tensors {model / 1e6:.0f} MB); written in {time.perf_counter() - t:.0f} s")

    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    moto.start()
    host, port = moto.get_host_and_port()
    bucket = f"bench-{uuid.uuid4().hex[:8]}"
    with CountingProxy(port) as s3_proxy, LoopbackServer() as http:
        configure_s3_env(f"http://127.0.0.1:{s3_proxy.port}", scratch)
        import boto3

        client = boto3.client("s3")
        client.create_bucket(Bucket=bucket)
        for name in names if not args.skip_s3 else ():
            client.upload_file(os.path.join(src, name), bucket, f"run/{name}")
        for name in names:
            http.add(f"/run/{name}", file=os.path.join(src, name))
        with CountingProxy(http.port) as http_proxy:
            http_base = f"http://127.0.0.1:{http_proxy.port}/run/"
            rows = []
            reference = timed("(b) local conversion alone", None,
                              lambda: convert(prefix, os.path.join(scratch, "local")))
            rows.append(reference)
            if not args.skip_s3:
                rows.append(timed("convert s3://.../bert_model.ckpt (ranges)", s3_proxy,
                                  lambda: convert(f"s3://{bucket}/run/bert_model.ckpt",
                                                  os.path.join(scratch, "s3"))))
            rows.append(timed("convert http://.../bert_model.ckpt (ranges)", http_proxy,
                              lambda: convert(http_base + "bert_model.ckpt",
                                              os.path.join(scratch, "http"))))

            def boto3_then_convert():
                d = os.path.join(scratch, "boto3-copy")
                os.makedirs(d)
                for name in names:
                    client.download_file(bucket, f"run/{name}", os.path.join(d, name))
                return convert(os.path.join(d, "bert_model.ckpt"), os.path.join(scratch, "o-boto3"))

            def curl_then_convert():
                d = os.path.join(scratch, "curl-copy")
                os.makedirs(d)
                for name in names:
                    subprocess.run(["curl", "-sSf", "-o", os.path.join(d, name), http_base + name],
                                   check=True)
                return convert(os.path.join(d, "bert_model.ckpt"), os.path.join(scratch, "o-curl"))

            if not args.skip_s3:
                rows.append(timed("(a) boto3 download_file whole + convert", s3_proxy,
                                  boto3_then_convert))
            rows.append(timed("(a) curl whole + convert", http_proxy, curl_then_convert))
    moto.stop()
    for row in rows:
        assert row["result"] == reference["result"], f"{row['label']}: output differs"
    print(f"{'contender':46s} {'wall s':>8s} {'MB sent':>9s} {'x model':>8s}")
    for row in rows:
        sent = f"{row['bytes'] / 1e6:9.1f}" if row["bytes"] else f"{'-':>9s}"
        ratio = f"{row['bytes'] / model:8.2f}" if row["bytes"] else f"{'-':>8s}"
        print(f"{row['label']:46s} {row['seconds']:8.1f} {sent} {ratio}")
    print("every output byte-identical to the local conversion's")
    print(json.dumps({r["label"]: {"seconds": round(r["seconds"], 2), "bytes": r["bytes"]}
                      for r in rows}))


if __name__ == "__main__":
    main()
