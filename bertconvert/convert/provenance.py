"""Provenance for ``conversion.json``: sha256 of the source files, computed on a thread.

Each digest covers a whole file, so it matches ``sha256sum``; which files are hashed is the
converter's choice (``convert.SOURCE_HASHES``: by default, not data shards that are mostly
optimizer slots). SHA-256 runs at about 1.6 GB/s per core and cannot be split, so for big
checkpoints it is the longest single job of a conversion; it runs beside the conversion
(hashlib releases the GIL on big chunks) and only its result is waited for.

Example::

    hasher = start_hashing([index_path, shard_path])
    ...                                   # convert meanwhile
    entries = hasher.wait() + hash_files([config_path])   # [{"path", "size", "sha256"}, ...]
"""
import hashlib
import logging
import os
import threading

from ..errors import ConversionError, option
from ..hashing import BLOCK_SIZE, feed_file, start_thread

log = logging.getLogger(__name__)

#: Cache-sized: the copy out of the page cache stays cheap.
_HASH_CHUNK = 1 << 20

#: What conversion.json's sha256 covers. The .index, config and vocab are always hashed; the
#: index holds every tensor's crc32c, and each converted tensor is checked against it.
#: Data shards: "auto" hashes a shard whole unless more than 1% of its bytes belong to
#: variables that are not converted (optimizer slots), which are then never read at all;
#: "full" hashes every shard whole (matches sha256sum, reads the slots' bytes too);
#: "index" hashes no shard.
SOURCE_HASHES = ("auto", "full", "index")
#: "auto" reads a shard whole for its sha256 only while its unconverted bytes stay below this.
#: The same share bounds a shard's tail that no index entry references: TensorFlow writes
#: tensors back to back, so a shard far longer than its entries reach (a sparse 1 TB tail)
#: is not a checkpoint as written; "auto" then leaves it unhashed (hashing it would read
#: the whole tail -- minutes -- for bytes conversion never uses) and says so.
AUTO_HASH_MAX_UNCONVERTED = 0.01

class SourceHasher:
    """Hash the source files beside the conversion, on a thread of its own once
    :meth:`start` is called (:func:`bertconvert.hashing.start_thread`; where no thread can be
    started, :meth:`start` hashes them there and then). Reading into one reused, cache-sized
    buffer keeps the copy out of the page cache cheap. (A separate read-ahead thread was
    measured slower: three busy threads on two cores.) ``cancel()`` stops it early."""

    def __init__(self, paths):
        self.paths, self.result, self.error = list(paths), [], None
        self._cancelled = threading.Event()
        self._thread = None

    def start(self):
        """Start hashing on a thread (or, failing that, hash now)."""
        self._thread = start_thread(self.run, "bertconvert-sha256")
        if self._thread is None:
            self.run()

    def is_alive(self):
        """True while the hashing thread runs."""
        return self._thread is not None and self._thread.is_alive()

    def run(self):
        """Hash every file on this thread, appending to ``result`` (``error`` on failure)."""
        buf = bytearray(BLOCK_SIZE)
        try:
            for path in self.paths:
                digest = hashlib.sha256()
                with open(path, "rb", buffering=0) as f:
                    size = feed_file(f, digest.update, buf, self._cancelled)
                if size is None:
                    return  # no entry for a file that was not read to the end
                self.result.append({"path": os.path.abspath(path), "size": size,
                                    "sha256": digest.hexdigest()})
        except OSError as e:
            self.error = e

    def cancel(self):
        """Stop early (after a failure elsewhere) and wait for the thread to end."""
        self._cancelled.set()
        if self._thread is not None:
            self._thread.join()

    def wait(self):
        """The ``{"path", "size", "sha256"}`` entries, once every file is hashed."""
        if self._thread is not None:
            self._thread.join()
        if self.error is not None:
            raise ConversionError(f"cannot hash source file for conversion.json: {self.error}") from self.error
        return self.result


def hash_files(paths):
    """``{"path", "size", "sha256"}`` entries for small files, hashed on this thread."""
    hasher = SourceHasher(paths)
    hasher.run()
    if hasher.error is not None:
        raise ConversionError(f"cannot hash source file for conversion.json: {hasher.error}") from hasher.error
    return hasher.result


def start_hashing(paths):
    """A started :class:`SourceHasher` for ``paths``."""
    hasher = SourceHasher(paths)
    hasher.start()
    return hasher


