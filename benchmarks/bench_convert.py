"""Benchmark: ``bertconvert convert`` against pytorch-pretrained-bert 0.6.2's converter and
against the disk, in one run.

Synthesises a Google-format BERT checkpoint with bertconvert's TF-free writer in a temp
directory (BERT-base shape by default, 440 MB; ``--large``: BERT-large with Adam slots,
about 4 GB), then runs, each in its own subprocess measured with ``os.wait4`` (wall time and
peak RSS of that process alone):

* ``ppb``: ``pytorch_pretrained_bert.convert_tf_checkpoint_to_pytorch`` (needs TensorFlow);
* ``bertconvert convert`` (defaults: a model.safetensors directory; ``--source-hash auto``:
  conversion.json has the sha256 of every source file except a data shard that is mostly
  optimizer slots, which is read only where tensors are converted);
* the same with ``--source-hash full``: every file hashed whole, slots included;
* ``bertconvert convert_tf_checkpoint_to_pytorch`` (the same single pytorch_model.bin ppb writes);
* the floor: ``dd if=/dev/zero bs=4M conv=fsync`` of as many bytes as the largest output,
  into the same directory. No converter that makes its output durable can beat it; every
  row is also shown as a multiple of it.

Each runs ``--repeat`` times (default 3, interleaved, ``sync`` before every run); the table
shows the median and the fastest run, then the ratios. It checks that all outputs hold
bit-identical tensors (``--no-check`` skips that) and removes the temp directory (``--keep``
keeps it).

``--ablate`` instead runs ``bertconvert convert`` with each performance piece switched off
in turn (``ABLATIONS``: the O_DIRECT writer, the source-hash thread, the
streaming torch zip writer) and prints one table:
configuration, time, ratio to the floor, peak RSS.

Usage::

    python benchmarks/bench_convert.py                 # BERT-base, ~1 min
    python benchmarks/bench_convert.py --ablate        # BERT-base, each piece off in turn
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


def floor_argv(path, nbytes, direct=False):
    """A durable write of ``nbytes`` zero bytes to ``path``: GNU dd (``direct``: with
    ``oflag=direct``, past the page cache), else the same through the page cache in Python."""
    dd = shutil.which("dd")
    if dd and subprocess.run([dd, "--version"], capture_output=True).returncode == 0:
        # Whole 4 MiB blocks: O_DIRECT refuses a short last block on most filesystems.
        count = -(-nbytes // (4 << 20)) if direct else nbytes
        return [dd, "if=/dev/zero", f"of={path}", "bs=4M", f"count={count}", "conv=fsync",
                "status=none"] + (["oflag=direct"] if direct else ["iflag=count_bytes"])
    if direct:
        return None
    code = ("import os, sys\n"
            "n, block = int(sys.argv[2]), bytes(4 << 20)\n"
            "with open(sys.argv[1], 'wb', buffering=0) as f:\n"
            "    while n > 0:\n"
            "        n -= f.write(block[:min(n, len(block))])\n"
            "    os.fsync(f.fileno())\n")
    return [sys.executable, "-c", code, path, str(nbytes)]


def tree_bytes(path):
    if os.path.isfile(path):
        return os.path.getsize(path)
    return sum(os.path.getsize(os.path.join(d, n)) for d, _, names in os.walk(path) for n in names)


def check_equal(reference, outputs):
    """Every output (a torch.save file or a converted model directory) holds exactly the
    tensors of ``reference``; a tied decoder weight may be left out."""
    import torch
    from safetensors.torch import load_file

    def load(path):
        if os.path.isdir(path) and os.path.exists(os.path.join(path, "model.safetensors")):
            return load_file(os.path.join(path, "model.safetensors"))
        if os.path.isdir(path):
            path = os.path.join(path, "pytorch_model.bin")
        return torch.load(path, weights_only=True, mmap=True)

    expected = load(reference)
    for path in outputs:
        loaded = load(path)
        keys = set(expected) - {"cls.predictions.decoder.weight"}
        bad = [k for k in sorted(keys) if k not in loaded or not torch.equal(expected[k], loaded[k])]
        if bad:
            raise SystemExit(f"{path}: {len(bad)} tensors differ from {reference}, e.g. {bad[:3]}")


#: Run the CLI in a process where one piece is switched off first (``-c`` code; the CLI's
#: arguments follow). Each is the plain path that piece replaces.
_CLI = "\nfrom bertconvert.cli import main\nsys.exit(main(sys.argv[1:]))\n"
HASH_INLINE = ("import sys, bertconvert.convert.provenance as p\n"
               "p.SourceHasher.start = p.SourceHasher.run  # hash on the converting thread\n"
               "p.SourceHasher.join = lambda self, timeout=None: None")
TORCH_SAVE = "import sys, bertconvert.convert.writers as w; w.STREAM_TORCH_ZIP = False"

#: --ablate: (label, extra CLI arguments, environment changes, -c code or None).
ABLATIONS = [
    ("all pieces on (default)", [], {}, None),
    ("plain writer (BERTCONVERT_DIRECT_IO=0)", [], {"BERTCONVERT_DIRECT_IO": "0"}, None),
    ("source sha256 on the converting thread", [], {}, HASH_INLINE),
    ("--source-hash index (no source sha256)", ["--source-hash", "index"], {}, None),
    ("--source-hash full", ["--source-hash", "full"], {}, None),
    ("  on the converting thread", ["--source-hash", "full"], {}, HASH_INLINE),
    ("--format pytorch (streaming torch zip)", ["--format", "pytorch"], {}, None),
    ("  with torch.save of a whole dict", ["--format", "pytorch"], {}, TORCH_SAVE),
    ("  plain writer (BERTCONVERT_DIRECT_IO=0)", ["--format", "pytorch"],
     {"BERTCONVERT_DIRECT_IO": "0"}, None),
]


def default_runs(py, prefix, config, work):
    """(label, argv, env changes, output path) of the comparison with ppb."""
    return [
        ("ppb 0.6.2 convert_tf_checkpoint_to_pytorch",
         [py, "-c", "import sys; from pytorch_pretrained_bert.convert_tf_checkpoint_to_pytorch "
                    "import convert_tf_checkpoint_to_pytorch as c; c(*sys.argv[1:])",
          prefix, config, os.path.join(work, "ppb_pytorch_model.bin")], {},
         os.path.join(work, "ppb_pytorch_model.bin")),
        ("bertconvert convert (safetensors dir)",
         [py, "-m", "bertconvert", "convert", prefix, "--out", os.path.join(work, "ours"),
          "--quiet"], {}, os.path.join(work, "ours")),
        ("  same, --source-hash full",
         [py, "-m", "bertconvert", "convert", prefix, "--out", os.path.join(work, "ours_full"),
          "--quiet", "--source-hash", "full"], {}, os.path.join(work, "ours_full")),
        ("bertconvert convert_tf_checkpoint_to_pytorch",
         [py, "-m", "bertconvert", "convert_tf_checkpoint_to_pytorch", prefix, config,
          os.path.join(work, "ours_pytorch_model.bin"), "--quiet"], {},
         os.path.join(work, "ours_pytorch_model.bin")),
    ]


def ablation_runs(py, prefix, work):
    runs = []
    for i, (label, extra, env, code) in enumerate(ABLATIONS):
        out = os.path.join(work, f"ablate{i}")
        head = [py, "-m", "bertconvert"] if code is None else [py, "-c", code + _CLI]
        runs.append((label, head + ["convert", prefix, "--out", out, "--quiet"] + extra, env, out))
    return runs


def remove(path):
    if os.path.isdir(path):
        shutil.rmtree(path)
    elif os.path.exists(path):
        os.unlink(path)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--large", action="store_true",
                        help="BERT-large with Adam slots (~4 GB checkpoint) instead of BERT-base")
    parser.add_argument("--ablate", action="store_true",
                        help="bertconvert only, with each performance piece off in turn")
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
        base_env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONWARNINGS="ignore")
        py = sys.executable
        runs = ablation_runs(py, prefix, work) if args.ablate else default_runs(py, prefix, config, work)
        floor_path = os.path.join(work, "floor.bin")
        floor_label = "floor: dd conv=fsync of the output's size"
        floors = [(floor_label, False), ("  same, oflag=direct (rounded up to 4 MiB)", True)]
        floors = [(label, direct) for label, direct in floors
                  if floor_argv(floor_path, 1, direct) is not None]
        results = {label: [] for label, *_ in runs + floors}
        out_bytes = 0
        for rep in range(args.repeat):  # interleaved, so load changes hit every tool alike
            for label, cmd, env, out in runs:
                if rep:  # the last repetition's outputs stay for the check
                    remove(out)
                os.sync()  # no tool pays for the previous one's dirty pages
                results[label].append(measure(label, cmd, dict(base_env, **env)))
                out_bytes = max(out_bytes, tree_bytes(out))
            for label, direct in floors:
                remove(floor_path)
                os.sync()
                results[label].append(measure(label, floor_argv(floor_path, out_bytes, direct)))
        remove(floor_path)
        print(f"median of {args.repeat} run(s) each (min in brackets); bertconvert's wall time "
              "includes its fsync before publishing" + ("" if args.ablate else
                                                         ", ppb's does not (it never syncs)")
              + f"; the floor writes {out_bytes / 1e6:.0f} MB, the largest output:")
        summary = {}
        for label in list(results):
            walls = sorted(w for w, _ in results[label])
            summary[label] = (statistics.median(walls), walls[0],
                              statistics.median(r for _, r in results[label]))
        floor_t, floor_min, _ = summary[floor_label]
        print(f"  {'':<48} {'median':>7}   {'[min]':>5}  {'x floor':>7}  {'peak RSS':>12}")
        for label, (wall, best, rss) in summary.items():
            rss_text = "" if label in dict(floors) else f"{rss / 2**20:8.0f} MiB"
            print(f"  {label:<48} {wall:7.2f} s [{best:5.2f}]  {wall / floor_t:6.2f}x  {rss_text}")
        if not args.ablate:
            ppb_label = runs[0][0]
            ppb_t, ppb_min, ppb_rss = summary[ppb_label]
            for label, *_ in runs[1:]:
                wall, best, rss = summary[label]
                print(f"{label.strip()}: {ppb_t / wall:5.1f}x faster than ppb [{ppb_min / best:4.1f}x "
                      f"min/min], {ppb_rss / rss:5.1f}x less peak RSS; {wall / floor_t:4.2f}x the "
                      f"floor [{best / floor_min:4.2f}x min/min]")
        if not args.no_check:
            outs = [out for *_, out in runs]
            check_equal(outs[0], outs[1:])
            print(f"outputs: the same tensors, bit for bit, in all {len(outs)}")
        print("(a shared machine: expect noise; compare ratios within one invocation)")
    finally:
        if args.keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
