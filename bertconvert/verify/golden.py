"""Golden files: TensorFlow reference outputs and their inputs, saved once, checked anywhere.

``bertconvert verify ... --record golden.npz`` runs TensorFlow and stores, in one ``.npz``
(numpy zip, no pickles): the input batch (``input/input_ids``, ``input/token_type_ids``,
``input/attention_mask``), each stage's reference output (``output/<stage>``, e.g.
``output/layer 3``, ``output/layer 3 query``) and a JSON ``meta`` record (format version,
head, label count, stage order, the checkpoint path and the sha256 of its ``.index`` file,
TF version, config). ``--reference golden.npz`` then verifies on a machine without
TensorFlow.

Version 2 files also hold every layer's sub-stages (query, key, value, attention output,
intermediate): nine hidden-width tensors per layer where version 1 held one (the
intermediate activation is four wide), so ~18 MB per layer for BERT-base and a default batch
of 7 x 92 tokens, ~215 MB for the 12 layers where version 1 needed ~24 MB (MLM logits add
~80 MB in either version). A shorter ``--text`` file shrinks it in proportion.
Version 1 files (layer outputs only) are still read; they check layer outputs only.

Files recorded since the weights stage existed also keep, in ``meta["weights"]``, a sha256
per converted tensor (its PyTorch-layout bytes in float32, float16 and bfloat16, keyed by
PyTorch key; see :mod:`bertconvert.verify.weights`), so ``--reference`` compares every
tensor of the model directory bit for bit without the checkpoint. Files without them (same
format version: the key is simply absent) skip that stage with a note.
"""
import collections
import dataclasses
import hashlib
import json
import logging
import os
import time
import zipfile

import numpy as np

from ..atomic import atomic_write
from ..errors import VerificationError
from .inputs import VerifyInputs

log = logging.getLogger(__name__)

GOLDEN_FORMAT = "bertconvert-golden"
GOLDEN_VERSION = 2
#: Versions :func:`load_golden` reads (1: no per-layer sub-stages).
READABLE_VERSIONS = (1, 2)
_INPUT_KEYS = ("input_ids", "token_type_ids", "attention_mask")


@dataclasses.dataclass
class Golden:
    """A loaded golden file."""

    inputs: VerifyInputs
    outputs: collections.OrderedDict
    meta: dict
    path: str = None

#: How the per-tensor digests of the weights stage are computed (stored in golden files).
DIGEST_FORMAT = "sha256 of the tensor's PyTorch-layout bytes (C order, little-endian) per dtype"


def index_sha256(prefix):
    """sha256 of a checkpoint's ``.index`` file (it holds every tensor's crc32c), or None."""
    path = os.fspath(prefix) + ".index"
    try:
        with open(path, "rb") as f:
            return hashlib.sha256(f.read()).hexdigest()
    except OSError:
        return None


