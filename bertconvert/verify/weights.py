"""The weights stage of a parity check: the model directory's tensors, bit for bit.

Outputs cannot see every wrong weight. Adding 1e-2 to every element of a layer's
attention-output kernel shifts that block's output uniformly, and the LayerNorm right after
it removes a uniform shift exactly: every output stage passes. So before any forward pass,
every tensor of the model directory is compared, byte for byte, with the checkpoint tensor
the converter's own plan maps to it (:func:`bertconvert.planning.plan_conversion`, the same
rule table; read with our TF-free, crc-checked reader and produced by the converter's
:class:`~bertconvert.tensorcopy.TensorCopier`, cast to the dtype the file stores exactly as
the converter casts). One tensor is in memory at a time.

Because every needed checkpoint tensor is read (and crc-checked) here, a corrupt checkpoint
-- a flipped byte, a truncated or missing shard, a corrupt index -- is reported as an input
error before TensorFlow ever touches it.

Golden files (``--record``) keep a sha256 per tensor of the PyTorch-layout bytes (C order,
little-endian) in float32, float16 and bfloat16, so ``--reference`` can check a model
directory of any of those dtypes without the checkpoint (:func:`compare_digests`).

Whether the directory was converted from this checkpoint, and whether the checkpoint holds
the ``--head`` asked for, are :mod:`bertconvert.verify.model_source`'s questions.
"""
import contextlib
import hashlib
import json
import logging
import math
import os
from math import prod

import numpy as np

from .. import layout
from ..errors import CheckpointFormatError, ChecksumMismatchError, WeightsError
from . import pooler
from .golden import DIGEST_FORMAT
from .report import WeightsResult

log = logging.getLogger(__name__)

#: Output dtypes a golden file keeps digests for (the converter's output dtypes).
DIGEST_DTYPES = ("float32", "float16", "bfloat16")
#: What a digest covers, stored beside the digests in a golden file.
CONVERSION_REPORT = layout.REPORT_NAME
#: Differing tensors listed in full in the report (the count is always exact).
MAX_LISTED = 20


# --- the model directory's tensors -----------------------------------------------------
class ModelTensors:
    """Lazy, one-at-a-time access to the tensors of a model directory's weight file(s)
    (safetensors, ``pytorch_model.bin`` memory-mapped, or a sharded index of either)."""

    def __init__(self, model_dir):
        from ..models.weightfiles import find_weights_file
        self.model_dir = model_dir
        path = find_weights_file(model_dir)
        files = [path]
        if path.endswith(layout.INDEX_SUFFIX):
            files = self.shard_files(model_dir, path)
        self.files = files
        self._where = {}
        self._open = []
        for file in files:
            handle = self._open_file(file)
            self._open.append(handle)
            for key in handle.keys():
                self._where[key] = handle

    @staticmethod
    def shard_files(model_dir, index):
        """The shard files a sharded-weights ``index`` names, in ``model_dir``."""
        try:
            with open(index, "r", encoding="utf-8") as f:
                shards = sorted(set(json.load(f)["weight_map"].values()))
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
            raise WeightsError(f"{index} is not a sharded-weights index: {e}") from e
        return [os.path.join(model_dir, os.path.basename(s)) for s in shards]

    def _open_file(self, path):
        from ..models.weightfiles import _sniff
        kind = _sniff(path)
        if kind == "safetensors":
            from safetensors import safe_open
            try:
                return safe_open(path, framework="pt", device="cpu")
            except Exception as e:  # SafetensorError and friends
                raise WeightsError(f"{path} is not a valid safetensors file: {e}") from e
        if kind in ("torch-zip", "torch-legacy"):
            from ..models.weightfiles import _load_torch
            state = _load_torch(path, kind)  # mmap for zip files: bytes are read on use
            return _DictHandle(state)
        raise WeightsError(f"{path} is neither a safetensors file nor a PyTorch state dict")

    def keys(self):
        return list(self._where)

    def __contains__(self, key):
        return key in self._where

    def get(self, key):
        """``(dtype name, shape, uint8 bytes)`` of one tensor."""
        import torch
        t = self._where[key].get_tensor(key).detach().contiguous()
        dtype = str(t.dtype).replace("torch.", "")
        raw = t.reshape(-1).view(torch.uint8).numpy() if t.numel() else np.zeros(0, np.uint8)
        return dtype, tuple(t.shape), raw

    def resolve(self, key):
        """The file's key for model key ``key``: itself, or with the ``bert.`` trunk prefix
        added or removed (BertModel files have none), or None."""
        for candidate in (key, key[len("bert."):] if key.startswith("bert.") else "bert." + key):
            if candidate in self._where:
                return candidate
        return None


