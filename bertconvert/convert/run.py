"""Convert a Google TensorFlow BERT checkpoint into a PyTorch model directory, exactly.

The work happens in three steps that never go back: :func:`~bertconvert.convert.plan.plan_conversion`
decides everything from the checkpoint index and the config (no tensor read yet), then every
planned tensor is streamed by :class:`~bertconvert.convert.tensors.TensorCopier` -- read in small
crc-checked pieces, transformed (transpose/reshape only: the values are the checkpoint's),
cast to the output dtype, appended to the weight file(s) -- and finally the directory is
published atomically: every file fsynced once, then renamed into place. The source files'
sha256 (for ``conversion.json``) is computed on a second thread meanwhile. Optimizer slots
are never read for conversion. Peak memory is about one tensor, not one model.

The default safetensors output needs numpy only: torch is imported just for
``format="pytorch"``/``"both"``, for freshly initialised head weights, and by
:func:`load_converted_model`.

Output directory (``format="safetensors"`` by default)::

    config.json          transformers-compatible (model_type, architectures, num_labels)
    bert_config.json     the original Google config
    model.safetensors    and/or pytorch_model.bin (format="pytorch" | "both")
    vocab.txt            copied from beside the checkpoint
    tokenizer_config.json  do_lower_case (guessed from the vocabulary), model_max_length,
                         tokenizer_class: so tokenizers load a cased model cased
    conversion.json      provenance: source files + sha256, rule per variable, skipped names

Example::

    >>> report = convert_checkpoint("uncased_L-12_H-768_A-12/bert_model.ckpt", "out/bert")
    >>> report.head, len(report.skipped)
    ('pretraining', 0)
    >>> model, report = load_converted_model("fine_tuned/model.ckpt-1000", head="auto")
"""
import errno
import logging
import os
import shutil
from dataclasses import dataclass, field

import numpy as np

from .. import __version__
from ..safeio import dumps_json
from ..atomic import (atomic_directory, atomic_write, check_output_spares_inputs,
                      remove_stale_temps)
from ..checkpoint import load_checkpoint
from ..errors import ConversionError, MissingDependencyError, OutputWriteError, VocabError, option
from .rules import detect_head  # noqa: F401  (part of this module's public API)
from .plan import plan_conversion, resolve_config
from ..directio import DirectFile
from .provenance import hash_files, start_hashing
from .writers import SafetensorsStreamWriter, TensorSpec, safetensors_order, torch_zip_writer
from .tensors import TensorCopier, storage_dtype

logger = logging.getLogger(__name__)

FORMATS = ("safetensors", "pytorch", "both")
DTYPES = ("float32", "float16", "bfloat16")
#: What conversion.json's sha256 covers. The .index, config and vocab are always hashed; the
#: index holds every tensor's crc32c, and each converted tensor is checked against it.
#: Data shards: "auto" hashes a shard whole unless more than 1% of its bytes belong to
#: variables that are not converted (optimizer slots), which are then never read at all;
#: "full" hashes every shard whole (matches sha256sum, reads the slots' bytes too);
#: "index" hashes no shard.
SOURCE_HASHES = ("auto", "full", "index")
#: "auto" reads a shard whole for its sha256 only while its unconverted bytes stay below this.
AUTO_HASH_MAX_UNCONVERTED = 0.01
SAFETENSORS_NAME = "model.safetensors"
PYTORCH_NAME = "pytorch_model.bin"
REPORT_NAME = "conversion.json"
VOCAB_NAME = "vocab.txt"
TOKENIZER_CONFIG_NAME = "tokenizer_config.json"


