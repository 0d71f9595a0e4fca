"""Convert a Google TensorFlow BERT checkpoint into a PyTorch model directory, exactly.

The work happens in three steps that never go back: :func:`~bertconvert.planning.plan_conversion`
decides everything from the checkpoint index and a meta-device model (no tensor read yet),
then every planned tensor is streamed -- read, transformed (transpose/reshape only: the bytes
are the checkpoint's), cast to the output dtype, appended to the weight file(s) -- and finally
the directory is published atomically. Optimizer slots are never read. Peak memory is about
one tensor, not one model.

Output directory (``format="safetensors"`` by default)::

    config.json          transformers-compatible (model_type, architectures, num_labels)
    bert_config.json     the original Google config
    model.safetensors    and/or pytorch_model.bin (format="pytorch" | "both")
    vocab.txt            copied from beside the checkpoint
    conversion.json      provenance: source files + sha256, rule per variable, skipped names

Example::

    >>> report = convert_checkpoint("uncased_L-12_H-768_A-12/bert_model.ckpt", "out/bert")
    >>> report.head, len(report.skipped)
    ('pretraining', 0)
    >>> model, report = load_converted_model("fine_tuned/model.ckpt-1000", head="auto")
"""
import errno
import hashlib
import json
import logging
import os
import queue
import shutil
import threading
from dataclasses import dataclass, field

import numpy as np

from . import __version__
from .atomic import atomic_directory, atomic_write
from .checkpoint import load_checkpoint
from .errors import ConversionError, OutputWriteError
from .mapping import (NONE, RESHAPE, RESHAPE_IN_TRANSPOSE, RESHAPE_OUT_TRANSPOSE, TRANSPOSE,  # noqa: F401
                      detect_head)  # detect_head is part of this module's public API
from .planning import plan_conversion, resolve_config
from .streaming import SafetensorsStreamWriter, TensorSpec, TorchZipStreamWriter

logger = logging.getLogger(__name__)

FORMATS = ("safetensors", "pytorch", "both")
DTYPES = ("float32", "float16", "bfloat16")
SAFETENSORS_NAME = "model.safetensors"
PYTORCH_NAME = "pytorch_model.bin"
REPORT_NAME = "conversion.json"
VOCAB_NAME = "vocab.txt"
_HASH_CHUNK = 4 << 20


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
            "source_files": self.source_files, "files": self.files, "notes": self.notes,
            "variables": self.variables, "skipped": self.skipped, "dropped": self.dropped,
            "new_keys": self.new_keys, "tied": self.tied,
        }


# --- tensors ---------------------------------------------------------------------------
#: How each output dtype is held in numpy. bfloat16 travels as its raw 16-bit patterns
#: (int16), so no numpy extension type is needed; torch does the rounding.
_STORAGE = {"float32": np.dtype(np.float32), "float16": np.dtype(np.float16),
            "bfloat16": np.dtype(np.int16)}


def _torch_dtype(dtype):
    import torch

    return getattr(torch, dtype)


def _to_torch(array, dtype=None):
    """numpy -> torch sharing memory. ``dtype="bfloat16"`` (or ml_dtypes' bfloat16 arrays,
    which the checkpoint reader returns) are reinterpreted from their 16-bit patterns."""
    import torch

    if dtype == "bfloat16" or array.dtype.name == "bfloat16":
        return torch.from_numpy(array.view(np.int16)).view(torch.bfloat16)
    return torch.from_numpy(array)


def _check_options(format, dtype):
    if format is not None and format not in FORMATS:
        raise ConversionError(f"unknown format {format!r}; expected one of {', '.join(FORMATS)}")
    if dtype not in DTYPES:
        raise ConversionError(f"unknown dtype {dtype!r}; expected one of {', '.join(DTYPES)}")


def _fresh(key, shape, config, dtype):
    """Google's initialisation for a parameter the checkpoint lacks: normal(0, initializer_range)
    weights, zero biases, LayerNorm scale 1 (torch's RNG, so torch.manual_seed applies)."""
    import torch

    if key.endswith("LayerNorm.weight"):
        value = torch.ones(shape)
    elif key.endswith("bias"):
        value = torch.zeros(shape)
    else:
        value = torch.empty(shape).normal_(0.0, config.initializer_range)
    value = value.to(_torch_dtype(dtype))
    return (value.view(torch.int16) if dtype == "bfloat16" else value).numpy()


