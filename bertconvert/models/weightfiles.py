"""Reading and writing PyTorch state dicts: ``model.safetensors`` and ``pytorch_model.bin``.

Every file is published atomically (:func:`bertconvert.atomic.atomic_path`: unique temp
name in the destination directory, fsync, ``os.replace``), so a reader never sees half a
weights file. Loading sniffs the file's first bytes instead of trusting its name, and refuses
anything that is not a plain mapping of names to tensors with :class:`~bertconvert.errors.WeightsError`. Pickles are only ever read with
``torch.load(weights_only=True)``: a weights file must not be able to run code.

Example::

    >>> paths = save_state_dict(model.state_dict(), "out", format="both")
    >>> state = load_state_dict(find_weights_file("out"))
"""
import contextlib
import logging
import os
import re
import struct

import torch

from ..safeio import MAX_JSON_BYTES, parse_json, read_regular_file
from ..atomic import atomic_path
from ..errors import OutputWriteError, WeightsError
from .config import describe_directory, find_config_file, first_file  # noqa: F401 (re-exported)
from ..layout import (CONFIG_NAME, CONFIG_NAMES, GOOGLE_CONFIG_NAME, INDEX_SUFFIX,  # noqa: F401
                      PYTORCH_NAME, SAFETENSORS_NAME, WEIGHTS_NAMES)

logger = logging.getLogger(__name__)

FORMATS = ("safetensors", "pytorch", "both")

#: Keys that only alias another key when the MLM decoder is tied; transformers drops them
#: from safetensors files, and so do we (alias key -> the key it duplicates).
TIED_ALIASES = {
    "cls.predictions.decoder.weight": "bert.embeddings.word_embeddings.weight",
    "cls.predictions.decoder.bias": "cls.predictions.bias",
}

_ZIP_MAGIC = b"PK\x03\x04"
#: What torch.load(weights_only=True) names when a pickle needs a class to be imported.
_REFUSED_GLOBAL = re.compile(r"Unsupported global: GLOBAL ([\w.]+)")
_PICKLE_PROTO = 0x80


# --- locating files ------------------------------------------------------------------
def find_weights_file(directory, required=True):
    """Path of the weights file in a model directory (safetensors preferred), or None.

    Raises WeightsError naming what the directory holds when there is none and ``required``.
    """
    path = first_file(directory, WEIGHTS_NAMES)
    if path is None and required:
        raise WeightsError(
            f"no weights file in {directory}: expected one of {', '.join(WEIGHTS_NAMES)}; "
            f"found {describe_directory(directory)}. Convert a TF checkpoint with "
            "`bertconvert convert` or save a model there with save_pretrained()")
    return path


# --- loading -------------------------------------------------------------------------
def _sniff(path):
    """'safetensors', 'torch-zip', 'torch-legacy', 'index' or None, from the first bytes."""
    try:
        with open(path, "rb") as f:
            head = f.read(9)
            size = os.fstat(f.fileno()).st_size
    except OSError as e:
        raise WeightsError(f"cannot read weights file {path}: {e}") from e
    if head.startswith(_ZIP_MAGIC):
        return "torch-zip"
    if len(head) == 9:
        # safetensors: little-endian u64 header length, then a JSON object. Checked before
        # the pickle byte: a header length whose low byte is 0x80 (9600 bytes, say) starts
        # the file with the same byte as a legacy torch.save pickle.
        (header_len,) = struct.unpack("<Q", head[:8])
        if 0 < header_len <= size - 8 and head[8:9] == b"{":
            return "safetensors"
    if head[:1] and head[0] == _PICKLE_PROTO:
        return "torch-legacy"
    if head.lstrip()[:1] == b"{" and path.endswith(INDEX_SUFFIX):
        return "index"
    return None


def as_state_dict(obj, path):
    """Return ``obj`` as a plain dict of str -> Tensor, or raise WeightsError saying why not
    (``path`` names where it came from in the message)."""
    if not isinstance(obj, dict):
        raise WeightsError(
            f"{path} holds a {type(obj).__name__}, not a state dict (a mapping of parameter "
            "names to tensors); save models with model.state_dict() or save_pretrained()")
    bad = sorted(str(k) for k, v in obj.items()
                 if not isinstance(k, str) or not isinstance(v, torch.Tensor))
    if bad:
        nested = [k for k, v in obj.items() if isinstance(v, dict)
                  and v and all(isinstance(t, torch.Tensor) for t in v.values())]
        hint = (f"; the state dict seems to be nested under {nested[0]!r}: save that entry alone"
                if nested else "")
        raise WeightsError(
            f"{path} is not a state dict: entries {', '.join(bad[:10])}"
            f"{' ...' if len(bad) > 10 else ''} are not tensors{hint}")
    return dict(obj)