class _DictHandle:
    def __init__(self, state):
        self.state = state

    def keys(self):
        return list(self.state)

    def get_tensor(self, key):
        return self.state[key]


# --- which head the directory holds, and the plan ---------------------------------------------
def _conversion_report(model_dir):
    path = os.path.join(model_dir, CONVERSION_REPORT)
    try:
        with open(path, "r", encoding="utf-8") as f:
            data = json.load(f)
        return data if isinstance(data, dict) else None
    except (OSError, ValueError):
        return None


def _directory_head(model_dir, config):
    """The head the model directory was converted as: conversion.json, else config.json's
    architectures, else the bare trunk."""
    from ..models.heads import HEADS, head_for_architecture
    report = _conversion_report(model_dir) or {}
    if report.get("head") in HEADS:
        return report["head"], report.get("num_labels")
    names = getattr(config, "architectures", None)
    if names:
        try:
            return head_for_architecture(names[0]), getattr(config, "num_labels", None)
        except Exception:  # noqa: BLE001 - an unknown class: compare the trunk keys only
            pass
    return layout.BASE, None


def plan_for_directory(reader, model_dir):
    """The converter's plan for the checkpoint behind ``reader`` into the head (and label
    count) ``model_dir`` was converted as, with its own config (and pooler, if it has one)."""
    from ..convert.plan import plan_conversion
    from ..models.config import resolve_config
    config, config_file = resolve_config(model_dir=model_dir)
    head, num_labels = _directory_head(model_dir, config)
    return plan_conversion(reader, config, head=head, num_labels=num_labels,
                           allow_new_head=True, config_path=config_file,
                           keep_pooler=pooler.holds_pooler(ModelTensors(model_dir)))


def check_entries(reader):
    """Cheap metadata checks of every variable a conversion would read: the byte size the
    index records fits its dtype and shape, and its shard is long enough. Raises the
    reader's named errors (input errors) before anything is computed."""
    from ..convert import rules as mapping
    for name in reader:
        if mapping.skip_reason(name):
            continue
        entry = reader.entry(name)
        if entry.slices or entry.dtype is None or entry.file is None:
            continue  # partitioned or unusual: the reader checks them when reading
        needed = prod(entry.shape) * entry.dtype.itemsize
        if entry.size != needed:
            raise CheckpointFormatError(
                f"{reader.index_path}: tensor {name!r} has {entry.size} bytes recorded but "
                f"{entry.dtype_name} {list(entry.shape)} needs {needed}: the index is corrupt; "
                "copy or download the checkpoint again")
        available = os.path.getsize(entry.file)
        if available < entry.offset + entry.size:
            raise ChecksumMismatchError(
                f"tensor {name!r} needs {entry.size} bytes at offset {entry.offset} of "
                f"{entry.file}, but the file is only {available} bytes long: the shard is "
                "truncated; copy or download it again")


# --- comparing ---------------------------------------------------------------------------
def _values(raw, dtype_name):
    from ..convert.tensors import storage_dtype
    try:
        return raw.view(storage_dtype(dtype_name)).astype(np.float64)
    except Exception:  # noqa: BLE001 - not a float dtype the converter writes
        return None


def _max_abs(a_raw, b_raw, dtype_name):
    a, b = _values(a_raw, dtype_name), _values(b_raw, dtype_name)
    if a is None or b is None or a.shape != b.shape or a.size == 0:
        return math.inf
    with np.errstate(invalid="ignore", over="ignore"):
        diff = np.abs(a - b)
    diff[~np.isfinite(diff)] = math.inf
    return float(diff.max())