@dataclass
class ConversionReport:
    """What a conversion did; ``to_dict()`` is what ``conversion.json`` holds."""

    checkpoint: str
    head: str
    num_labels: int
    model_class: str
    dtype: str
    format: str = None
    output_dir: str = None
    config_path: str = None
    variables: list = field(default_factory=list)
    skipped: list = field(default_factory=list)
    dropped: list = field(default_factory=list)
    new_keys: list = field(default_factory=list)
    tied: dict = field(default_factory=dict)
    notes: list = field(default_factory=list)
    source_files: list = field(default_factory=list)
    source_hash: str = "auto"
    files: list = field(default_factory=list)

    @classmethod
    def from_plan(cls, plan, dtype):
        return cls(
            checkpoint=plan.prefix, head=plan.head, num_labels=plan.num_labels,
            model_class=plan.model_class, dtype=dtype, config_path=plan.config_path,
            variables=[{"name": t.name, "key": t.key, "rule": t.rule.source,
                        "flavour": t.rule.flavour, "transform": t.rule.transform,
                        "shape": list(t.source_shape), "target_shape": list(t.shape),
                        "source_dtype": t.source_dtype}
                       for t in sorted(plan.tensors, key=lambda t: t.name)],
            skipped=[{"name": n, "reason": r} for n, r in plan.skipped],
            dropped=[{"name": n, "key": k, "reason": r} for n, k, r in plan.dropped],
            new_keys=[k for k, _ in plan.new_keys], tied=dict(plan.tied), notes=list(plan.notes))

    def to_dict(self):
        """A JSON-ready dict (the content of ``conversion.json``)."""
        return {
            "bertconvert_version": __version__, "checkpoint": self.checkpoint,
            "config": self.config_path, "head": self.head, "model_class": self.model_class,
            "num_labels": self.num_labels, "dtype": self.dtype, "format": self.format,
            "source_files": self.source_files, "source_hash": self.source_hash,
            "files": self.files, "notes": self.notes,
            "variables": self.variables, "skipped": self.skipped, "dropped": self.dropped,
            "new_keys": self.new_keys, "tied": self.tied,
        }


# --- tensors ---------------------------------------------------------------------------
def _require_torch(what):
    """torch, imported on first need; a named error with the way out when it is missing."""
    try:
        import torch
    except ImportError as e:
        raise MissingDependencyError(
            f"{what} needs PyTorch, which cannot be imported here ({e}). Install it "
            f"(pip install torch), or convert with {_format_option('safetensors')} (the "
            "default), which needs numpy only") from e
    return torch


def _format_option(format):
    return option(f"--format {format}", f"format={format!r}")


def _to_torch(array):
    """numpy -> torch sharing memory (ml_dtypes' bfloat16 is reinterpreted from its bits)."""
    import torch

    if array.dtype.name == "bfloat16":
        return torch.from_numpy(array.view(np.int16)).view(torch.bfloat16)
    return torch.from_numpy(array)


def _check_options(format, dtype, source_hash="auto"):
    if format is not None and format not in FORMATS:
        raise ConversionError(f"unknown format {format!r}; expected one of {', '.join(FORMATS)}")
    if dtype not in DTYPES:
        raise ConversionError(f"unknown dtype {dtype!r}; expected one of {', '.join(DTYPES)}")
    if source_hash not in SOURCE_HASHES:
        raise ConversionError(f"unknown source_hash {source_hash!r}; expected one of "
                              f"{', '.join(SOURCE_HASHES)}")


def _fresh(key, shape, config, dtype):
    """Google's initialisation for a parameter the checkpoint lacks: normal(0, initializer_range)
    weights, zero biases, LayerNorm scale 1. Drawn from torch's RNG (imported only here), so
    ``torch.manual_seed`` makes it reproducible as it did with pytorch-pretrained-bert."""
    torch = _require_torch(f"initialising {key} (not in the checkpoint)")

    if key.endswith("LayerNorm.weight"):
        value = torch.ones(shape)
    elif key.endswith("bias"):
        value = torch.zeros(shape)
    else:
        value = torch.empty(shape).normal_(0.0, config.initializer_range)
    if dtype == "bfloat16":
        return value.to(torch.bfloat16).view(torch.int16).numpy().view(storage_dtype(dtype))
    return value.to(getattr(torch, dtype)).numpy()