class _Scratch:
    """One reusable output buffer for transposes and casts.

    Fresh arrays for every tensor mean fresh page faults for every byte (slow on VMs, and
    counted in peak RSS); transposing into the same buffer each time avoids both. torch's
    strided copy is used because it transposes in cache-friendly blocks (several times
    faster than numpy's element order copy) and casts in the same pass.
    """

    def __init__(self, slots=1):
        # Several buffers used in turn when a writer thread may still hold the previous ones.
        self._bufs = [None] * slots
        self._turn = 0

    def transform(self, transform, array, dtype, reuse=True):
        """``array`` in PyTorch layout and ``dtype`` (a numpy array; bfloat16 as int16 bits)."""
        if transform == NONE and array.dtype.name == dtype:
            return array
        src = _to_torch(array)
        if transform in (TRANSPOSE, RESHAPE_OUT_TRANSPOSE, RESHAPE_IN_TRANSPOSE):
            if transform == RESHAPE_OUT_TRANSPOSE:
                src = src.reshape(src.shape[0], -1)
            elif transform == RESHAPE_IN_TRANSPOSE:
                src = src.reshape(-1, src.shape[-1])
            src = src.t()
        elif transform == RESHAPE:
            src = src.reshape(-1)
        storage = _STORAGE[dtype]
        nbytes = src.numel() * storage.itemsize
        if not reuse:
            out = np.empty(tuple(src.shape), storage)
        else:
            i, self._turn = self._turn, (self._turn + 1) % len(self._bufs)
            if self._bufs[i] is None or self._bufs[i].nbytes < nbytes:
                self._bufs[i] = np.empty(nbytes, np.uint8)
            out = self._bufs[i][:nbytes].view(storage).reshape(tuple(src.shape))
        _to_torch(out, dtype).copy_(src)  # transpose and cast in one pass
        return out


def iter_tensors(reader, plan, dtype, progress=False, reuse_buffer=True, buffers=1):
    """Yield ``(key, numpy array)`` for every planned and every new key, one at a time.

    With ``reuse_buffer`` a yielded array may live in one of ``buffers`` scratch buffers
    used in turn: it stays valid until ``buffers`` more tensors have been produced.
    """
    from tqdm.auto import tqdm

    scratch = _Scratch(buffers)
    total = sum(reader.entry(t.name).size for t in plan.tensors)
    with tqdm(total=total, unit="B", unit_scale=True, desc="converting", disable=not progress,
              leave=False) as bar:
        for t in plan.tensors:
            array = scratch.transform(t.rule.transform, reader.get_tensor(t.name), dtype,
                                      reuse=reuse_buffer)
            yield t.key, array
            bar.update(reader.entry(t.name).size)
    for key, shape in plan.new_keys:
        yield key, _fresh(key, shape, plan.config, dtype)


def _specs(plan, dtype):
    return [TensorSpec(t.key, dtype, tuple(t.shape)) for t in plan.tensors] + \
        [TensorSpec(k, dtype, tuple(s)) for k, s in plan.new_keys]


# --- provenance -------------------------------------------------------------------------
class _Hasher(threading.Thread):
    """Hash the source files beside the conversion: hashlib releases the GIL on big chunks,
    so on a second core this costs little wall time. ``cancel()`` stops it early."""

    def __init__(self, paths):
        super().__init__(daemon=True, name="bertconvert-sha256")
        self.paths, self.result, self.error = list(paths), [], None
        self._cancelled = threading.Event()

    def run(self):
        try:
            for path in self.paths:
                digest = hashlib.sha256()
                with open(path, "rb", buffering=0) as f:
                    while not self._cancelled.is_set():
                        chunk = f.read(_HASH_CHUNK)
                        if not chunk:
                            break
                        digest.update(chunk)
                self.result.append({"path": os.path.abspath(path), "size": os.path.getsize(path),
                                    "sha256": digest.hexdigest()})
        except OSError as e:
            self.error = e

    def cancel(self):
        self._cancelled.set()
        if self.is_alive():
            self.join()

    def wait(self):
        self.join()
        if self.error is not None:
            raise ConversionError(f"cannot hash source file for conversion.json: {self.error}") from self.error
        return self.result