def _result(checked, differing, notes, source):
    passed = not differing
    known = [d["max_abs"] for d in differing if d["max_abs"] is not None]
    # Unknown (digests, a missing tensor) when no differing tensor could be compared by value.
    max_abs = max(known) if known else (math.nan if differing else 0.0)
    note = ""
    if differing:
        first = differing[0]
        note = (f"{len(differing)} of {checked} tensors differ from the {source}; first: "
                f"{first['key']} ({first['reason']})")
    elif notes:
        note = "; ".join(notes)
    return WeightsResult(
        "weights", (checked,), max_abs, math.nan if differing else 0.0, passed, note=note,
        tensors=checked, differing=differing[:MAX_LISTED], differing_count=len(differing),
        first_differing=differing[0]["key"] if differing else None, source=source,
        notes=list(notes))


def compare_weights(reader, model_dir, plan=None, digests=False, progress=False):
    """Compare every tensor of ``model_dir`` with its checkpoint tensor, bit for bit.

    ``reader`` is an open :class:`~bertconvert.checkpoint.CheckpointReader`. Each file tensor
    is compared in the dtype it is stored in (float16/bfloat16 files against the checkpoint
    tensor cast as the converter casts). Returns ``(WeightsResult, digests or None)``; with
    ``digests`` the golden-file digests of every planned tensor are computed in the same pass.
    A corrupt checkpoint raises the reader's named errors (exit code 2).
    """
    from ..convert.tensors import TensorCopier
    plan = plan or plan_for_directory(reader, model_dir)
    files = ModelTensors(model_dir)
    copiers = {}
    aliases = {}  # planned key -> alias keys tied to it
    for alias, target in plan.tied.items():
        aliases.setdefault(target, []).append(alias)
    differing, notes, covered, checked = [], [], set(), 0
    recorded = {} if digests else None

    def copier(dtype):
        if dtype not in copiers:
            copiers[dtype] = TensorCopier(reader, dtype, check_values=False)  # any cast
        return copiers[dtype]

    try:
        for t in plan.tensors:
            if recorded is not None:
                recorded[t.key] = _tensor_digests(copier, t)
            for key in [t.key] + aliases.get(t.key, []):
                found = files.resolve(key)
                if found is None:
                    if key != t.key:
                        continue  # safetensors files leave tied aliases out
                    checked += 1
                    differing.append({"key": key, "name": t.name, "max_abs": None,
                                      "reason": "missing in the model directory"})
                    continue
                covered.add(found)
                checked += 1
                problem = _compare_one(copier, t, files, found)
                if problem:
                    differing.append(dict(problem, key=found, name=t.name))
    finally:
        for c in copiers.values():
            c.close()
    fresh = {_unprefixed(k) for k, _ in plan.new_keys}
    uncovered = [k for k in files.keys() if k not in covered]
    new = [k for k in uncovered if _unprefixed(k) in fresh]
    extra = [k for k in uncovered if _unprefixed(k) not in fresh]
    if new:
        notes.append(f"{len(new)} tensor(s) are not in the checkpoint (initialised when "
                     f"converted): {', '.join(sorted(new)[:4])}{' ...' if len(new) > 4 else ''}")
    if extra:
        notes.append(f"{len(extra)} tensor(s) of the model directory match no checkpoint "
                     f"variable: {', '.join(sorted(extra)[:4])}{' ...' if len(extra) > 4 else ''}")
    result = _result(checked, differing, notes, "checkpoint")
    log.info("weights: %d tensors compared with %s, %d differ", checked, reader.prefix,
             len(differing))
    return result, recorded


def _unprefixed(key):
    return key[len("bert."):] if key.startswith("bert.") else key


