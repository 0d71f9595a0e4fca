"""How fast does bertconvert read a BERT-base-sized TensorFlow checkpoint?

    python benchmarks/bench_checkpoint_read.py [--repeats 5] [--dir /big/tmp] [--small] [--no-tf]

Writes a synthetic checkpoint with BERT-base's 206 float32 tensors and Google's variable
names (~440 MB) with our writer into a temporary directory, then times, in one run and with
the file in the page cache:

* ``cat <data> > /dev/null`` (the floor: read every byte once),
* bertconvert's reader, every tensor: memory-mapped and crc32c-checked (the default),
  read into fresh arrays and checked (``mmap=False``), and read unchecked,
* ``tf.train.load_checkpoint`` reading every tensor (if TensorFlow is installed).

It prints the best of N interleaved rounds (wall and CPU seconds) and each reader's ratio
to cat.
The checkpoint is deleted at the end. Numbers depend on the machine and its load.
"""
import argparse
import gc
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from bertconvert.checkpoint import load_checkpoint, save_checkpoint  # noqa: E402


def bert_shapes(vocab=30522, hidden=768, layers=12, intermediate=3072, positions=512):
    """Google's variable names and shapes of a BERT checkpoint with pre-training heads."""
    shapes = {
        "bert/embeddings/word_embeddings": (vocab, hidden),
        "bert/embeddings/position_embeddings": (positions, hidden),
        "bert/embeddings/token_type_embeddings": (2, hidden),
        "bert/embeddings/LayerNorm/gamma": (hidden,),
        "bert/embeddings/LayerNorm/beta": (hidden,),
    }
    for i in range(layers):
        layer = f"bert/encoder/layer_{i}"
        for part in ("query", "key", "value"):
            shapes[f"{layer}/attention/self/{part}/kernel"] = (hidden, hidden)
            shapes[f"{layer}/attention/self/{part}/bias"] = (hidden,)
        dense = {"attention/output/dense": (hidden, hidden),
                 "intermediate/dense": (hidden, intermediate),
                 "output/dense": (intermediate, hidden)}
        for scope, shape in dense.items():
            shapes[f"{layer}/{scope}/kernel"] = shape
            shapes[f"{layer}/{scope}/bias"] = (shape[1],)
        for scope in ("attention/output/LayerNorm", "output/LayerNorm"):
            shapes[f"{layer}/{scope}/gamma"] = (hidden,)
            shapes[f"{layer}/{scope}/beta"] = (hidden,)
    shapes.update({
        "bert/pooler/dense/kernel": (hidden, hidden),
        "bert/pooler/dense/bias": (hidden,),
        "cls/predictions/transform/dense/kernel": (hidden, hidden),
        "cls/predictions/transform/dense/bias": (hidden,),
        "cls/predictions/transform/LayerNorm/gamma": (hidden,),
        "cls/predictions/transform/LayerNorm/beta": (hidden,),
        "cls/predictions/output_bias": (vocab,),
        "cls/seq_relationship/output_weights": (2, hidden),
        "cls/seq_relationship/output_bias": (2,),
    })
    return shapes


def _cpu_seconds():
    """CPU time of this process and its finished children (cat), user + system."""
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def race(contenders, repeats):
    """Best wall and CPU seconds per contender; rounds interleave them so load hits all alike."""
    results = {label: ([], []) for label, _ in contenders}
    for _ in range(repeats):
        for label, fn in contenders:
            gc.collect()
            wall, cpu = time.perf_counter(), _cpu_seconds()
            fn()
            results[label][0].append(time.perf_counter() - wall)
            results[label][1].append(_cpu_seconds() - cpu)
    return [(label, min(results[label][0]), min(results[label][1])) for label, _ in contenders]


def read_all_ours(prefix, verify=True, mmap=True):
    total = 0
    with load_checkpoint(prefix, verify_checksums=verify, mmap=mmap) as reader:
        for name in reader:
            total += reader.get_tensor(name).nbytes
    return total


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--dir", default=None, help="where to put the temporary checkpoint")
    parser.add_argument("--small", action="store_true", help="a 4-layer, 256-wide model (quick)")
    parser.add_argument("--no-tf", action="store_true", help="skip the TensorFlow comparison")
    args = parser.parse_args()

    shapes = bert_shapes(hidden=256, layers=4, intermediate=1024) if args.small else bert_shapes()
    workdir = tempfile.mkdtemp(prefix="bench-ckpt-", dir=args.dir)
    try:
        prefix = os.path.join(workdir, "bert_model.ckpt")
        rng = np.random.default_rng(0)
        tensors = {name: rng.standard_normal(shape, dtype=np.float32) * 0.02
                   for name, shape in shapes.items()}
        start = time.perf_counter()
        save_checkpoint(prefix, tensors)
        write_s = time.perf_counter() - start
        nbytes = sum(t.nbytes for t in tensors.values())
        del tensors
        data_file = prefix + ".data-00000-of-00001"
        print(f"checkpoint: {len(shapes)} float32 tensors, {nbytes / 1e6:.0f} MB "
              f"(written by save_checkpoint in {write_s:.2f} s)")

        def cat():
            subprocess.run(f"cat '{data_file}' > /dev/null", shell=True, check=True)

        cat()  # warm the page cache so every contender reads from memory
        assert read_all_ours(prefix) == nbytes
        contenders = [
            ("cat data > /dev/null", cat),
            ("bertconvert (mmap, checked)", lambda: read_all_ours(prefix)),
            ("bertconvert (read, checked)", lambda: read_all_ours(prefix, mmap=False)),
            ("bertconvert (read, unchecked)", lambda: read_all_ours(prefix, False, False)),
        ]
        if not args.no_tf:
            try:
                from bertconvert.errors import MissingDependencyError
                from bertconvert.verify.tf_runtime import import_tensorflow

                start = time.perf_counter()
                try:
                    tf = import_tensorflow()  # without its oneDNN/absl notices
                except MissingDependencyError as e:
                    raise ImportError(str(e)) from e
                print(f"(importing TensorFlow took {time.perf_counter() - start:.2f} s, "
                      "not counted below)")

                def read_all_tf():
                    reader = tf.train.load_checkpoint(prefix)
                    for name in reader.get_variable_to_shape_map():
                        reader.get_tensor(name)

                contenders.append(("tf.train.load_checkpoint", read_all_tf))
            except ImportError:
                print("(TensorFlow not installed: no TF comparison)")
        rows = race(contenders, args.repeats)

        _, cat_wall, cat_cpu = rows[0]
        print(f"\nbest of {args.repeats} interleaved rounds, page cache warm, {os.cpu_count()} "
              "CPUs; shared machines are noisy, CPU seconds less so")
        print(f"{'reader':32s} {'wall s':>7s} {'GB/s':>6s} {'x cat':>6s} {'CPU s':>7s} {'x cat':>6s}")
        for label, wall, cpu in rows:
            print(f"{label:32s} {wall:7.3f} {nbytes / wall / 1e9:6.2f} {wall / cat_wall:6.2f} "
                  f"{cpu:7.3f} {cpu / cat_cpu:6.2f}")
        _, ours_wall, ours_cpu = rows[1]
        print(f"\ndefault checked read = {ours_wall / cat_wall:.2f}x cat wall time "
              f"({ours_cpu / cat_cpu:.2f}x CPU)")
        for label, wall, _ in rows[4:]:
            print(f"{label} takes {wall / ours_wall:.2f}x as long as bertconvert's default")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