# --- output -------------------------------------------------------------------------------
#: Tensors waiting for the writer thread. Reading/transposing the next tensor overlaps with
#: writing the previous one (both release the GIL); deeper queues only add resident memory.
_PIPELINE_DEPTH = 1


class _WriterThread(threading.Thread):
    """Writes queued ``(key, array)`` pairs to every stream writer, in order."""

    def __init__(self, writers):
        super().__init__(daemon=True, name="bertconvert-writer")
        self.writers, self.error = writers, None
        self.queue = queue.Queue(maxsize=_PIPELINE_DEPTH)

    def run(self):
        while True:
            item = self.queue.get()
            if item is None:
                return
            if self.error is None:  # after a failure keep draining so the producer never blocks
                try:
                    for w in self.writers:
                        w.write(*item)
                except BaseException as e:  # re-raised in the producing thread
                    self.error = e

    def put(self, item):
        if self.error is not None:
            raise self.error
        self.queue.put(item)

    def finish(self):
        self.queue.put(None)
        self.join()
        if self.error is not None:
            raise self.error


def _pipeline(items, writers):
    """Feed ``items`` to ``writers`` through a writer thread; errors of either side propagate."""
    thread = _WriterThread(writers)
    thread.start()
    try:
        for item in items:
            thread.put(item)
    except BaseException:
        thread.queue.put(None)
        thread.join()
        raise
    thread.finish()


def _write_weights(directory, plan, reader, format, dtype, progress, opener):
    specs = _specs(plan, dtype)
    files, writers = [], []
    try:
        if format in ("safetensors", "both"):
            f = opener(os.path.join(directory, SAFETENSORS_NAME), "wb")
            files.append(f)
            # Tied aliases are left out, as transformers does; loaders re-tie them.
            writers.append(SafetensorsStreamWriter(f, specs, metadata={"format": "pt"}))
        if format in ("pytorch", "both"):
            f = opener(os.path.join(directory, PYTORCH_NAME), "wb")
            files.append(f)
            writers.append(TorchZipStreamWriter(f, specs, aliases=plan.tied))
        _pipeline(iter_tensors(reader, plan, dtype, progress, buffers=_PIPELINE_DEPTH + 2), writers)
        for w in writers:
            w.close()
        for f in files:
            if hasattr(f, "fileno"):  # durable before the directory is renamed into place
                os.fsync(f.fileno())
    finally:
        for w in writers:  # a no-op after close(); after a failure, keeps torch's
            if hasattr(w, "abort"):  # writer from retrying (and aborting) in its destructor
                w.abort()
        for f in files:
            f.close()
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


def _write_json(path, data, opener):
    with opener(path, "w") as f:
        f.write(json.dumps(data, indent=2) + "\n")


