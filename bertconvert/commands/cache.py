"""``bertconvert cache fetch|ls|verify|prune|rm|push``: look after a (shared) weight cache.

* ``fetch URL|NAME…`` downloads into the cache (model names: archive, extracted, plus vocab);
* ``ls`` shows url, etag, size, last used, complete (``--json`` for scripts);
* ``verify [ITEM…]`` recomputes each sha256 against the metadata (exit 1 on a mismatch);
* ``prune [--max-size 20G] [--older-than 30d] [--dry-run]`` removes leftovers, then old/LRU entries;
* ``rm ITEM…`` (key, key prefix, URL or model name) or ``rm --all``;
* ``push PATH s3://bucket/prefix`` uploads a model directory with sha256 object metadata,
  which :func:`bertconvert.cache.cached_path` verifies on download. ``--name NAME`` also
  uploads ``NAME.tar.gz`` (+ ``NAME-vocab.txt``) so the prefix works as ``BERTCONVERT_MIRROR``.

Every sub-command takes ``--cache-dir`` (default: ``$BERTCONVERT_CACHE``, then
``$PYTORCH_PRETRAINED_BERT_CACHE``, then ``~/.cache/bertconvert``).
"""
import argparse
import json
import os
import shutil
import sys
import tempfile
import time

from ..errors import CacheError
from ..layout import VOCAB_NAME


def _size(text):
    from ..cache.admin import parse_size
    try:
        return parse_size(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from e


def _age(text):
    from ..cache.admin import parse_age
    try:
        return parse_age(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from e


def register(subparsers):
    """Add ``cache`` and its sub-commands."""
    p = subparsers.add_parser(
        "cache", help="fetch, list, verify, prune, remove and push cached weights",
        description="Manage bertconvert's weight cache (a local or shared directory) and push "
                    "model directories to an S3 shared cache.")
    sub = p.add_subparsers(dest="cache_command", metavar="ACTION")
    sub.required = True

    def add(name, help_text, func):
        sp = sub.add_parser(name, help=help_text, description=help_text)
        sp.add_argument("--cache-dir", default=None,
                        help="cache directory (default: $BERTCONVERT_CACHE, "
                             "$PYTORCH_PRETRAINED_BERT_CACHE, ~/.cache/bertconvert)")
        sp.set_defaults(func=func)
        return sp

    sp = add("fetch", "download URLs or model names into the cache (populate a shared cache)", run_fetch)
    sp.add_argument("items", nargs="+", metavar="URL|NAME")
    sp.add_argument("--force-download", "--force", action="store_true", help="download again")
    sp.add_argument("--extract", action="store_true", help="also extract archives (URLs)")
    sp.add_argument("--sha256", help="expected sha256 (one URL only)")

    sp = add("ls", "list entries: url, etag, size, last used, complete", run_ls)
    sp.add_argument("--json", action="store_true", help="print JSON")

    sp = add("verify", "recompute sha256 of entries and compare with their metadata", run_verify)
    sp.add_argument("items", nargs="*", metavar="ITEM", help="key, URL or model name (default: all)")
    sp.add_argument("--remove-bad", action="store_true", help="delete entries that fail")

    sp = add("prune", "remove leftovers, then entries unused for long or beyond a size budget",
             run_prune)
    sp.add_argument("--max-size", type=_size, help="keep at most this much, e.g. 20G (LRU first)")
    sp.add_argument("--older-than", type=_age, help="remove entries unused for e.g. 30d, 12h")
    sp.add_argument("--dry-run", action="store_true", help="only print what would go")

    sp = add("rm", "remove entries (key, key prefix, URL or model name)", run_rm)
    sp.add_argument("items", nargs="*", metavar="ITEM")
    sp.add_argument("--all", action="store_true", help="remove every entry")

    sp = add("push", "upload a model directory to s3://bucket/prefix with sha256 metadata", run_push)
    sp.add_argument("path", metavar="PATH", help="model directory (or a single file)")
    sp.add_argument("destination", metavar="s3://bucket/prefix")
    sp.add_argument("--name", help="also upload NAME.tar.gz (and NAME-vocab.txt) for use as "
                                   "BERTCONVERT_MIRROR")
    sp.add_argument("--multipart-threshold", type=_size, default=None,
                    help="multipart upload above this size (default 64M)")
    sp.add_argument("--multipart-chunksize", type=_size, default=None,
                    help="multipart part size (default 16M; S3's minimum is 5M)")


# --- fetch / ls / verify ------------------------------------------------------------------------
def run_fetch(args):
    from ..cache.store import cached_path
    from ..errors import UnknownModelError
    from ..cache.names import PRETRAINED_MODEL_ARCHIVE_MAP, resolve_model_dir, resolve_vocab_file

    if args.sha256 and len(args.items) != 1:
        raise CacheError("--sha256 needs exactly one URL to fetch")
    for item in args.items:
        if item not in PRETRAINED_MODEL_ARCHIVE_MAP and "://" not in item \
                and not os.path.exists(item):
            # Most likely a mistyped model name: say which names exist, not "file not found".
            raise UnknownModelError(
                f"{item!r} is neither a known model name ({', '.join(PRETRAINED_MODEL_ARCHIVE_MAP)}) "
                "nor a URL (http(s)://, s3://) nor an existing path")
        if item in PRETRAINED_MODEL_ARCHIVE_MAP:
            opts = {"force_download": args.force_download, "progress": args.progress}
            model_dir = resolve_model_dir(item, args.cache_dir, **opts)
            vocab = resolve_vocab_file(item, args.cache_dir, **opts)
            print(f"{item}\t{model_dir}\t{vocab}")
        else:
            from ..cache.redact import shown_url

            path = cached_path(item, args.cache_dir, force_download=args.force_download,
                               sha256=args.sha256, extract=args.extract, progress=args.progress)
            print(f"{shown_url(item)}\t{path}")  # never a URL's password or signature


def _human(n):
    if n is None:
        return "-"
    for unit in ("B", "K", "M", "G", "T"):
        if n < 1024 or unit == "T":
            return f"{n:.0f}{unit}" if unit == "B" else f"{n:.1f}{unit}"
        n /= 1024


def _when(t):
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(t)) if t else "-"


def run_ls(args):
    from ..cache.entries import resolve_cache_dir
    from ..cache.admin import list_entries
    from ..cache.redact import shown_url

    entries = list_entries(args.cache_dir)
    for e in entries:  # entries written by older versions may hold a password or a token
        e.url = shown_url(e.url)
    if args.json:
        print(json.dumps([{"key": e.key, "url": e.url, "etag": e.etag, "size": e.size,
                           "last_used": e.last_used, "created": e.created, "complete": e.complete,
                           "sha256": e.sha256, "extracted": e.extracted, "path": e.path}
                          for e in entries], indent=1))
        return 0
    from ..cache.leftovers import leftovers

    stale = [item for item in leftovers(resolve_cache_dir(args.cache_dir)) if item.abandoned]
    note = f"; {len(stale)} leftover temp(s) of killed runs (`cache prune` removes them)" \
        if stale else ""
    print(f"# cache {resolve_cache_dir(args.cache_dir)}: {len(entries)} entries{note}")
    if not entries:
        return 0
    rows = [("URL", "ETAG", "SIZE", "LAST USED", "COMPLETE", "KEY")]
    for e in entries:
        rows.append((e.url or "?", e.etag or "-", _human(e.size), _when(e.last_used),
                     "yes" if e.complete else "NO", e.key[:16]))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())
    return 0


