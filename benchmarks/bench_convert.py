"""Benchmark: ``bertconvert convert`` vs pytorch-pretrained-bert 0.6.2's converter, one run.

Synthesises a Google-format BERT checkpoint with bertconvert's TF-free writer in a temp
directory (BERT-base shape by default, 440 MB; ``--large``: BERT-large with Adam slots,
about 4 GB), then runs, each in its own subprocess measured with ``os.wait4`` (wall time and
peak RSS of that process alone):

* ``ppb``: ``pytorch_pretrained_bert.convert_tf_checkpoint_to_pytorch`` (needs TensorFlow);
* ``bertconvert convert`` (defaults: a model.safetensors directory; ``--source-hash auto``:
  conversion.json has the sha256 of every source file except a data shard that is mostly
  optimizer slots, which is read only where tensors are converted);
* the same with ``--source-hash full``: every file hashed whole, slots included;
* ``bertconvert convert_tf_checkpoint_to_pytorch`` (the same single pytorch_model.bin ppb writes).

Each tool runs ``--repeat`` times (default 3, interleaved, ``sync`` before every run); the
table shows the median and the fastest run, then the ppb/bertconvert ratios. It checks that
both outputs hold bit-identical tensors (``--no-check`` skips that) and removes the temp
directory (``--keep`` keeps it).

Usage::

    python benchmarks/bench_convert.py                 # BERT-base, ~1 min
    python benchmarks/bench_convert.py --large         # BERT-large + Adam slots, ~9 GB of disk

Timings depend on machine load and on the page cache (the checkpoint is read once before
the runs so every tool starts from a warm cache); compare ratios from the same run only.
"""
import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

# The driver imports nothing heavy before it has measured: a forked child starts with the
# parent's resident pages, and ru_maxrss would count them against the tool being measured.
# Synthesis runs in its own process for the same reason.

SHAPES = {
    "base": dict(vocab_size=30522, hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
                 intermediate_size=3072),
    "large": dict(vocab_size=30522, hidden_size=1024, num_hidden_layers=24, num_attention_heads=16,
                  intermediate_size=4096),
}


def google_config(size):
    cfg = dict(SHAPES[size])
    cfg.update(hidden_act="gelu", hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1,
               max_position_embeddings=512, type_vocab_size=2, initializer_range=0.02)
    return cfg


def variable_shapes(cfg):
    """Google's pre-training checkpoint layout: name -> shape."""
    h, i, v = cfg["hidden_size"], cfg["intermediate_size"], cfg["vocab_size"]
    shapes = {"bert/embeddings/word_embeddings": (v, h),
              "bert/embeddings/token_type_embeddings": (cfg["type_vocab_size"], h),
              "bert/embeddings/position_embeddings": (cfg["max_position_embeddings"], h),
              "bert/embeddings/LayerNorm/gamma": (h,), "bert/embeddings/LayerNorm/beta": (h,)}
    for n in range(cfg["num_hidden_layers"]):
        p = f"bert/encoder/layer_{n}/"
        for proj in ("query", "key", "value"):
            shapes[p + f"attention/self/{proj}/kernel"] = (h, h)
            shapes[p + f"attention/self/{proj}/bias"] = (h,)
        shapes.update({
            p + "attention/output/dense/kernel": (h, h), p + "attention/output/dense/bias": (h,),
            p + "attention/output/LayerNorm/gamma": (h,), p + "attention/output/LayerNorm/beta": (h,),
            p + "intermediate/dense/kernel": (h, i), p + "intermediate/dense/bias": (i,),
            p + "output/dense/kernel": (i, h), p + "output/dense/bias": (h,),
            p + "output/LayerNorm/gamma": (h,), p + "output/LayerNorm/beta": (h,)})
    shapes.update({
        "bert/pooler/dense/kernel": (h, h), "bert/pooler/dense/bias": (h,),
        "cls/predictions/transform/dense/kernel": (h, h), "cls/predictions/transform/dense/bias": (h,),
        "cls/predictions/transform/LayerNorm/gamma": (h,), "cls/predictions/transform/LayerNorm/beta": (h,),
        "cls/predictions/output_bias": (v,),
        "cls/seq_relationship/output_weights": (2, h), "cls/seq_relationship/output_bias": (2,)})
    return shapes


