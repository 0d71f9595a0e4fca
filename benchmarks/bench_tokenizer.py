"""Tokenizer throughput: bertconvert vs Google's FullTokenizer, pytorch-pretrained-BERT 0.6.2
and HF ``tokenizers`` (Rust) BertWordPieceTokenizer, same vocabulary, same lines, one run.

    python benchmarks/bench_tokenizer.py [--cased] [--lines N] [--rounds R] [--json out.json]

Lines are the natural-text sample in fixtures/tokenizer/corpus.txt (English prose,
licences, docstrings, 30-language vim tutor, CJK), one ``tokenize`` call per line. Before
timing, Google's and 0.6.2's output must be identical to ours on every line (the script
fails otherwise); lines where HF's output differs (Greek capitals: HF misses Python's
final-sigma lower-casing rule) are reported and dropped for everyone. Timings:

* ``cold``: a fresh tokenizer's first pass (our word cache starts empty), the honest number
  for "tokenize a data set once";
* ``warm``: later passes (our cache filled; the others have no cache, so for them warm=cold);
* HF is also timed with ``encode_batch`` (all lines in one call, Rust threads).

Each figure is the best of ``--rounds`` passes; ratios are against Google. Numbers depend on
machine load: run it on a quiet machine and compare only numbers from the same run.
"""
import argparse
import json
import os
import sys
import time

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir)
sys.path.insert(0, ROOT)
FIXTURES = os.path.join(ROOT, "fixtures", "tokenizer")

from bertconvert.tokenizer.wordpiece import BertTokenizer  # noqa: E402


def load_lines(limit):
    with open(os.path.join(FIXTURES, "corpus.txt"), encoding="utf-8") as f:
        lines = [line for line in f.read().split("\n") if line.strip()]
    return lines[:limit] if limit else lines


def google_tokenizer(vocab, lower):
    from bertconvert.errors import MissingDependencyError
    from bertconvert.verify.tf_runtime import import_tensorflow

    try:
        tf = import_tensorflow()  # without its oneDNN/absl notices
    except MissingDependencyError:
        return None
    if not hasattr(tf, "gfile"):
        tf.gfile = tf.io.gfile
    from absl import flags
    from bert import tokenization
    if not hasattr(tokenization.tf, "gfile"):
        tokenization.tf.gfile = tf.io.gfile
    if not flags.FLAGS.is_parsed():
        flags.FLAGS.mark_as_parsed()
    return tokenization.FullTokenizer(vocab, do_lower_case=lower).tokenize


def ppb_tokenizer(vocab, lower):
    try:
        from pytorch_pretrained_bert.tokenization import BertTokenizer as PpbTokenizer
    except ImportError:
        return None
    return PpbTokenizer(vocab, do_lower_case=lower).tokenize


def hf_tokenizer(vocab, lower):
    try:
        from tokenizers import BertWordPieceTokenizer
    except ImportError:
        return None, None
    tok = BertWordPieceTokenizer(vocab, lowercase=lower, strip_accents=lower)
    tok._tokenizer.model.max_input_chars_per_word = 200   # Google's cap (HF defaults to 100)

    def one(line):
        return tok.encode(line, add_special_tokens=False).tokens

    def batch(lines):
        return [e.tokens for e in tok.encode_batch(lines, add_special_tokens=False)]
    return one, batch


def best_of(rounds, fn):
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cased", action="store_true", help="cased vocabulary, no lower-casing")
    parser.add_argument("--lines", type=int, default=0, help="use only the first N lines")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args(argv)

    lower = not args.cased
    vocab = os.path.join(FIXTURES, "vocab-cased.txt" if args.cased else "vocab-uncased.txt")
    lines = load_lines(args.lines)
    chars = sum(map(len, lines))
    print(f"{len(lines)} lines, {chars} characters, {'uncased' if lower else 'cased'} vocabulary "
          f"{os.path.basename(vocab)}; best of {args.rounds} rounds", file=sys.stderr)

    ours = BertTokenizer(vocab, do_lower_case=lower)
    expected = [ours.tokenize(line) for line in lines]
    hf_one, hf_batch = hf_tokenizer(vocab, lower)
    competitors = {"google FullTokenizer": google_tokenizer(vocab, lower),
                   "pytorch-pretrained-bert 0.6.2": ppb_tokenizer(vocab, lower),
                   "HF tokenizers (Rust), per call": hf_one}
    # Google and 0.6.2 must agree with us on every line. HF's Rust normaliser lower-cases
    # character by character, so it misses Python's context-dependent Greek final sigma
    # ("ΧΩΡΙΣ".lower() == "χωρις", which Google's models saw): those lines are reported and
    # left out of the timed set for everyone, so all tokenizers run the same lines.
    excluded = set()
    for name, fn in list(competitors.items()):
        if fn is None:
            print(f"skipping {name}: not installed", file=sys.stderr)
            del competitors[name]
            continue
        got = [fn(line) for line in lines]
        bad = [i for i in range(len(lines)) if got[i] != expected[i]]
        if bad and not name.startswith("HF"):
            i = bad[0]
            sys.exit(f"{name} differs from bertconvert on {len(bad)} lines, e.g. {lines[i][:80]!r}: "
                     f"{got[i][:12]} vs {expected[i][:12]}")
        if bad:
            print(f"{name} differs from Google/bertconvert on {len(bad)} lines (left out of the "
                  f"timing), e.g. {lines[bad[0]][:60]!r}", file=sys.stderr)
            excluded.update(bad)
    if excluded:
        lines = [line for i, line in enumerate(lines) if i not in excluded]
        expected = [toks for i, toks in enumerate(expected) if i not in excluded]
    for name, fn in competitors.items():
        assert [fn(line) for line in lines] == expected, name
    if hf_batch is not None:
        assert hf_batch(lines) == expected
    print(f"timing {len(lines)} lines on which all tokenizers agree", file=sys.stderr)

    def run(fn):
        return lambda: [fn(line) for line in lines]

    results = {}

    def cold_pass():
        fresh = BertTokenizer(vocab, do_lower_case=lower)
        start = time.perf_counter()
        for line in lines:
            fresh.tokenize(line)
        return time.perf_counter() - start
    results["bertconvert (cold cache)"] = min(cold_pass() for _ in range(args.rounds))
    results["bertconvert (warm cache)"] = best_of(args.rounds, run(ours.tokenize))
    for name, fn in competitors.items():
        results[name] = best_of(args.rounds, run(fn))
    if hf_batch is not None:
        results["HF tokenizers (Rust), encode_batch"] = best_of(args.rounds, lambda: hf_batch(lines))

    base = results.get("google FullTokenizer")
    print(f"{'tokenizer':40s} {'seconds':>9s} {'lines/s':>10s} {'vs Google':>10s}")
    for name, seconds in results.items():
        ratio = f"{base / seconds:9.1f}x" if base else "n/a"
        print(f"{name:40s} {seconds:9.3f} {len(lines) / seconds:10.0f} {ratio:>10s}")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump({"lines": len(lines), "characters": chars, "lower_case": lower,
                       "seconds": results}, f, indent=2)


if __name__ == "__main__":
    main()
