"""Golden files: TensorFlow reference outputs and their inputs, saved once, checked anywhere.

``bertconvert verify ... --record golden.npz`` runs TensorFlow and stores, in one ``.npz``
(numpy zip, no pickles): the input batch (``input/input_ids``, ``input/token_type_ids``,
``input/attention_mask``), each stage's reference output (``output/<stage>``, e.g.
``output/layer 3``) and a JSON ``meta`` record (format version, head, label count, stage
order, the checkpoint path and the sha256 of its ``.index`` file, TF version, config).
``--reference golden.npz`` then verifies on a machine without TensorFlow.
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

from .atomic import atomic_write
from .errors import VerificationError
from .verify_inputs import VerifyInputs

log = logging.getLogger(__name__)

GOLDEN_FORMAT = "bertconvert-golden"
GOLDEN_VERSION = 1
_INPUT_KEYS = ("input_ids", "token_type_ids", "attention_mask")


@dataclasses.dataclass
class Golden:
    """A loaded golden file."""

    inputs: VerifyInputs
    outputs: collections.OrderedDict
    meta: dict


def index_sha256(prefix):
    """sha256 of a checkpoint's ``.index`` file (it holds every tensor's crc32c), or None."""
    path = os.fspath(prefix) + ".index"
    try:
        with open(path, "rb") as f:
            return hashlib.sha256(f.read()).hexdigest()
    except OSError:
        return None


def save_golden(path, inputs, outputs, *, checkpoint, head, num_labels=None, config=None):
    """Write inputs + reference outputs to ``path`` atomically; returns ``path``."""
    try:
        import tensorflow as tf
        tf_version = tf.__version__
    except ImportError:
        tf_version = None
    meta = {
        "format": GOLDEN_FORMAT, "version": GOLDEN_VERSION, "head": head,
        "num_labels": num_labels, "stages": list(outputs),
        "reference_dtype": str(np.asarray(next(iter(outputs.values()))).dtype), "checkpoint": os.fspath(checkpoint),
        "checkpoint_index_sha256": index_sha256(checkpoint), "tensorflow": tf_version,
        "config": config, "inputs": inputs.summary(), "examples": inputs.examples,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
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
    if meta.get("format") != GOLDEN_FORMAT or meta.get("version") != GOLDEN_VERSION:
        raise VerificationError(
            f"golden file {path} has format {meta.get('format')!r} version "
            f"{meta.get('version')!r}; "
            f"expected {GOLDEN_FORMAT!r} version {GOLDEN_VERSION}: record it again")
    missing = [f"input/{k}" for k in _INPUT_KEYS if f"input/{k}" not in arrays]
    missing += [f"output/{s}" for s in meta.get("stages", []) if f"output/{s}" not in arrays]
    if missing or not meta.get("stages"):
        raise VerificationError(f"golden file {path} is incomplete; missing {missing or 'stages'}")
    inputs = VerifyInputs(*(arrays[f"input/{k}"].astype(np.int64) for k in _INPUT_KEYS),
                          source=f"golden file {path}", examples=meta.get("examples", []))
    outputs = collections.OrderedDict((s, arrays[f"output/{s}"]) for s in meta["stages"])
    return Golden(inputs, outputs, meta)


def check_golden_matches(golden, checkpoint, head):
    """Notes (not errors) on how the golden file relates to this run's checkpoint and head."""
    notes = []
    recorded = golden.meta.get("checkpoint_index_sha256")
    prefix = None
    try:
        from .tf_reference import resolve_checkpoint_prefix
        prefix = resolve_checkpoint_prefix(checkpoint)
    except Exception:  # the checkpoint need not be present on a CI machine
        notes.append(f"checkpoint {checkpoint} not found here; golden file trusted as recorded "
                     f"from {golden.meta.get('checkpoint')}")
    if prefix is not None and recorded and index_sha256(prefix) != recorded:
        notes.append(f"WARNING: {prefix}.index differs from the checkpoint the golden file was "
                     f"recorded from ({golden.meta.get('checkpoint')}); record it again")
        log.warning("%s", notes[-1])
    if golden.meta.get("head") != head:
        notes.append(f"golden file was recorded for head {golden.meta.get('head')}, the model "
                     f"is {head}")
    return notes