def iter_tensors(reader, plan, dtype, progress=False, reuse_buffer=True, order=None):
    """Yield ``(key, numpy array)`` for every planned and every new key, one at a time, in
    ``order`` (keys; default: the plan's). With ``reuse_buffer`` an array is only valid until
    the next one is produced (one scratch buffer serves them all)."""
    planned = {t.key: t for t in plan.tensors}
    fresh = dict(plan.new_keys)
    with TensorCopier(reader, dtype) as copier, _progress(plan, progress) as bar:
        for key in order or ([t.key for t in plan.tensors] + [k for k, _ in plan.new_keys]):
            if key in fresh:
                yield key, _fresh(key, fresh[key], plan.config, dtype)
                continue
            t = planned[key]
            yield key, copier.array(t, fresh=not reuse_buffer)
            bar.update(t.nbytes)


def _specs(plan, dtype, order="safetensors"):
    """Every output tensor's TensorSpec, in safetensors' order or the model's state-dict
    order (``order="model"``: how 0.6.2's torch.save laid out pytorch_model.bin)."""
    specs = [TensorSpec(t.key, dtype, tuple(t.shape)) for t in plan.tensors] + \
        [TensorSpec(k, dtype, tuple(s)) for k, s in plan.new_keys]
    if order == "safetensors":
        return safetensors_order(specs)
    rank = {k: i for i, k in enumerate(plan.key_order)}
    return sorted(specs, key=lambda s: rank.get(s.name, len(rank)))


class _NoBar:
    def update(self, n):
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        pass


def _progress(plan, enabled):
    """A tqdm bar over the planned source bytes (tqdm is only imported when shown)."""
    if not enabled:
        return _NoBar()
    from tqdm.auto import tqdm

    return tqdm(total=sum(t.nbytes for t in plan.tensors), unit="B", unit_scale=True,
                desc="converting", leave=False)


# --- output -------------------------------------------------------------------------------
def _fsync(f):
    """Make ``f``'s bytes durable (files from a custom opener may have no descriptor)."""
    if hasattr(f, "flush"):
        f.flush()
    if hasattr(f, "fileno"):
        os.fsync(f.fileno())


def _open_weights(path, opener):
    """A weight file: a :class:`DirectFile` (written past the page cache, cheap to fsync)
    unless the caller supplied an ``opener``."""
    return DirectFile(path, "x") if opener is None else opener(path, "wb")


def _fsync_path(path):
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_safetensors(path, plan, reader, dtype, progress, opener):
    """model.safetensors, streamed piece by piece: no torch, one tensor in memory at most.

    Tensors are declared in safetensors' own order, so the file is byte for byte what
    ``safetensors.numpy.save_file`` would write. Tied aliases are left out, as transformers
    does; loaders re-tie them.
    """
    specs = _specs(plan, dtype)
    planned = {t.key: t for t in plan.tensors}
    fresh = dict(plan.new_keys)
    with _open_weights(path, opener) as raw, TensorCopier(reader, dtype) as copier, \
            _progress(plan, progress) as bar:
        writer = SafetensorsStreamWriter(raw, specs, metadata={"format": "pt"})
        for spec in specs:
            if spec.name in fresh:
                writer.write(spec.name, _fresh(spec.name, fresh[spec.name], plan.config, dtype))
                continue
            t = planned[spec.name]
            writer.write_chunks(spec.name, copier.chunks(t))
            bar.update(t.nbytes)
        writer.close()
        _fsync(raw)  # durable before the directory is renamed into place