def _compare_one(copier, t, files, found):
    dtype, shape, raw = files.get(found)
    if tuple(shape) != tuple(t.shape):
        return {"reason": f"shape {list(shape)}, checkpoint {list(t.shape)}", "max_abs": None}
    if dtype not in DIGEST_DTYPES:
        return {"reason": f"stored as {dtype}; the converter writes "
                          f"{', '.join(DIGEST_DTYPES)}", "max_abs": None}
    expected = copier(dtype).array(t).reshape(-1).view(np.uint8)
    if np.array_equal(raw, expected):
        return None
    max_abs = _max_abs(raw, expected, dtype)
    changed = int(np.count_nonzero(_values(raw, dtype) != _values(expected, dtype)))
    return {"reason": f"{changed} of {prod(shape)} {dtype} values differ, max abs diff "
                      f"{max_abs:.3g}", "max_abs": max_abs}


def _tensor_digests(copier, t):
    return {"name": t.name, "shape": list(t.shape),
            "sha256": {dtype: hashlib.sha256(copier(dtype).array(t).reshape(-1).view(np.uint8))
                       .hexdigest() for dtype in DIGEST_DTYPES}}


def checkpoint_digests(reader, plan):
    """Golden-file digests of every planned tensor (see :data:`DIGEST_FORMAT`)."""
    from ..convert.tensors import TensorCopier
    copiers = {}

    def copier(dtype):
        if dtype not in copiers:
            copiers[dtype] = TensorCopier(reader, dtype, check_values=False)  # any cast
        return copiers[dtype]

    try:
        return {t.key: _tensor_digests(copier, t) for t in plan.tensors}
    finally:
        for c in copiers.values():
            c.close()


def compare_digests(model_dir, digests, where):
    """Compare every tensor of ``model_dir`` with the digests a golden file recorded
    (``where`` names it). Returns a WeightsResult."""
    files = ModelTensors(model_dir)
    differing, covered, notes = [], set(), []
    head = _directory_head(model_dir, _config_or_none(model_dir))[0]
    if pooler.left_out(head, files):  # left out on purpose: not demanded
        digests = {k: v for k, v in digests.items() if not pooler.is_pooler_key(k)}
        notes.append(pooler.not_compared_note(model_dir, head))
    for key, rec in digests.items():
        found = files.resolve(key)
        if found is None:
            differing.append({"key": key, "name": rec.get("name"), "max_abs": None,
                              "reason": "missing in the model directory"})
            continue
        covered.add(found)
        dtype, shape, raw = files.get(found)
        wanted = (rec.get("sha256") or {}).get(dtype)
        if list(shape) != list(rec.get("shape", shape)):
            reason = f"shape {list(shape)}, recorded {rec.get('shape')}"
        elif wanted is None:
            reason = f"stored as {dtype}, for which {where} holds no digest"
        elif hashlib.sha256(raw).hexdigest() != wanted:
            reason = f"sha256 of its {dtype} bytes differs from the recorded one"
        else:
            continue
        differing.append({"key": found, "name": rec.get("name"), "max_abs": None, "reason": reason})
    extra = [k for k in files.keys() if k not in covered]
    if extra:
        notes.append(f"{len(extra)} tensor(s) of the model directory have no recorded digest "
                     f"(not from the checkpoint): {', '.join(sorted(extra)[:4])}"
                     f"{' ...' if len(extra) > 4 else ''}")
    return _result(len(digests), differing, notes, f"digests in {where}")


def _config_or_none(model_dir):
    from ..models.config import resolve_config
    with contextlib.suppress(Exception):  # unreadable: conversion.json may still say (else None)
        return resolve_config(model_dir=model_dir)[0]


def skipped(reason):
    """A weights row that was not compared, saying why."""
    return WeightsResult("weights", (0,), 0.0, 0.0, True, note=f"skipped: {reason}",
                         skipped=True, source=None, notes=[reason])


def reference_failure(exc, prefix):
    """A VerificationError for an error TensorFlow raised while reading ``prefix``: one line."""
    from ..errors import TFReferenceError
    text = " ".join(str(exc).split()) or type(exc).__name__
    if len(text) > 400:
        text = text[:400] + "..."
    return TFReferenceError(
        f"TensorFlow cannot read checkpoint {prefix}: {type(exc).__name__}: {text}; the "
        "checkpoint is damaged or incomplete: copy or download it again")