def _load_torch(path, kind):
    try:
        if path.endswith(".safetensors"):
            # torch.load would hand a path with this suffix to safetensors; the bytes say pickle.
            with open(path, "rb") as f:
                obj = torch.load(f, map_location="cpu", weights_only=True)
        else:
            # mmap avoids reading the whole file up front; only zip-format files support it.
            obj = torch.load(path, map_location="cpu", weights_only=True,
                             mmap=(kind == "torch-zip"))
    except Exception as e:  # pickle errors come in many classes; all mean "not loadable"
        refused = _REFUSED_GLOBAL.search(str(e))
        if refused:
            # torch's own message is a page of advice; say in one line what the file is.
            raise WeightsError(
                f"{path} holds a pickled {refused.group(1)} object, not a state dict (it was "
                "probably written with torch.save(model) instead of "
                "torch.save(model.state_dict())); it is read with weights_only=True, which "
                "refuses to import classes because that could run code from the file. If you "
                "trust it, re-save its weights: torch.save(torch.load(path, weights_only=False)"
                ".state_dict(), 'pytorch_model.bin')") from e
        raise WeightsError(
            f"cannot load {path} as a PyTorch state dict with weights_only=True: {e}. "
            "Expected a file written by torch.save(model.state_dict(), ...)") from e
    return as_state_dict(obj, path)


def _load_safetensors(path):
    from safetensors.torch import load_file

    try:
        return load_file(path, device="cpu")
    except Exception as e:  # SafetensorError and friends
        raise WeightsError(f"{path} is not a valid safetensors file: {e}") from e


def _load_index(path):
    expected = f"{path} is not a sharded-weights index (a JSON object with a 'weight_map')"
    try:
        text = read_regular_file(path, MAX_JSON_BYTES, WeightsError, "sharded-weights index")
        weight_map = parse_json(text.decode("utf-8"), WeightsError, path)["weight_map"]
        shards = sorted(set(weight_map.values()))
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
        raise WeightsError(f"{expected}: {e}") from e
    if not all(isinstance(s, str) for s in shards):
        raise WeightsError(f"{expected}: its weight_map values must be shard file names")
    directory = os.path.dirname(path)
    state = {}
    for shard in shards:
        shard_path = os.path.join(directory, shard)
        if os.path.basename(shard) != shard or not os.path.isfile(shard_path):
            raise WeightsError(f"{path} names shard {shard!r}, which is not a file in {directory}")
        # A shard is a weights file, never another index: an index naming itself (or two
        # naming each other) would recurse without end.
        kind = _sniff(shard_path)
        if kind not in _WEIGHT_KINDS:
            raise WeightsError(f"{path} names shard {shard!r}, which is not a safetensors or "
                               "PyTorch weights file" + (" (it is a sharded-weights index)"
                                                         if kind == "index" else ""))
        state.update(_load_kind(shard_path, kind))
    return state


_WEIGHT_KINDS = ("safetensors", "torch-zip", "torch-legacy")


def _load_kind(path, kind):
    if kind == "safetensors":
        return _load_safetensors(path)
    return _load_torch(path, kind)


def load_state_dict(path):
    """Load a state dict from a safetensors file, a ``torch.save`` file, or a directory.

    The format is recognised from the file's content (the name does not matter); PyTorch
    files are read with ``weights_only=True``. Returns ``{name: tensor}`` on the CPU. Anything
    else (missing file, garbage, a pickled whole model, a dict of non-tensors) raises
    WeightsError.
    """
    path = os.fspath(path)
    if os.path.isdir(path):
        path = find_weights_file(path)
    if not os.path.isfile(path):
        if os.path.exists(path):  # a FIFO or device would hang or never end when read
            raise WeightsError(f"weights file {path} is not a regular file; pass the file itself")
        raise WeightsError(f"weights file not found: {path}")
    kind = _sniff(path)
    if kind in _WEIGHT_KINDS:
        return _load_kind(path, kind)
    if kind == "index":
        return _load_index(path)
    raise WeightsError(
        f"{path} is neither a safetensors file nor a PyTorch state dict saved with torch.save "
        "(unrecognised first bytes); expected model.safetensors or pytorch_model.bin")