def _write_with_torch(directory, plan, reader, format, dtype, progress, opener):
    """pytorch_model.bin (and model.safetensors for "both"), from whole arrays: torch's zip
    writer takes each storage in one piece."""
    _require_torch(f"writing {PYTORCH_NAME} ({_format_option(format)})")
    specs = _specs(plan, dtype, order="safetensors" if format == "both" else "model")
    files, writers, done = [], [], False
    try:
        if format == "both":
            f = _open_weights(os.path.join(directory, SAFETENSORS_NAME), opener)
            files.append(f)
            writers.append(SafetensorsStreamWriter(f, specs, metadata={"format": "pt"}))
        f = _open_weights(os.path.join(directory, PYTORCH_NAME), opener)
        files.append(f)
        writers.append(torch_zip_writer(f, specs, aliases=plan.tied))
        for key, array in iter_tensors(reader, plan, dtype, progress, order=[s.name for s in specs]):
            for w in writers:
                w.write(key, array)
        for w in writers:
            w.close()
        for f in files:
            _fsync(f)  # durable before the directory is renamed into place
        done = True
    finally:
        for w in writers:  # a no-op after close(); after a failure, keeps torch's
            if hasattr(w, "abort"):  # writer from retrying (and aborting) in its destructor
                w.abort()
        for f in files:
            if not done and isinstance(f, DirectFile):
                f.abort()  # discarded anyway; a second write error must not hide the first
            else:
                f.close()


def _write_weights(directory, plan, reader, format, dtype, progress, opener):
    if format == "safetensors":
        _write_safetensors(os.path.join(directory, SAFETENSORS_NAME), plan, reader, dtype,
                           progress, opener)
    else:
        _write_with_torch(directory, plan, reader, format, dtype, progress, opener)
    return [name for name, on in ((SAFETENSORS_NAME, format in ("safetensors", "both")),
                                  (PYTORCH_NAME, format in ("pytorch", "both"))) if on]


def _hf_config(plan, dtype):
    data = plan.config.to_hf_dict(architectures=[plan.model_class])
    data["num_labels"] = plan.num_labels if plan.num_labels is not None else data.get("num_labels", 2)
    if "id2label" not in data or len(data["id2label"]) != data["num_labels"]:
        data["id2label"] = {str(i): f"LABEL_{i}" for i in range(data["num_labels"])}
        data["label2id"] = {f"LABEL_{i}": i for i in range(data["num_labels"])}
    data["dtype"] = dtype
    return dict(sorted(data.items()))


def tokenizer_config(vocab_file, config):
    """The ``tokenizer_config.json`` for a converted model, or None when the vocabulary cannot
    be read (a note says so; the conversion itself does not need it).

    Without this file, tokenizers fall back to ``do_lower_case=True`` and silently lower-case
    text for a cased model; the casing is guessed from the checkpoint's own vocabulary (see
    :func:`bertconvert.tokenizer.wordpiece.guess_do_lower_case`).
    """
    from ..tokenizer.wordpiece import guess_do_lower_case

    try:
        lower = guess_do_lower_case(vocab_file)
    except VocabError as e:
        logger.warning("cannot tell the casing of %s (%s); writing no %s", vocab_file, e,
                       TOKENIZER_CONFIG_NAME)
        return None
    return {"do_lower_case": lower, "model_max_length": config.max_position_embeddings,
            "tokenizer_class": "BertTokenizer"}


def _write_json(path, data, opener, fsync=False):
    with opener(path, "w") as f:
        f.write(dumps_json(data, ConversionError, os.path.basename(path), indent=2) + "\n")
        if fsync:
            _fsync(f)


