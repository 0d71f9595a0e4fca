"""Model loading: ``from_pretrained`` of a BERT-base-sized model directory, bertconvert vs
pytorch-pretrained-BERT 0.6.2 loading the very same weights, in one run.

    python benchmarks/bench_load.py [--rounds 3] [--layers 12 --hidden 768 ...] [--json out.json]

A random BertForPreTraining (BERT-base shape by default: 110M parameters, ~440 MB fp32) is
written once to a temporary directory as ``pytorch_model.bin`` + ``bert_config.json`` (what
0.6.2 reads) and as ``model.safetensors`` + ``config.json``. Each load runs in a fresh
process (so one loader's page cache and allocator state cannot help another), after the
library import, and reports wall time of ``from_pretrained`` and the peak-RSS growth it
caused, and again after one forward pass (bertconvert memory-maps weights files, so pages
become resident only when used). Each child uses one thread. Every loader must produce the
same outputs on a fixed input, or the script fails. Figures are the median of ``--rounds``
alternating runs; files are read from the page cache after the first round. Numbers depend
on machine load: compare only numbers from one run.
"""
import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir)
sys.path.insert(0, ROOT)

LOADERS = ("ppb-0.6.2 (pytorch_model.bin)", "ours (pytorch_model.bin)", "ours (model.safetensors)")


def _rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def child(loader, directory):
    """Run in a subprocess: import, then time one from_pretrained; print a JSON line."""
    import torch

    if loader.startswith("ppb"):
        import logging

        logging.disable(logging.INFO)  # ppb logs the whole config at INFO
        from pytorch_pretrained_bert.modeling import BertForPreTraining
        path = os.path.join(directory, "ppb")
    else:
        from bertconvert import BertForPreTraining
        path = os.path.join(directory, "ppb" if "bin" in loader else "st")
    torch.set_num_threads(1)
    base_rss = _rss_mb()
    start = time.perf_counter()
    model = BertForPreTraining.from_pretrained(path)
    seconds = time.perf_counter() - start
    rss = _rss_mb() - base_rss
    model.eval()
    with torch.no_grad():
        ids = torch.tensor([[2, 17, 33, 5, 3]])
        scores, nsp = model(ids)
    # Memory-mapped weights only become resident when touched: the forward touches them all.
    used = _rss_mb() - base_rss
    print(json.dumps({"seconds": seconds, "rss_mb": rss, "rss_used_mb": used,
                      "check": [float(scores.double().sum()), float(nsp.double().sum())]}))


def make_model_dir(directory, vocab, hidden, layers, heads, intermediate):
    import torch

    from bertconvert import BertConfig, BertForPreTraining
    from bertconvert.models.weightfiles import save_state_dict

    config = BertConfig(int(vocab), hidden_size=int(hidden), num_hidden_layers=int(layers),
                        num_attention_heads=int(heads), intermediate_size=int(intermediate))
    torch.manual_seed(0)
    model = BertForPreTraining(config)
    save_state_dict(model.state_dict(), os.path.join(directory, "ppb"), format="pytorch")
    config.to_json_file(os.path.join(directory, "ppb", "bert_config.json"), flavour="google")
    model.save_pretrained(os.path.join(directory, "st"))
    return sum(p.numel() for p in model.parameters())


def run_child(loader, directory):
    out = subprocess.run([sys.executable, __file__, "--child", loader, directory],
                         check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--layers", type=int, default=12)
    parser.add_argument("--hidden", type=int, default=768)
    parser.add_argument("--heads", type=int, default=12)
    parser.add_argument("--intermediate", type=int, default=3072)
    parser.add_argument("--vocab", type=int, default=30522)
    parser.add_argument("--json", help="also write the results here")
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    parser.add_argument("--make", nargs=6, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(*args.child)
    if args.make:
        return print(make_model_dir(*args.make))

    with tempfile.TemporaryDirectory(prefix="bench_load-") as directory:
        # Made in a subprocess too: Linux children inherit the parent's peak RSS, so this
        # process must stay small for the children's peak-RSS figures to mean anything.
        shape = [str(v) for v in (args.vocab, args.hidden, args.layers, args.heads, args.intermediate)]
        made = subprocess.run([sys.executable, __file__, "--make", directory, *shape],
                              check=True, capture_output=True, text=True)
        n_params = int(made.stdout.strip().splitlines()[-1])
        size_mb = os.path.getsize(os.path.join(directory, "st", "model.safetensors")) / 2**20
        print(f"model: {n_params / 1e6:.1f}M parameters, model.safetensors {size_mb:.0f} MiB; "
              f"{args.rounds} rounds, one fresh process per load")
        results = {loader: [] for loader in LOADERS}
        for _ in range(args.rounds):
            for loader in LOADERS:
                results[loader].append(run_child(loader, directory))
    checks = {tuple(round(c, 2) for c in r["check"]) for runs in results.values() for r in runs}
    if len(checks) != 1:
        sys.exit(f"loaders disagree on the model's outputs: {sorted(checks)}")
    summary = {}
    base = LOADERS[0]
    for loader in LOADERS:
        summary[loader] = {key: statistics.median(r[key] for r in results[loader])
                           for key in ("seconds", "rss_mb", "rss_used_mb")}
    print(f"{'loader':32} {'load s':>7} {'speed-up':>9} {'RSS+ load':>10} {'RSS+ used':>10} {'ratio':>6}")
    for loader, s in summary.items():
        speed = summary[base]["seconds"] / s["seconds"]
        mem = summary[base]["rss_used_mb"] / max(s["rss_used_mb"], 1.0)
        print(f"{loader:32} {s['seconds']:7.3f} {speed:8.1f}x {s['rss_mb']:8.0f}MB "
              f"{s['rss_used_mb']:8.0f}MB {mem:5.1f}x")
    print("RSS+ load: peak-RSS growth during from_pretrained; RSS+ used: after a forward pass "
          "has touched every weight (memory-mapped files count only once touched)")
    print("outputs identical across loaders: yes")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump({"params": n_params, "summary": summary, "runs": results}, f, indent=2)


if __name__ == "__main__":
    main()