def save_golden(path, inputs, outputs, *, checkpoint, head, num_labels=None, config=None,
                weights=None, gelu=None, weights_rounding=()):
    """Write inputs + reference outputs to ``path`` atomically; returns ``path``.

    ``weights``: per-tensor digests from :func:`bertconvert.verify.weights.compare_weights`
    or :func:`~bertconvert.verify.weights.checkpoint_digests`, kept in the meta record.
    ``gelu``: the GELU form the reference computed with (``"exact"``/``"tanh"``).
    ``weights_rounding``: the dtypes the reference's weights were rounded through (a
    float16 model's reference computes with float16-rounded weights), kept in the meta
    record so a later run knows which rounding its outputs hold.
    """
    try:
        import tensorflow as tf
        tf_version = tf.__version__
    except ImportError:
        tf_version = None
    meta = {
        "format": GOLDEN_FORMAT, "version": GOLDEN_VERSION, "head": head,
        "num_labels": num_labels, "stages": list(outputs),
        "reference_dtype": str(np.asarray(next(iter(outputs.values()))).dtype),
        "checkpoint": os.fspath(checkpoint),
        "checkpoint_index_sha256": index_sha256(checkpoint), "tensorflow": tf_version,
        "config": config, "gelu": gelu, "weights_rounding": list(weights_rounding),
        "inputs": inputs.summary(), "examples": inputs.examples,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    if weights:
        meta["weights"] = {"format": DIGEST_FORMAT, "tensors": weights}
    arrays = {f"input/{k}": np.asarray(v) for k, v in inputs.arrays().items()}
    arrays.update((f"output/{name}", np.asarray(v)) for name, v in outputs.items())
    arrays["meta"] = np.array(json.dumps(meta))
    with atomic_write(path, "wb") as f:
        np.savez_compressed(f, **arrays)
    log.info("recorded %d reference stages to %s", len(outputs), path)
    return path


def load_golden(path):
    """Read a golden file written by :func:`save_golden` (no pickles are ever loaded)."""
    path = os.fspath(path)
    if os.path.exists(path) and not os.path.isfile(path):
        import stat
        from ..safeio import file_kind
        mode = os.stat(path).st_mode
        kind = "a directory" if stat.S_ISDIR(mode) else file_kind(mode)
        raise VerificationError(f"golden file {path} is {kind}, not a regular file; pass the "
                                "path of a .npz written by `bertconvert verify --record`")
    if not os.path.isfile(path):
        raise VerificationError(f"golden file {path} does not exist; record one with "
                                "`bertconvert verify CKPT MODEL_DIR --record golden.npz`")
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as e:
        raise VerificationError(f"golden file {path} is not a readable .npz: {e}") from e
    try:
        meta = json.loads(str(arrays.pop("meta")))
    except (KeyError, ValueError) as e:
        raise VerificationError(f"golden file {path} has no valid meta record; it was not "
                                "written by `bertconvert verify --record`") from e
    if meta.get("format") != GOLDEN_FORMAT or meta.get("version") not in READABLE_VERSIONS:
        raise VerificationError(
            f"golden file {path} has format {meta.get('format')!r} version "
            f"{meta.get('version')!r}; expected {GOLDEN_FORMAT!r} version "
            f"{' or '.join(map(str, READABLE_VERSIONS))}: record it again with this "
            "bertconvert (or verify with the bertconvert that recorded it)")
    missing = [f"input/{k}" for k in _INPUT_KEYS if f"input/{k}" not in arrays]
    missing += [f"output/{s}" for s in meta.get("stages", []) if f"output/{s}" not in arrays]
    if missing or not meta.get("stages"):
        raise VerificationError(f"golden file {path} is incomplete; missing {missing or 'stages'}")
    inputs = VerifyInputs(*(arrays[f"input/{k}"].astype(np.int64) for k in _INPUT_KEYS),
                          source=f"golden file {path}", examples=meta.get("examples", []))
    outputs = collections.OrderedDict((s, arrays[f"output/{s}"]) for s in meta["stages"])
    return Golden(inputs, outputs, meta, path)


def check_golden_matches(golden, checkpoint, head):
    """Notes on how the golden file relates to this run's checkpoint; VerificationError when
    it was recorded for another head.

    A checkpoint written elsewhere may legitimately differ (notes), but another head's golden
    file can never pass: its inputs may have another shape (multiple choice) and its head
    outputs are other tensors (token vs sequence logits), so the run would end in a crash or
    a mismatch that says nothing about the conversion. The classifier layouts cannot be told
    apart from the checkpoint alone, which makes this an easy mistake to make.
    """
    recorded_head = golden.meta.get("head")
    if recorded_head is not None and recorded_head != head:
        raise VerificationError(
            f"golden file {golden.path} holds outputs of the {recorded_head} head but the model "
            f"is {head}; record it again with --head {head} (or verify with --head "
            f"{recorded_head} against a model of that head)")
    notes = []
    recorded = golden.meta.get("checkpoint_index_sha256")
    prefix = None
    try:
        from .sources import resolve_checkpoint_prefix
        prefix = resolve_checkpoint_prefix(checkpoint)
    except Exception:  # the checkpoint need not be present on a CI machine
        notes.append(f"checkpoint {checkpoint} not found here; golden file trusted as recorded "
                     f"from {golden.meta.get('checkpoint')}")
    if prefix is not None and recorded and index_sha256(prefix) != recorded:
        notes.append(f"WARNING: {prefix}.index differs from the checkpoint the golden file was "
                     f"recorded from ({golden.meta.get('checkpoint')}); record it again")
        log.warning("%s", notes[-1])
    return notes
