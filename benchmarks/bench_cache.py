"""Download speed of the weight cache against curl and pytorch-pretrained-bert 0.6.2, in one run.

A loopback HTTP server (tests/cache/servers.py, streaming with sendfile) serves a 440 MB file
— bert-base's size — with an MD5 ETag, as S3 would. Each contender downloads it into a fresh
directory; it prints the best of ``--repeat`` runs, our ratio to curl and to the floor (a
durable write of the same size, ``dd conv=fsync``, into the same directory), ppb's ratio to
ours, and what a cache hit costs in time and requests.

``--ablate`` instead fetches with each performance piece of the cache switched off in turn
(the O_DIRECT writer, the hashing worker threads) and prints one table: configuration, time,
ratio to curl and to the floor.

    python benchmarks/bench_cache.py [--size-mb 440] [--repeat 2] [--random] [--skip-ppb]
                                     [--no-processes] [--ablate]

Timings on a shared machine are noisy: run it on an idle one, and compare only numbers from
the same run.
"""
import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
os.environ.setdefault("TQDM_DISABLE", "1")  # no progress bars for anyone: same work for all

from tests.cache.servers import LoopbackServer  # noqa: E402

from bertconvert.cache.store import cached_path  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_convert import floor_argv  # noqa: E402


def make_file(path, size, random_bytes):
    """A sparse file (instant, no disk) or one full of random bytes."""
    with open(path, "wb") as f:
        if random_bytes:
            block = 8 << 20
            left = size
            while left:
                n = min(block, left)
                f.write(os.urandom(n))
                left -= n
        else:
            f.truncate(size)


def md5_floor(size, repeat):
    """Seconds hashlib's MD5 (OpenSSL) needs for ``size`` bytes already in memory: no fetch
    that checks an MD5 ETag can be faster, since one MD5 stream cannot be split over cores."""
    import hashlib

    block = bytes(8 << 20)
    best = None
    for _ in range(repeat):
        h, left = hashlib.md5(), size
        t0 = time.perf_counter()
        while left:
            n = min(len(block), left)
            h.update(memoryview(block)[:n])
            left -= n
        dt = time.perf_counter() - t0
        best = dt if best is None else min(best, dt)
    return best


def time_it(fn, repeat, fresh_dir, keep_last=False):
    """Best-effort fair timing: each run starts with no dirty pages left by the previous one
    (another run's unflushed 440 MB would throttle this run's writes)."""
    times = []
    for i in range(repeat):
        target = fresh_dir()
        os.sync()
        t0 = time.perf_counter()
        fn(target)
        times.append(time.perf_counter() - t0)
        if not (keep_last and i == repeat - 1):
            shutil.rmtree(target, ignore_errors=True)
    return times


def floor_time(directory, size, repeat):
    """Best of ``repeat`` durable writes of ``size`` bytes into ``directory`` (see bench_convert)."""
    path = os.path.join(directory, "floor.bin")
    times = []
    for _ in range(repeat):
        os.sync()
        t0 = time.perf_counter()
        subprocess.run(floor_argv(path, size), check=True)
        times.append(time.perf_counter() - t0)
        os.unlink(path)
    return times


def _find_class(name):
    """The class ``name`` defined in one of bertconvert.cache's modules, or None."""
    import importlib
    import pkgutil

    import bertconvert.cache as package

    for info in pkgutil.iter_modules(package.__path__):
        module = importlib.import_module(f"{package.__name__}.{info.name}")
        cls = getattr(module, name, None)
        if isinstance(cls, type) and cls.__module__ == module.__name__:
            return cls
    return None


def _switch(name):
    """A context manager that switches one piece of the cache off (``ABLATIONS``), or None
    where this version of the package has no such piece to switch."""
    import contextlib

    @contextlib.contextmanager
    def env(key, value):
        old = os.environ.get(key)
        os.environ[key] = value
        try:
            yield
        finally:
            if old is None:
                del os.environ[key]
            else:
                os.environ[key] = old

    @contextlib.contextmanager
    def patched(owner, attr, value):
        old = getattr(owner, attr)
        setattr(owner, attr, value)
        try:
            yield
        finally:
            setattr(owner, attr, old)

    if name == "default":
        return contextlib.nullcontext()
    if name == "plain writer":
        return env("BERTCONVERT_DIRECT_IO", "0")
    if name == "hashes inline":
        hasher = _find_class("StreamHasher")
        if hasher is None:
            return None
        init = hasher.__init__
        return patched(hasher, "__init__",
                       lambda self, algorithms, threaded=True, workers=None:
                       init(self, algorithms, threaded=False))
    raise ValueError(name)