def convert_checkpoint(checkpoint, out_dir, *, config=None, head="auto", num_labels=None,
                       format="safetensors", dtype="float32", overwrite=False,
                       allow_new_head=False, progress=True, opener=None):
    """Convert a TF checkpoint (prefix, ``.index`` file or directory) into model directory ``out_dir``.

    ``config``: path/dict/BertConfig (default: ``bert_config.json`` beside the checkpoint).
    ``head``: "auto" or a :data:`bertconvert.heads.HEADS` name; ``num_labels`` must agree
    with the checkpoint's classifier. ``format``: safetensors, pytorch or both. ``dtype``:
    float32, float16 or bfloat16. ``overwrite`` replaces an existing directory (only once the
    new one is complete). ``allow_new_head`` lets a checkpoint without the head's variables
    be converted; those keys get a fresh initialisation and are listed in the report.
    ``opener(path, mode)`` creates output files (default ``open``; for tests or custom storage).

    Returns a :class:`ConversionReport`. On any failure (bad input, mapping problems, a full
    disk) a named :class:`~bertconvert.errors.BertConvertError` is raised and ``out_dir`` is
    left as it was.
    """
    _check_options(format, dtype)
    opener = opener or open
    out_dir = os.path.abspath(os.fspath(out_dir))
    with load_checkpoint(checkpoint, mmap=False) as reader:
        cfg, config_path = resolve_config(config, reader.prefix)
        plan = plan_conversion(reader, cfg, head=head, num_labels=num_labels,
                               allow_new_head=allow_new_head, config_path=config_path)
        report = ConversionReport.from_plan(plan, dtype)
        report.format, report.output_dir = format, out_dir
        vocab = os.path.join(os.path.dirname(os.path.abspath(reader.prefix)), VOCAB_NAME)
        has_vocab = os.path.isfile(vocab)
        if not has_vocab:
            report.notes.append(f"no {VOCAB_NAME} beside the checkpoint; the model directory has none")
            logger.warning("no %s beside %s; the output has no vocabulary", VOCAB_NAME, reader.prefix)
        sources = list(reader.files) + [p for p in (config_path, vocab if has_vocab else None) if p]
        hasher = _Hasher(sources)
        try:
            with atomic_directory(out_dir, overwrite=overwrite) as tmp:
                hasher.start()
                files = _write_weights(tmp, plan, reader, format, dtype, progress, opener)
                _write_json(os.path.join(tmp, "config.json"), _hf_config(plan, dtype), opener)
                if config_path and os.path.basename(config_path) == "bert_config.json":
                    shutil.copyfile(config_path, os.path.join(tmp, "bert_config.json"))
                else:
                    _write_json(os.path.join(tmp, "bert_config.json"), plan.config.to_google_dict(), opener)
                files += ["config.json", "bert_config.json"]
                if has_vocab:
                    shutil.copyfile(vocab, os.path.join(tmp, VOCAB_NAME))
                    files.append(VOCAB_NAME)
                report.files = sorted(files + [REPORT_NAME])
                report.source_files = hasher.wait()
                _write_json(os.path.join(tmp, REPORT_NAME), report.to_dict(), opener)
        except OSError as e:
            what = "the disk is full" if e.errno == errno.ENOSPC else "an I/O error"
            raise OutputWriteError(
                f"writing {out_dir} failed with {what} ({e}); nothing was published there. "
                "Free space or choose another --out, then run the conversion again") from e
        finally:
            hasher.cancel()  # after a failure, do not keep reading gigabytes for nothing
    logger.info("converted %s (%s, %d tensors, %d skipped) into %s", report.checkpoint,
                report.head, len(report.variables), len(report.skipped), out_dir)
    return report


def convert_to_pytorch_file(checkpoint, config_file, output_file, *, head="auto", num_labels=None,
                            allow_new_head=False, progress=True):
    """The 0.6.2 form: write a single ``pytorch_model.bin`` state dict to ``output_file``.

    An existing directory gets ``pytorch_model.bin`` inside it; an existing file is replaced
    (atomically), as pytorch-pretrained-bert's script did. Returns the ConversionReport.
    """
    output_file = os.fspath(output_file)
    if os.path.isdir(output_file):
        output_file = os.path.join(output_file, PYTORCH_NAME)
    with load_checkpoint(checkpoint, mmap=False) as reader:
        cfg, config_path = resolve_config(config_file, reader.prefix)
        plan = plan_conversion(reader, cfg, head=head, num_labels=num_labels,
                               allow_new_head=allow_new_head, config_path=config_path)
        report = ConversionReport.from_plan(plan, "float32")
        report.format, report.output_dir = "pytorch", os.path.dirname(os.path.abspath(output_file))
        try:
            with atomic_write(output_file) as f:
                writer = TorchZipStreamWriter(f, _specs(plan, "float32"), aliases=plan.tied)
                try:
                    for key, array in iter_tensors(reader, plan, "float32", progress):
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
    import torch

    from .planning import target_model

    _check_options(None, dtype)
    with load_checkpoint(checkpoint, mmap=False) as reader:
        cfg, config_path = resolve_config(config, reader.prefix)
        plan = plan_conversion(reader, cfg, head=head, num_labels=num_labels,
                               allow_new_head=allow_new_head, config_path=config_path)
        state = {key: _to_torch(array, dtype) for key, array in
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