def convert_checkpoint(checkpoint, out_dir, *, config=None, head="auto", num_labels=None,
                       format="safetensors", dtype="float32", overwrite=False,
                       allow_new_head=False, progress=True, opener=None, source_hash="auto",
                       vocab=None):
    """Convert a TF checkpoint (prefix, ``.index`` file or directory) into model directory ``out_dir``.

    ``config``: path/dict/BertConfig (default: ``bert_config.json`` beside the checkpoint).
    ``vocab``: the vocabulary file to copy into the output as ``vocab.txt`` (default: the
    ``vocab.txt`` beside the checkpoint, if any).
    ``head``: "auto" or a :data:`bertconvert.models.heads.HEADS` name; ``num_labels`` must agree
    with the checkpoint's classifier. ``format``: safetensors, pytorch or both. ``dtype``:
    float32, float16 or bfloat16. ``overwrite`` replaces an existing directory (only once the
    new one is complete). ``allow_new_head`` lets a checkpoint without the head's variables
    be converted; those keys get a fresh initialisation and are listed in the report.
    ``source_hash``: which source files conversion.json gives a sha256 (see
    :data:`SOURCE_HASHES`): by default ("auto") all of them, except data shards that are
    mostly optimizer slots, which are never read; "full" hashes those too (for
    BERT-large with Adam slots the conversion then takes about 3.5 times as long), "index"
    none.
    ``opener(path, mode)`` creates output files (for tests or custom storage; by default the
    weights are written with :class:`~bertconvert.directio.DirectFile`, the rest with ``open``).

    Returns a :class:`ConversionReport`. On any failure (bad input, mapping problems, a full
    disk) a named :class:`~bertconvert.errors.BertConvertError` is raised and ``out_dir`` is
    left as it was. An ``out_dir`` that is empty, or is, contains or lies inside one of the
    source files (checkpoint, config, vocabulary) is refused with
    :class:`~bertconvert.errors.UnsafeOutputError`, even with ``overwrite``.
    """
    _check_options(format, dtype, source_hash)
    if format != "safetensors":  # before anything is read or written
        _require_torch(f"writing {PYTORCH_NAME} ({_format_option(format)})")
    weights_opener, opener = opener, opener or open
    check_output_spares_inputs(out_dir, [], keyword="out_dir")  # "" would mean the cwd
    out_dir = os.path.abspath(os.fspath(out_dir))
    with load_checkpoint(checkpoint, mmap=False) as reader:
        hashing = _SourceHashing(reader, source_hash)
        try:
            report = _convert_with_reader(reader, hashing, out_dir, config, head, num_labels,
                                          format, dtype, overwrite, allow_new_head, progress,
                                          weights_opener, opener, vocab)
        finally:
            hashing.cancel()  # after a failure, do not keep reading gigabytes for nothing
    logger.info("converted %s (%s, %d tensors, %d skipped) into %s", report.checkpoint,
                report.head, len(report.variables), len(report.skipped), out_dir)
    return report


class _SourceHashing:
    """The sha256 side of conversion.json for one conversion (see :data:`SOURCE_HASHES`).

    With "full" the hashing starts at once, before planning: it is the longest single job
    and runs on the other core. Otherwise the plan decides which shards to hash whole.
    """

    def __init__(self, reader, mode):
        self.reader, self.mode = reader, mode
        self.hasher = start_hashing(reader.files) if mode == "full" else None

    def plan_ready(self, plan):
        """Start hashing (unless started) once the plan says which bytes are converted; returns
        notes for the report."""
        if self.hasher is not None:
            return []
        index, shards = self.reader.files[0], self.reader.files[1:]
        notes, whole = [], [index]
        unconverted = self._unconverted_bytes(plan)
        for shard in shards:
            size = os.path.getsize(shard)
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
                        ("dropped", f"head variables that {plan.head} does not have"))
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
        names = [(n, "skipped") for n, _ in plan.skipped] + [(d[0], "dropped") for d in plan.dropped]
        for name, kind in names:
            entry = self.reader.entry(name)
            if entry.file and not entry.slices:  # partitioned slices are too rare to count
                kinds = per_shard.setdefault(os.path.abspath(entry.file), {})
                kinds[kind] = kinds.get(kind, 0) + entry.size
        return per_shard

    def entries(self, side_paths):
        """conversion.json's ``source_files``: checkpoint files in order, then config and vocab."""
        hashed = {e["path"]: e for e in self.hasher.wait()}
        ordered = []
        for path in self.reader.files:
            key = os.path.abspath(path)
            ordered.append(hashed.get(key) or {"path": key, "size": os.path.getsize(path),
                                               "sha256": None})
        return ordered + hash_files(side_paths)

    def cancel(self):
        if self.hasher is not None:
            self.hasher.cancel()


