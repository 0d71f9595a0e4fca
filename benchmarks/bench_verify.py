"""Benchmark: ``bertconvert verify`` on a BERT-base-sized checkpoint vs the hand-rolled check.

There is no existing parity tool to race, so the competitor is what people do by hand with
pytorch-pretrained-bert 0.6.2: load the TF checkpoint into ``BertForPreTraining`` with its
``load_tf_weights_in_bert`` (TensorFlow reads it), run it, run a TensorFlow forward
(ours: the same TF reference code, so only the PyTorch side and the bookkeeping differ),
and compare the final outputs -- no per-layer localisation, no report.

Steps, in one process (TensorFlow and torch imported before any timing):

1. write a random BERT-base checkpoint (110M parameters, Google names, std 0.05 weights)
   with bertconvert's TF-free writer, plus ``bert_config.json`` and a 30522-line vocab;
2. ``bertconvert convert`` it (timed, for context);
3. ``verify(ckpt, model_dir)``: full per-stage check, wall time per phase;
4. ``verify(ckpt, None)``: the same, converting in memory;
5. the ppb 0.6.2 hand-rolled check.

Prints the phase table, the per-stage max errors, and the ratios. Timings depend on machine
load (this project's CI box has 2 shared cores); compare ratios from the same run only.

Usage::

    python benchmarks/bench_verify.py            # BERT-base, well under a minute per check
    python benchmarks/bench_verify.py --layers 4 # smaller, for a quick look
"""
import argparse
import contextlib
import io
import json
import os
import shutil
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
FIXTURE_VOCAB = os.path.join(HERE, "..", "fixtures", "checkpoints", "base", "vocab.txt")


def write_checkpoint(directory, layers, hidden, heads, intermediate, vocab_size, seed=0):
    """Random Google-format pre-training checkpoint + config + vocab in ``directory``."""
    from bertconvert.checkpoint import save_checkpoint
    rng = np.random.default_rng(seed)

    def r(*shape):
        return (rng.standard_normal(shape, dtype=np.float32) * 0.05)

    def gamma(n):
        return 1 + rng.standard_normal(n, dtype=np.float32) * 0.3

    h = hidden
    w = {"bert/embeddings/word_embeddings": r(vocab_size, h),
         "bert/embeddings/position_embeddings": r(512, h),
         "bert/embeddings/token_type_embeddings": r(2, h),
         "bert/embeddings/LayerNorm/gamma": gamma(h), "bert/embeddings/LayerNorm/beta": r(h)}
    for i in range(layers):
        p = f"bert/encoder/layer_{i}/"
        for part in ("attention/self/query", "attention/self/key", "attention/self/value",
                     "attention/output/dense"):
            w[f"{p}{part}/kernel"], w[f"{p}{part}/bias"] = r(h, h), r(h)
        w[p + "intermediate/dense/kernel"] = r(h, intermediate)
        w[p + "intermediate/dense/bias"] = r(intermediate)
        w[p + "output/dense/kernel"], w[p + "output/dense/bias"] = r(intermediate, h), r(h)
        for ln in ("attention/output/LayerNorm", "output/LayerNorm"):
            w[f"{p}{ln}/gamma"], w[f"{p}{ln}/beta"] = gamma(h), r(h)
    w["bert/pooler/dense/kernel"], w["bert/pooler/dense/bias"] = r(h, h), r(h)
    w["cls/predictions/transform/dense/kernel"] = r(h, h)
    w["cls/predictions/transform/dense/bias"] = r(h)
    w["cls/predictions/transform/LayerNorm/gamma"] = gamma(h)
    w["cls/predictions/transform/LayerNorm/beta"] = r(h)
    w["cls/predictions/output_bias"] = r(vocab_size)
    w["cls/seq_relationship/output_weights"], w["cls/seq_relationship/output_bias"] = r(2, h), r(2)
    save_checkpoint(os.path.join(directory, "bert_model.ckpt"), w)
    config = {"vocab_size": vocab_size, "hidden_size": h, "num_hidden_layers": layers,
              "num_attention_heads": heads, "intermediate_size": intermediate,
              "hidden_act": "gelu", "hidden_dropout_prob": 0.1,
              "attention_probs_dropout_prob": 0.1, "max_position_embeddings": 512,
              "type_vocab_size": 2, "initializer_range": 0.02}
    with open(os.path.join(directory, "bert_config.json"), "w") as f:
        json.dump(config, f, indent=2)
    with open(FIXTURE_VOCAB, encoding="utf-8") as f:
        vocab = [line.rstrip("\n") for line in f if line.strip()]
    vocab += [f"[unused{i}]" for i in range(vocab_size - len(vocab))]
    with open(os.path.join(directory, "vocab.txt"), "w", encoding="utf-8") as f:
        f.write("\n".join(vocab) + "\n")
    return config