class SourceHashing:
    """The sha256 side of conversion.json for one conversion (see :data:`SOURCE_HASHES`).

    With "full" the hashing starts at once, before planning: it is the longest single job
    and runs on the other core -- unless ``defer`` (an ``s3://`` output, whose rerun must find
    the conversion already published without reading a shard): then at :meth:`plan_ready`.
    Otherwise the plan decides which shards to hash whole.
    """

    def __init__(self, reader, mode, defer=False):
        self.reader, self.mode = reader, mode
        #: A remote checkpoint is never hashed (that would download every shard whole):
        #: conversion.json records each object's ETag / VersionId instead.
        self.store = getattr(reader, "store", None)
        self._whole_now = mode == "full" and self.store is None
        self.hasher = start_hashing(reader.files) if self._whole_now and not defer else None

    def plan_ready(self, plan):
        """Start hashing (unless started) once the plan says which bytes are converted; returns
        notes for the report."""
        if self.hasher is not None:
            return []
        if self._whole_now:  # "full", deferred until the run is known to write
            self.hasher = start_hashing(self.reader.files)
            return []
        if self.store is not None:
            self.hasher = start_hashing([])
            return [f"{self.reader.prefix}: read in place (byte ranges of the converted tensors "
                    "only); the source objects are recorded by ETag/VersionId, not sha256"]
        index, shards = self.reader.files[0], self.reader.files[1:]
        notes, whole = [], [index]
        unconverted = self._unconverted_bytes(plan)
        referenced = {os.path.abspath(k): v for k, v in self.reader.referenced_bytes().items()}
        for shard in shards:
            size = os.path.getsize(shard)
            tail = size - referenced.get(os.path.abspath(shard), size)
            if self.mode == "auto" and tail > AUTO_HASH_MAX_UNCONVERTED * size:
                full = option("--source-hash full", "source_hash='full'")
                log.warning("%s is %d bytes but its index entries reach only %d; its %d "
                            "trailing bytes belong to no tensor", shard, size, size - tail, tail)
                notes.append(
                    f"{os.path.basename(shard)}: no sha256 (it is {size} bytes, but the index's "
                    f"tensors end at byte {size - tail}: {tail / size:.0%} of it belongs to no "
                    f"tensor and was not read; the hashed .index pins each tensor's crc32c). "
                    f"{full} hashes it whole")
                continue
            kinds = unconverted.get(os.path.abspath(shard), {})
            skipped = sum(kinds.values())
            if self.mode == "auto" and skipped <= AUTO_HASH_MAX_UNCONVERTED * size:
                whole.append(shard)
                continue
            if self.mode == "auto":
                full = option("--source-hash full", "source_hash='full'")
                # Say what the unread bytes are: optimizer slots and bookkeeping (skipped), or
                # a head the chosen layout does not have (dropped) -- never one for the other.
                what = " and ".join(
                    label for kind, label in (
                        ("skipped", "optimizer slots and bookkeeping"),
                        ("dropped", f"head variables that {plan.head} does not have"),
                        ("pooler", f"the pooler, which {plan.head} does not use"))
                    if kinds.get(kind))
                notes.append(
                    f"{os.path.basename(shard)}: no sha256 ({skipped / max(size, 1):.0%} of it is "
                    f"variables not converted ({what}), which were never read; the hashed "
                    f".index pins each tensor's crc32c). "
                    f"{full} hashes it whole")
        self.hasher = start_hashing(whole)
        return notes

    def _unconverted_bytes(self, plan):
        """``{shard path: {"skipped": bytes, "dropped": bytes}}`` of variables not converted."""
        per_shard = {}
        names = [(n, "skipped") for n, _ in plan.skipped] + [
            (n, "pooler" if not plan.keep_pooler and ".pooler." in k else "dropped")
            for n, k, _ in plan.dropped]
        for name, kind in names:
            entry = self.reader.entry(name)
            if entry.file and not entry.slices:  # partitioned slices are too rare to count
                kinds = per_shard.setdefault(os.path.abspath(entry.file), {})
                kinds[kind] = kinds.get(kind, 0) + entry.size
        return per_shard

    def entries(self, side_paths):
        """conversion.json's ``source_files``: checkpoint files in order, then config and vocab."""
        hashed = {e["path"]: e for e in self.hasher.wait()}
        if self.store is not None:
            sides = hash_files(side_paths)
            for entry in sides:  # a fetched copy: name the object it came from
                entry["path"] = self.store.side_urls.get(entry["path"], entry["path"])
            return self.store.records() + sides
        ordered = []
        for path in self.reader.files:
            key = os.path.abspath(path)
            ordered.append(hashed.get(key) or {"path": key, "size": os.path.getsize(path),
                                               "sha256": None})
        return ordered + hash_files(side_paths)

    def cancel(self):
        if self.hasher is not None:
            self.hasher.cancel()