def synthesize(directory, size, adam):
    import numpy as np

    from bertconvert.checkpoint import save_checkpoint

    cfg = google_config(size)
    rng = np.random.default_rng(0)
    tensors = {}
    for name, shape in variable_shapes(cfg).items():
        tensors[name] = ((rng.random(shape, dtype=np.float32) - 0.5) * 0.04).astype(np.float32, copy=False)
        if adam:  # slot values do not matter to the benchmark: bertconvert never reads them
            tensors[name + "/adam_m"] = np.full(shape, 1e-4, np.float32)
            tensors[name + "/adam_v"] = np.full(shape, 1e-8, np.float32)
    if adam:
        tensors["global_step"] = np.array(100000, np.int64)
    prefix = os.path.join(directory, "bert_model.ckpt")
    save_checkpoint(prefix, tensors)
    del tensors
    with open(os.path.join(directory, "bert_config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
    with open(os.path.join(directory, "vocab.txt"), "w") as f:
        f.write("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
                          + [f"tok{i}" for i in range(cfg["vocab_size"] - 5)]) + "\n")
    return prefix


def warm_cache(directory):
    for name in sorted(os.listdir(directory)):
        with open(os.path.join(directory, name), "rb", buffering=0) as f:
            while f.read(8 << 20):
                pass


def measure(label, argv, env=None):
    """Run ``argv``; return (wall seconds, peak RSS bytes) of that process."""
    start = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
    output = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        sys.stderr.write(output.decode(errors="replace")[-4000:])
        raise SystemExit(f"{label} failed with exit code {proc.returncode}")
    return wall, usage.ru_maxrss * 1024


def check_equal(ppb_file, ours_dirs, ours_bin):
    import torch
    from safetensors.torch import load_file

    reference = torch.load(ppb_file, weights_only=True, mmap=True)
    for path in [os.path.join(d, "model.safetensors") for d in ours_dirs] + [ours_bin]:
        loaded = load_file(path) if path.endswith(".safetensors") else torch.load(path, weights_only=True, mmap=True)
        keys = set(reference) - {"cls.predictions.decoder.weight"}
        bad = [k for k in sorted(keys) if k not in loaded or not torch.equal(reference[k], loaded[k])]
        if bad:
            raise SystemExit(f"{path}: {len(bad)} tensors differ from ppb's, e.g. {bad[:3]}")
    print("outputs: bit-identical to ppb's for every key")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--large", action="store_true",
                        help="BERT-large with Adam slots (~4 GB checkpoint) instead of BERT-base")
    parser.add_argument("--workdir", default=None, help="where to make the temp directory")
    parser.add_argument("--keep", action="store_true", help="keep the temp directory")
    parser.add_argument("--no-check", action="store_true", help="skip the bit-exactness check")
    parser.add_argument("--repeat", type=int, default=None,
                        help="runs per tool, interleaved; the median is reported (default 3, "
                             "1 with --large)")
    parser.add_argument("--synthesize-into", metavar="DIR", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    size, adam = ("large", True) if args.large else ("base", False)
    args.repeat = max(1, args.repeat or (1 if args.large else 3))
    if args.synthesize_into:  # the child process that writes the checkpoint
        synthesize(args.synthesize_into, size, adam)
        return

    work = tempfile.mkdtemp(prefix="bench_convert-", dir=args.workdir)
    try:
        ckpt_dir = os.path.join(work, "ckpt")
        os.mkdir(ckpt_dir)
        t0 = time.perf_counter()
        subprocess.run([sys.executable, os.path.abspath(__file__), "--synthesize-into", ckpt_dir]
                       + (["--large"] if args.large else []), check=True)
        prefix = os.path.join(ckpt_dir, "bert_model.ckpt")
        nbytes = sum(os.path.getsize(os.path.join(ckpt_dir, n)) for n in os.listdir(ckpt_dir))
        print(f"checkpoint: BERT-{size}{' + Adam slots' if adam else ''}, {nbytes / 1e6:.0f} MB "
              f"(synthesised in {time.perf_counter() - t0:.1f} s)")
        warm_cache(ckpt_dir)
        config = os.path.join(ckpt_dir, "bert_config.json")
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONWARNINGS="ignore")
        py = sys.executable
        ppb_out = os.path.join(work, "ppb_pytorch_model.bin")
        ours_dir = os.path.join(work, "ours")
        ours_full_dir = os.path.join(work, "ours_full")
        ours_bin = os.path.join(work, "ours_pytorch_model.bin")
        runs = [
            ("ppb 0.6.2 convert_tf_checkpoint_to_pytorch",
             [py, "-c", "import sys; from pytorch_pretrained_bert.convert_tf_checkpoint_to_pytorch "
                        "import convert_tf_checkpoint_to_pytorch as c; c(*sys.argv[1:])",
              prefix, config, ppb_out]),
            ("bertconvert convert (safetensors dir)",
             [py, "-m", "bertconvert", "convert", prefix, "--out", ours_dir, "--quiet"]),
            ("  same, --source-hash full",
             [py, "-m", "bertconvert", "convert", prefix, "--out", ours_full_dir, "--quiet",
              "--source-hash", "full"]),
            ("bertconvert convert_tf_checkpoint_to_pytorch",
             [py, "-m", "bertconvert", "convert_tf_checkpoint_to_pytorch", prefix, config, ours_bin,
              "--quiet"]),
        ]
        outputs = (ppb_out, ours_dir, ours_full_dir, ours_bin)
        results = {label: [] for label, _ in runs}
        for rep in range(args.repeat):  # interleaved, so load changes hit every tool alike
            for (label, cmd), out in zip(runs, outputs):
                if rep and os.path.isdir(out):  # the last repetition's outputs stay for the check
                    shutil.rmtree(out)
                elif rep:
                    os.unlink(out)
                os.sync()  # no tool pays for the previous one's dirty pages
                results[label].append(measure(label, cmd, env))
        print(f"median of {args.repeat} run(s) each (min in brackets); bertconvert's wall time "
              "includes its fsync before publishing, ppb's does not (it never syncs):")
        summary = []
        for label, _ in runs:
            walls = sorted(w for w, _ in results[label])
            rss = statistics.median(r for _, r in results[label])
            wall = statistics.median(walls)
            summary.append((label, wall, walls[0], rss))
            print(f"  {label:<48} {wall:7.2f} s [{walls[0]:5.2f}]  {rss / 2**20:8.0f} MiB peak RSS")
        (_, ppb_t, ppb_min, ppb_rss) = summary[0]
        for label, wall, best, rss in summary[1:]:
            print(f"{label}: {ppb_t / wall:5.1f}x faster [{ppb_min / best:4.1f}x min/min], "
                  f"{ppb_rss / rss:5.1f}x less peak RSS than ppb")
        if not args.no_check:
            check_equal(ppb_out, (ours_dir, ours_full_dir), ours_bin)
        print("(a shared machine: expect noise; compare ratios within one invocation)")
    finally:
        if args.keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