def ppb_hand_check(ckpt_dir, config, inputs):
    """The 0.6.2 way: load_tf_weights_in_bert + forward + a TF forward + final-output diff."""
    from pytorch_pretrained_bert import modeling as ppb
    import torch
    from bertconvert.verify.tf_side import TFReference
    times = {}
    start = time.perf_counter()
    kwargs = {k: v for k, v in config.items() if k != "vocab_size"}
    model = ppb.BertForPreTraining(ppb.BertConfig(config["vocab_size"], **kwargs))
    with contextlib.redirect_stdout(io.StringIO()):  # it prints every variable name
        ppb.load_tf_weights_in_bert(model, os.path.join(ckpt_dir, "bert_model.ckpt"))
    model.eval()
    times["load (ppb, via TF)"] = time.perf_counter() - start
    start = time.perf_counter()
    with torch.no_grad():
        t = [torch.from_numpy(a) for a in (inputs.input_ids, inputs.token_type_ids,
                                           inputs.attention_mask)]
        mlm, nsp = model(*t)
    times["pytorch forward"] = time.perf_counter() - start
    start = time.perf_counter()
    ref = TFReference(ckpt_dir).forward(inputs.input_ids, inputs.token_type_ids,
                                        inputs.attention_mask, head="pretraining")
    times["reference"] = time.perf_counter() - start
    start = time.perf_counter()
    err = max(float(np.abs(mlm.numpy() - ref["mlm logits"]).max()),
              float(np.abs(nsp.numpy() - ref["nsp logits"]).max()))
    times["compare"] = time.perf_counter() - start
    times["total"] = sum(times.values())
    return times, err


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--layers", type=int, default=12)
    parser.add_argument("--hidden", type=int, default=768)
    parser.add_argument("--heads", type=int, default=12)
    parser.add_argument("--intermediate", type=int, default=3072)
    parser.add_argument("--vocab-size", type=int, default=30522)
    parser.add_argument("--repeat", type=int, default=2,
                        help="runs per variant; the fastest is reported (the first pays "
                             "one-time warm-up: page cache, TF/torch kernel selection)")
    parser.add_argument("--keep", metavar="DIR", help="work in DIR and keep it")
    args = parser.parse_args(argv)

    from bertconvert.verify.tf_runtime import import_tensorflow
    import_tensorflow()  # up front, so no import time inside the timings (and no TF notices)
    import torch  # noqa: F401
    from bertconvert.convert.run import convert_checkpoint
    from bertconvert.verify import verify

    work = args.keep or tempfile.mkdtemp(prefix="bench_verify-")
    os.makedirs(work, exist_ok=True)
    ckpt_dir, model_dir = os.path.join(work, "ckpt"), os.path.join(work, "model")
    try:
        os.makedirs(ckpt_dir, exist_ok=True)
        start = time.perf_counter()
        config = write_checkpoint(ckpt_dir, args.layers, args.hidden, args.heads,
                                  args.intermediate, args.vocab_size)
        print(f"wrote checkpoint ({args.layers} layers, hidden {args.hidden}) in "
              f"{time.perf_counter() - start:.1f}s")
        start = time.perf_counter()
        convert_checkpoint(ckpt_dir, model_dir, progress=False, overwrite=True)
        print(f"bertconvert convert: {time.perf_counter() - start:.1f}s")

        from bertconvert.verify.inputs import load_inputs
        inputs = load_inputs(os.path.join(ckpt_dir, "vocab.txt"), "pretraining")  # same batch
        runs = {"dir": [], "mem": [], "hand": []}
        for _ in range(max(1, args.repeat)):  # interleaved, so load drifts hit all three
            runs["dir"].append(verify(ckpt_dir, model_dir, progress=False))
            runs["mem"].append(verify(ckpt_dir, None, progress=False))
            runs["hand"].append(ppb_hand_check(ckpt_dir, config, inputs))
        on_disk = min(runs["dir"], key=lambda r: r.timings["total"])
        in_memory = min(runs["mem"], key=lambda r: r.timings["total"])
        hand, hand_err = min(runs["hand"], key=lambda h: h[0]["total"])

        print()
        print(on_disk.format_table())
        print()
        phases = ["load pytorch", "inputs", "reference", "pytorch forward", "compare", "total"]
        print(f"{'phase':<16} {'verify(dir)':>12} {'verify(mem)':>12}")
        for p in phases:
            print(f"{p:<16} {on_disk.timings.get(p, 0):>11.2f}s "
                  f"{in_memory.timings.get(p, 0):>11.2f}s")
        print()
        print("ppb 0.6.2 hand-rolled check (final outputs only): "
              + ", ".join(f"{k} {v:.2f}s" for k, v in hand.items())
              + f"; max abs error {hand_err:.2e}")
        print(f"ratio verify(dir) / hand-rolled: {on_disk.timings['total'] / hand['total']:.2f}x;"
              f" verify(mem) / hand-rolled: {in_memory.timings['total'] / hand['total']:.2f}x")
        print(f"parity: dir {on_disk.passed}, in-memory {in_memory.passed}; batch "
              f"{on_disk.inputs['shape']}")
        return 0 if on_disk.passed and in_memory.passed else 1
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
