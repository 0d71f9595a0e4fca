"""State dicts as they come, made fit for our models, and the checks that they do fit.

Accepted dialects: ours, transformers' (``cls.predictions.decoder.bias`` duplicate,
``position_ids`` buffers) and pytorch-pretrained-bert's (``LayerNorm.gamma``/``beta``; a
``bert.``-prefixed dict loaded into BertModel and vice versa). :func:`modern_key` is the one
place that renames 0.6.2-era keys; the exporter uses it too. Torch-only, no model classes.
"""
import logging
import re

import torch

from ..errors import WeightsError
from .shapehints import summarise, weight_shape_hints

logger = logging.getLogger(__name__)

#: Buffers older transformers versions saved; no model here has them (nor any TF checkpoint).
BUFFER_KEYS = re.compile(r"(bert\.)?embeddings\.(position_ids|token_type_ids)")
#: pytorch-pretrained-bert <= 0.4 named LayerNorm parameters after TF's gamma/beta.
_LEGACY_SUFFIXES = ((".gamma", ".weight"), (".beta", ".bias"))
#: Top-level children of BertModel: a dict with these keys has no ``bert.`` prefix.
_TRUNK_PREFIXES = ("embeddings.", "encoder.", "pooler.")
#: Parameters the weights lack are initialised freshly; more than this many bytes of them
#: beyond the size of the weights themselves means the config does not describe these
#: weights (vocab_size 10**12, a billion layers) -- refused before anything is allocated.
MAX_FRESH_BYTES_BEYOND_WEIGHTS = 1 << 30
_LAYER_KEY = re.compile(r"(?:^|\.)encoder\.layer\.(\d+)\.")


def modern_key(key):
    """``key`` with a 0.6.2-era LayerNorm ``gamma``/``beta`` renamed to ``weight``/``bias``."""
    if "LayerNorm" in key:
        for old, new in _LEGACY_SUFFIXES:
            if key.endswith(old):
                return key[: -len(old)] + new
    return key


def normalize_state_dict(state_dict, model_has_bert_prefix):
    """Rename keys of every accepted dialect to ours; returns a new dict (input untouched)."""
    out = {}
    for key, value in state_dict.items():
        if BUFFER_KEYS.fullmatch(key):
            logger.debug("ignoring buffer %s (not a parameter of this model)", key)
            continue
        out[modern_key(key)] = value
    has_prefix = any(k.startswith("bert.") for k in out)
    if not model_has_bert_prefix and has_prefix:
        # A head's dict loaded into BertModel: keep its trunk; its head keys become unexpected.
        out = {(k[5:] if k.startswith("bert.") else k): v for k, v in out.items()}
    elif model_has_bert_prefix and not has_prefix and any(k.startswith(_TRUNK_PREFIXES) for k in out):
        out = {(f"bert.{k}" if k.startswith(_TRUNK_PREFIXES) else k): v for k, v in out.items()}
    # transformers keeps the MLM output bias twice (decoder.bias is tied to predictions.bias).
    dup = out.pop("cls.predictions.decoder.bias", None)
    if dup is not None and "cls.predictions.bias" not in out:
        out["cls.predictions.bias"] = dup
    return out


def resolve_dtype(dtype, state_dict):
    """The dtype to load floating tensors as: ``dtype`` (a torch dtype or its name), torch's
    default for None, the weights' own for "auto"."""
    if dtype is None:
        return torch.get_default_dtype()
    if dtype == "auto":
        return next((v.dtype for v in state_dict.values() if v.is_floating_point()),
                    torch.get_default_dtype())
    if isinstance(dtype, str):
        resolved = getattr(torch, dtype.replace("torch.", ""), None)
        if isinstance(resolved, torch.dtype) and resolved.is_floating_point:
            return resolved
        raise ValueError(f"dtype must be a floating torch dtype or 'auto', got {dtype!r}")
    return dtype


def mismatch_error(model, mismatched, source):
    """The WeightsError for tensors of ``source`` whose shapes do not fit ``model``
    (``mismatched``: ``[(key, shape in the weights, shape in the model)]``), hints first."""
    lines = [f"{k}: weights {list(a)}, model {list(b)}" for k, a, b in mismatched]
    hints = weight_shape_hints(model.config, mismatched)
    for key, have, _ in mismatched:
        if key.startswith("classifier.") and hasattr(model, "num_labels") and have:
            hints.append(f"the weights hold {have[0]} labels; pass num_labels={have[0]}")
    hint = "; ".join(dict.fromkeys(hints)) if hints else \
        "check that the config belongs to these weights"
    # The hint goes first; with a wrong hidden_size every tensor follows it, so a few are
    # shown and the rest counted (logged in full at DEBUG).
    logger.debug("tensors of %s that do not fit: %s", source, "; ".join(lines))
    return WeightsError(f"{len(mismatched)} tensor(s) in {source} do not fit "
                        f"{type(model).__name__} ({hint}): "
                        + "; ".join(summarise(lines, "tensors that do not fit")))


def check_layer_count(config, state_dict, source):
    """Refuse a config whose layers the weights do not hold beyond a bounded amount, before
    the model (one module per layer, even on the meta device) is built."""
    present = [int(m.group(1)) for m in map(_LAYER_KEY.search, state_dict) if m]
    known = max(present) + 1 if present else 0
    missing = config.num_hidden_layers - known
    if missing <= 0:
        return
    h, i = config.hidden_size, config.intermediate_size
    per_layer = 4 * (4 * h * h + 2 * h * i + 9 * h + i)  # float32 bytes of one encoder layer
    loaded = sum(t.numel() * t.element_size() for t in state_dict.values()
                 if isinstance(t, torch.Tensor))
    if missing * per_layer > loaded + MAX_FRESH_BYTES_BEYOND_WEIGHTS:
        raise WeightsError(
            f"the config has num_hidden_layers {config.num_hidden_layers} but {source} holds "
            f"{'layers 0 to ' + str(known - 1) if known else 'no encoder layers'}; the "
            f"{missing} missing layer(s) would need {missing * per_layer} bytes of fresh "
            "weights. Use the config that belongs to these weights")


def check_fresh_size(model, expected, absent, provided, source):
    """Refuse to initialise missing parameters larger in total than the loaded weights plus
    :data:`MAX_FRESH_BYTES_BEYOND_WEIGHTS`: their shapes come from the config alone, and an
    absurd vocab_size would otherwise ask for terabytes."""
    fresh = {k: expected[k].numel() * 4 for k in absent if expected[k].is_meta}
    loaded = sum(v.numel() * v.element_size() for v in provided.values())
    total = sum(fresh.values())
    if total > loaded + MAX_FRESH_BYTES_BEYOND_WEIGHTS:
        biggest = sorted(fresh, key=fresh.get, reverse=True)[:3]
        shapes = ", ".join(f"{k} {list(expected[k].shape)}" for k in biggest)
        raise WeightsError(
            f"{source} lacks parameters of {type(model).__name__} that would need {total} bytes "
            f"of fresh weights ({shapes}), far more than the {loaded} bytes loaded: the config "
            "does not describe these weights (check vocab_size, hidden_size, "
            "num_hidden_layers). Use the config that belongs to them")