# --- saving --------------------------------------------------------------------------
def _storage_key(t):
    return (t.device, t.untyped_storage().data_ptr())


def _dedupe_for_safetensors(state_dict):
    """Drop tied aliases and give every remaining tensor storage of its own.

    safetensors refuses tensors that share memory. Exact aliases (same storage, offset,
    shape, stride: a tied weight) keep one name, the non-alias one, as transformers does;
    other sharing (views into a larger tensor) is resolved by copying.
    """
    groups = {}
    for name, t in state_dict.items():
        if t.device.type == "meta":
            raise WeightsError(f"cannot save {name}: it is on the meta device (never loaded)")
        groups.setdefault(_storage_key(t), []).append(name)
    out = dict(state_dict)
    for names in groups.values():
        if len(names) < 2:
            continue
        ordered = sorted(names, key=lambda n: (n in TIED_ALIASES, n))
        keeper = state_dict[ordered[0]]
        for name in ordered[1:]:
            t = state_dict[name]
            same_view = (t.storage_offset() == keeper.storage_offset() and t.shape == keeper.shape
                         and t.stride() == keeper.stride() and t.dtype == keeper.dtype)
            if same_view:
                del out[name]
    # Named tie pairs that were copied rather than shared are still duplicates.
    for alias, target in TIED_ALIASES.items():
        if alias in out and target in out and out[alias].shape == out[target].shape \
                and torch.equal(out[alias], out[target]):
            del out[alias]
    seen = set()
    for name, t in out.items():
        key = _storage_key(t)
        whole = t.is_contiguous() and t.storage_offset() == 0 and \
            t.numel() * t.element_size() == t.untyped_storage().nbytes()
        if key in seen or not whole:
            out[name] = t.contiguous().clone()
        seen.add(key)
    return out


@contextlib.contextmanager
def _write_failures_named(path):
    """A full disk or I/O error while writing ``path`` as OutputWriteError. safetensors reports
    it as its own SafetensorError and torch.save as a RuntimeError, neither an OSError."""
    try:
        yield
    except (OSError, RuntimeError) as e:  # SafetensorError is an Exception subclass, see below
        raise OutputWriteError(f"could not write {path}: {e}; the previous file, if any, is "
                               "untouched") from e
    except Exception as e:
        if type(e).__name__ != "SafetensorError":
            raise
        raise OutputWriteError(f"could not write {path}: {e}; the previous file, if any, is "
                               "untouched") from e


def save_state_dict(state_dict, directory, format="safetensors"):
    """Write ``state_dict`` into ``directory`` atomically; returns the written paths.

    ``format`` is "safetensors" (``model.safetensors``, tied duplicates dropped), "pytorch"
    (``pytorch_model.bin`` via torch.save, every key kept, as 0.6.2 wrote it) or "both".
    Tensors are moved to the CPU first.
    """
    if format not in FORMATS:
        raise ValueError(f"format must be one of {', '.join(FORMATS)}, got {format!r}")
    os.makedirs(directory, exist_ok=True)
    cpu = {k: (v.detach().cpu() if v.device.type not in ("cpu", "meta") else v.detach())
           for k, v in state_dict.items()}
    written = []
    if format in ("safetensors", "both"):
        from safetensors.torch import save_file

        path = os.path.join(directory, SAFETENSORS_NAME)
        with _write_failures_named(path), atomic_path(path) as tmp:
            save_file(_dedupe_for_safetensors(cpu), tmp, metadata={"format": "pt"})
        written.append(path)
    if format in ("pytorch", "both"):
        metas = sorted(k for k, v in cpu.items() if v.device.type == "meta")
        if metas:
            raise WeightsError(f"cannot save {', '.join(metas)}: on the meta device (never loaded)")
        path = os.path.join(directory, PYTORCH_NAME)
        with _write_failures_named(path), atomic_path(path) as tmp:
            torch.save(cpu, tmp)
        written.append(path)
    logger.debug("wrote %s", ", ".join(written))
    return written