def _vocab_source(vocab, prefix):
    """``(path, found)``: the vocabulary to copy, explicit or beside the checkpoint."""
    if vocab is None:
        path = os.path.join(os.path.dirname(os.path.abspath(prefix)), VOCAB_NAME)
        return path, os.path.isfile(path)
    path = os.fspath(vocab)
    if not os.path.isfile(path):
        what = "does not exist" if not os.path.exists(path) else "is not a file"
        raise VocabError(f"vocabulary {path} {what}; expected a vocab.txt (one WordPiece token "
                         f"per line) for {option('--vocab FILE', 'vocab=')}")
    return os.path.abspath(path), True


def _convert_with_reader(reader, hashing, out_dir, config, head, num_labels, format, dtype,
                         overwrite, allow_new_head, progress, weights_opener, opener,
                         vocab=None):
    """The body of :func:`convert_checkpoint`, once the checkpoint is open."""
    cfg, config_path = resolve_config(config, reader.prefix)
    vocab, has_vocab = _vocab_source(vocab, reader.prefix)
    # Before anything is planned or written: --out must not be (or hold) what is read.
    check_output_spares_inputs(out_dir, list(reader.files) + [config_path]
                               + [vocab if has_vocab else None], keyword="out_dir")
    plan = plan_conversion(reader, cfg, head=head, num_labels=num_labels,
                           allow_new_head=allow_new_head, config_path=config_path)
    report = ConversionReport.from_plan(plan, dtype)
    report.format, report.output_dir, report.source_hash = format, out_dir, hashing.mode
    report.notes.extend(hashing.plan_ready(plan))
    if not has_vocab:
        report.notes.append(f"no {VOCAB_NAME} beside the checkpoint; the model directory has "
                            f"none (pass {option('--vocab FILE', 'vocab=PATH')} to add one)")
        logger.warning("no %s beside %s; the output has no vocabulary", VOCAB_NAME, reader.prefix)
    if has_vocab:  # a longer vocabulary gives ids the model cannot embed: refuse it now
        from ..tokenizer.vocab import check_vocab_size
        check_vocab_size(vocab, plan.config.vocab_size, config_path or "the config")
    tokenizer = tokenizer_config(vocab, plan.config) if has_vocab else None
    if has_vocab and tokenizer is None:
        report.notes.append(f"{VOCAB_NAME} could not be read as a vocabulary; no "
                            f"{TOKENIZER_CONFIG_NAME} was written")
    side_sources = [p for p in (config_path, vocab if has_vocab else None) if p]
    try:
        with atomic_directory(out_dir, overwrite=overwrite) as tmp:
            # Small files first: their writeback overlaps the weights, so their single
            # fsync each (below, before publishing) has nothing left to wait for.
            side = [os.path.join(tmp, "config.json"), os.path.join(tmp, "bert_config.json")]
            _write_json(side[0], _hf_config(plan, dtype), opener)
            if config_path and os.path.basename(config_path) == "bert_config.json":
                shutil.copyfile(config_path, side[1])
            else:
                _write_json(side[1], plan.config.to_google_dict(), opener)
            if has_vocab:
                side.append(os.path.join(tmp, VOCAB_NAME))
                shutil.copyfile(vocab, side[-1])
            if tokenizer is not None:
                side.append(os.path.join(tmp, TOKENIZER_CONFIG_NAME))
                _write_json(side[-1], tokenizer, opener)
            files = _write_weights(tmp, plan, reader, format, dtype, progress, weights_opener)
            for path in side:
                _fsync_path(path)
            report.files = sorted(files + [os.path.basename(p) for p in side] + [REPORT_NAME])
            report.source_files = hashing.entries(side_sources)
            _write_json(os.path.join(tmp, REPORT_NAME), report.to_dict(), opener, fsync=True)
    except OSError as e:
        what = "the disk is full" if e.errno == errno.ENOSPC else "an I/O error"
        raise OutputWriteError(
            f"writing {out_dir} failed with {what} ({e}); nothing was published there. "
            f"Free space or choose another {option('--out', 'out_dir')}, then run the "
            "conversion again") from e
    return report