#: --ablate: (label, switch name).
ABLATIONS = [
    ("all pieces on (default)", "default"),
    ("plain writer (BERTCONVERT_DIRECT_IO=0)", "plain writer"),
    ("hashes on the receiving thread", "hashes inline"),
]


def ablate(urls, args, fresh_dir, size, scratch, curl_times):
    """Fetch every URL under every configuration, interleaved; print one table."""
    results, floors = {}, []
    for _, url in urls:  # untimed: first-call imports and set-up
        time_it(lambda d: cached_path(url, d, progress=False), 1, fresh_dir)
    for _ in range(args.repeat):  # interleaved, the floor too: the disk's speed varies
        floors += floor_time(scratch, size, 1)
        for label, name in ABLATIONS:
            for etag, url in urls:
                switch = _switch(name)
                if switch is None:
                    continue
                with switch:
                    times = time_it(lambda d: cached_path(url, d, progress=False), 1, fresh_dir)
                results.setdefault((label, etag), []).extend(times)
    floor = min(floors)
    curl = min(curl_times) if curl_times else None
    print(f"\n{'configuration':<42}{'ETag':>7}{'best s':>8}{'median s':>10}"
          f"{'x curl':>8}{'x floor':>9}")
    for (label, etag), times in results.items():
        best = min(times)
        ratio = f"{best / curl:8.2f}" if curl else f"{'-':>8}"
        print(f"{label:<42}{etag:>7}{best:8.2f}{statistics.median(times):10.2f}{ratio}"
              f"{best / floor:9.2f}")
    print(f"floor: durable write of {size / 1e6:.0f} MB (dd conv=fsync) {floor:.2f} s "
          f"(median {statistics.median(floors):.2f} s); "
          + (f"curl {curl:.2f} s (no hash, no fsync)" if curl else "no curl"))
    missing = [label for label, name in ABLATIONS if _switch(name) is None]
    if missing:
        print("not in this version, so not measured: " + ", ".join(missing))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size-mb", type=int, default=440)
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--random", action="store_true", help="random content instead of a sparse file")
    ap.add_argument("--skip-ppb", action="store_true", help="skip pytorch-pretrained-bert (slow)")
    ap.add_argument("--no-processes", action="store_true",
                    help="skip the fresh-process rows (+: interpreter start and imports included)")
    ap.add_argument("--dir", help="scratch directory (default: a temp dir, removed afterwards)")
    ap.add_argument("--ablate", action="store_true",
                    help="ours only, with each performance piece of the cache off in turn")
    args = ap.parse_args(argv)

    scratch = args.dir or tempfile.mkdtemp(prefix="bench-cache-")
    os.makedirs(scratch, exist_ok=True)
    counter = [0]

    def fresh_dir():
        counter[0] += 1
        d = os.path.join(scratch, f"run{counter[0]}")
        os.makedirs(d)
        return d

    size = args.size_mb * 1000 * 1000
    src = os.path.join(scratch, "weights.bin")
    make_file(src, size, args.random)
    results = {}
    try:
        with LoopbackServer() as server:
            t0 = time.perf_counter()
            server.add("/bert-base-uncased.bin", file=src)  # ETag: the file's MD5
            print(f"# serving {size / 1e6:.0f} MB ({'random' if args.random else 'sparse'}) "
                  f"from 127.0.0.1:{server.port}; ETag computed in {time.perf_counter() - t0:.2f}s")
            url = server.url("/bert-base-uncased.bin")

            curl = shutil.which("curl")
            if curl:
                results["curl"] = time_it(
                    lambda d: subprocess.run([curl, "-s", "-f", "-o", os.path.join(d, "out"), url],
                                             check=True), args.repeat, fresh_dir)
            else:
                print("# curl is not installed: no curl baseline")
            server.add("/opaque.bin", file=src, etag='"v1-opaque"')
            opaque = server.url("/opaque.bin")
            if args.ablate:
                ablate([("MD5", url), ("opaque", opaque)], args, fresh_dir, size, scratch,
                       results.get("curl"))
                return

            hit_dir = [None]

            def ours(d):
                hit_dir[0] = d
                cached_path(url, d, progress=False)

            results["bertconvert"] = time_it(ours, args.repeat, fresh_dir, keep_last=True)
            # The same bytes behind an opaque ETag: only our own sha256 is computed (what a
            # mirror with sha256 metadata or a sha256= argument costs).
            results["bertconvert*"] = time_it(lambda d: cached_path(opaque, d, progress=False),
                                               args.repeat, fresh_dir)

            server.reset_log()
            t0 = time.perf_counter()
            cached_path(url, hit_dir[0], progress=False)
            hit_time = time.perf_counter() - t0
            hit_requests = [r.method for r in server.requests]

            if not args.skip_ppb:
                try:
                    from pytorch_pretrained_bert.file_utils import cached_path as ppb_cached_path
                except ImportError:
                    print("# pytorch-pretrained-bert is not installed: no ppb baseline")
                else:
                    results["ppb 0.6.2"] = time_it(lambda d: ppb_cached_path(url, cache_dir=d),
                                                   args.repeat, fresh_dir)
            if not args.no_processes:
                # As curl is timed: a fresh process each, interpreter start and imports
                # included (what a user running a command sees; ppb has no CLI, so -c).
                results["bertconvert CLI+"] = time_it(
                    lambda d: subprocess.run([sys.executable, "-m", "bertconvert", "cache",
                                              "fetch", "--cache-dir", d, url],
                                             check=True, stdout=subprocess.DEVNULL,
                                             stderr=subprocess.DEVNULL),  # its progress bar
                    args.repeat, fresh_dir)
                if not args.skip_ppb and "ppb 0.6.2" in results:
                    results["ppb 0.6.2+"] = time_it(
                        lambda d: subprocess.run(
                            [sys.executable, "-c", "import sys; from pytorch_pretrained_bert."
                             "file_utils import cached_path; cached_path(sys.argv[1], "
                             "cache_dir=sys.argv[2])", url, d], check=True),
                        args.repeat, fresh_dir)
            results["floor (dd conv=fsync)"] = floor_time(scratch, size, args.repeat)
    finally:
        if not args.dir:
            shutil.rmtree(scratch, ignore_errors=True)

    print(f"\n{'contender':<22}{'best s':>9}{'median s':>10}{'MB/s':>9}")
    for name, times in results.items():
        best = min(times)
        print(f"{name:<22}{best:>9.2f}{statistics.median(times):>10.2f}{size / 1e6 / best:>9.0f}")
    print()
    floor_best = min(results["floor (dd conv=fsync)"])
    for name in ("bertconvert", "bertconvert*", "bertconvert CLI+"):
        if name not in results:
            continue
        ours_best = min(results[name])
        if "curl" in results:
            r = ours_best / min(results["curl"])
            print(f"{name + ' / curl':<32}= {r:.2f}x")
        print(f"{name + ' / floor':<32}= {ours_best / floor_best:.2f}x")
        ppb = "ppb 0.6.2+" if name.endswith("+") else "ppb 0.6.2"
        if ppb in results:
            r = min(results[ppb]) / ours_best
            print(f"{ppb + ' / ' + name:<32}= {r:.1f}x")
    floor = md5_floor(size, args.repeat)
    line = f"md5 of {size / 1e6:.0f} MB in memory alone: {floor:.2f} s"
    if "ppb 0.6.2" in results:
        line += (f", so ppb / (any MD5-checking fetch) <= {min(results['ppb 0.6.2']) / floor:.1f}x "
                 "on this CPU")
    print(line)
    print(f"cache hit: {hit_time * 1000:.1f} ms, requests {hit_requests}")
    print("# bertconvert: sha256 + the ETag's MD5 while downloading, fsync, atomic commit; "
          "bertconvert*: sha256 only (opaque ETag); +: a fresh process, as curl. curl and ppb "
          "hash and sync nothing; the floor writes as many bytes and fsyncs them")


if __name__ == "__main__":
    main()
