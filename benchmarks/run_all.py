"""Run every benchmark in this folder, one after the other (``make bench``).

Each script runs our code and its competitor (pytorch-pretrained-bert 0.6.2, Google's
tokenizer, curl, TensorFlow...) side by side in one run and prints ratios; run them on an
otherwise idle machine and compare ratios within one run only.
"""
import pathlib
import subprocess
import sys

HERE = pathlib.Path(__file__).resolve().parent


def main(argv):
    names = argv or sorted(p.name for p in HERE.glob("bench_*.py"))
    failed = []
    for name in names:
        print(f"\n=== {name} ===", flush=True)
        if subprocess.call([sys.executable, str(HERE / name)]) != 0:
            failed.append(name)
    if failed:
        print("failed: " + ", ".join(failed), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