def convert_to_pytorch_file(checkpoint, config_file, output_file, *, head="auto", num_labels=None,
                            allow_new_head=False, progress=True):
    """The 0.6.2 form: write a single ``pytorch_model.bin`` state dict to ``output_file``.

    An existing directory gets ``pytorch_model.bin`` inside it; an existing file is replaced
    (atomically), as pytorch-pretrained-bert's script did -- unless it is one of the inputs
    (checkpoint files, config): that is :class:`~bertconvert.errors.UnsafeOutputError`.
    Returns the ConversionReport.
    """
    _require_torch(f"writing {PYTORCH_NAME}")
    check_output_spares_inputs(output_file, [], "PYTORCH_DUMP_OUTPUT", "output_file")
    output_file = os.fspath(output_file)
    if os.path.isdir(output_file):
        output_file = os.path.join(output_file, PYTORCH_NAME)
    with load_checkpoint(checkpoint, mmap=False) as reader:
        cfg, config_path = resolve_config(config_file, reader.prefix)
        check_output_spares_inputs(output_file, list(reader.files) + [config_path],
                                   "PYTORCH_DUMP_OUTPUT", "output_file")
        plan = plan_conversion(reader, cfg, head=head, num_labels=num_labels,
                               allow_new_head=allow_new_head, config_path=config_path)
        report = ConversionReport.from_plan(plan, "float32")
        report.format, report.output_dir = "pytorch", os.path.dirname(os.path.abspath(output_file))
        remove_stale_temps(output_file)  # what killed runs to the same file left behind
        try:
            with atomic_write(output_file, direct=True) as f:
                specs = _specs(plan, "float32", order="model")
                writer = torch_zip_writer(f, specs, aliases=plan.tied)
                try:
                    for key, array in iter_tensors(reader, plan, "float32", progress,
                                                   order=[s.name for s in specs]):
                        writer.write(key, array)
                    writer.close()
                finally:
                    writer.abort()
        except OSError as e:
            raise OutputWriteError(f"writing {output_file} failed ({e}); it was not created or "
                                   "replaced") from e
    report.files = [os.path.basename(output_file)]
    return report


def load_converted_model(checkpoint, *, config=None, head="auto", num_labels=None,
                         dtype="float32", allow_new_head=False):
    """Convert in memory: ``(model, ConversionReport)`` with the model in eval mode.

    Same planning and checks as :func:`convert_checkpoint`; nothing is written to disk.
    """
    from ..models.heads import target_model

    _check_options(None, dtype)
    with load_checkpoint(checkpoint, mmap=False) as reader:
        cfg, config_path = resolve_config(config, reader.prefix)
        plan = plan_conversion(reader, cfg, head=head, num_labels=num_labels,
                               allow_new_head=allow_new_head, config_path=config_path)
        state = {key: _to_torch(array) for key, array in
                 iter_tensors(reader, plan, dtype, reuse_buffer=False)}
    model = target_model(plan.head, plan.config, plan.num_labels)
    model.load_state_dict(state, strict=False, assign=True)
    if hasattr(model, "tie_weights"):
        model.tie_weights()
    left = [n for n, p in list(model.named_parameters()) + list(model.named_buffers()) if p.is_meta]
    if left:  # the plan accounts for every key, so this is a bug, never user input
        raise ConversionError(f"parameters left unfilled after conversion: {left}")
    model.eval()
    report = ConversionReport.from_plan(plan, dtype)
    return model, report