def run_verify(args):
    from ..cache.admin import list_entries, remove_entry, select_entries, verify_entry
    from ..cache.redact import shown_url

    entries = select_entries(args.items, args.cache_dir) if args.items else list_entries(args.cache_dir)
    bad = 0
    for e in entries:
        ok, detail = verify_entry(e, progress=args.progress)
        print(f"{'OK  ' if ok else 'FAIL'} {e.key[:16]} {shown_url(e.url) or '?'}: {detail}")
        if not ok:
            bad += 1
            if args.remove_bad:
                remove_entry(e)
                print(f"     removed {e.key[:16]}")
    print(f"# {len(entries) - bad} ok, {bad} failed", file=sys.stderr)
    return 1 if bad else 0


# --- prune / rm ---------------------------------------------------------------------------------
def run_prune(args):
    from ..cache.admin import prune

    removed = prune(args.cache_dir, max_size=args.max_size, older_than=args.older_than,
                    dry_run=args.dry_run)
    verb = "would remove" if args.dry_run else "removed"
    for p in removed:
        print(f"{verb} {p}")
    print(f"# {verb} {len(removed)} path(s)", file=sys.stderr)
    return 0


def run_rm(args):
    from ..cache.admin import remove_all, remove_entry, select_entries

    if args.all and args.items:
        raise CacheError("give ITEMs (keys, URLs or model names) or --all, not both")
    if not args.all and not args.items:
        raise CacheError("nothing to remove: give ITEMs (keys, URLs or model names), "
                         "or --all to remove every entry")
    if args.all:  # every entry, and what killed processes left (temps of no entry included)
        removed = remove_all(args.cache_dir)
    else:
        removed = [p for e in select_entries(args.items, args.cache_dir) for p in remove_entry(e)]
    for p in removed:
        print(f"removed {p}")
    return 0


# --- push ---------------------------------------------------------------------------------------
def run_push(args):
    from ..cache.archives import make_archive
    from ..cache.s3 import (DEFAULT_MULTIPART_CHUNKSIZE, DEFAULT_MULTIPART_THRESHOLD,
                               push_directory, split_s3_url)

    split_s3_url(args.destination)  # a clear error before any upload
    sizes = {"multipart_threshold": args.multipart_threshold or DEFAULT_MULTIPART_THRESHOLD,
             "multipart_chunksize": args.multipart_chunksize or DEFAULT_MULTIPART_CHUNKSIZE}
    pushed = push_directory(args.path, args.destination, progress=args.progress, **sizes)
    if args.name:
        if not os.path.isdir(args.path):
            raise CacheError(f"--name needs PATH to be a model directory; {args.path} is not")
        base = args.destination.rstrip("/")
        with tempfile.TemporaryDirectory() as tmp:
            staging = os.path.join(tmp, "stage")
            os.mkdir(staging)
            make_archive(args.path, os.path.join(staging, f"{args.name}.tar.gz"))
            vocab = os.path.join(args.path, VOCAB_NAME)
            if os.path.isfile(vocab):
                shutil.copyfile(vocab, os.path.join(staging, f"{args.name}-vocab.txt"))
            pushed += push_directory(staging, base, progress=args.progress, **sizes)
    for url, sha, size in pushed:
        print(f"{url}\t{size}\tsha256={sha}")
    return 0
