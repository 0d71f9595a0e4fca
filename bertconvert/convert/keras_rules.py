"""The mapping from a KerasHub BERT preset's ``.weights.h5`` datasets to PyTorch keys, and the
plan built from it.

Keras 3 names each layer's group after its *class* (``transformer_encoder``,
``transformer_encoder_1``, ... ``transformer_encoder_11``), and each variable ``vars/N`` in
creation order (kernel or gamma 0, bias or beta 1). So the table maps by structure: a dataset
name is first put in canonical form -- the encoder blocks numbered by the rank of their
numeric suffix (no suffix is the first), ``transformer_encoder_{layer}`` -- and then matched
against :data:`KERAS_RULES`, one :class:`~bertconvert.convert.rules.Rule` per variable
(flavour ``keras``), with the same transforms as Model Garden's EinsumDense kernels.

:func:`plan_preset` accounts for every dataset (mapped, skipped, or dropped) and every
parameter of the target model, and returns the :class:`~bertconvert.convert.plan.ConversionPlan`
the converter executes as for a TF checkpoint.
"""
import re

from .. import layout
from ..errors import MappingError
from . import rules as mapping
from .keras_preset import MODEL_WEIGHTS, TASK_WEIGHTS
from .plan import (ConversionPlan, PlannedTensor, expected_parameters, pooler_drop_reason,
                   tied_parameters)
from .transforms import NONE, RESHAPE, RESHAPE_IN_TRANSPOSE, RESHAPE_OUT_TRANSPOSE, TRANSPOSE

_M = MODEL_WEIGHTS + "/layers/"
_T = TASK_WEIGHTS + "/layers/"
_E = _M + "transformer_encoder_{layer}/"
_ATT = _E + "_self_attention_layer/"


def _rule(source, target, transform, part):
    return mapping.Rule(source, target, transform, part, "keras")


def _pair(source, target, part, kernel=TRANSPOSE, bias=NONE):
    """A Dense/EinsumDense (``vars/0`` kernel, ``vars/1`` bias) or a LayerNorm (gamma, beta:
    ``kernel=NONE``)."""
    return [_rule(source + "vars/0", target + ".weight", kernel, part),
            _rule(source + "vars/1", target + ".bias", bias, part)]


_LAYER = "{trunk}encoder.layer.{layer}."
#: every dataset of a BERT preset that becomes a PyTorch parameter
KERAS_RULES = tuple([
    _rule(_M + "reversible_embedding/vars/0", "{trunk}embeddings.word_embeddings.weight", NONE, "embeddings"),
    _rule(_M + "position_embedding/vars/0", "{trunk}embeddings.position_embeddings.weight", NONE, "embeddings"),
    _rule(_M + "embedding/vars/0", "{trunk}embeddings.token_type_embeddings.weight", NONE, "embeddings"),
    *_pair(_M + "layer_normalization/", "{trunk}embeddings.LayerNorm", "embeddings", kernel=NONE),
    *_pair(_ATT + "{proj}_dense/", _LAYER + "attention.self.{proj}", "encoder",
           kernel=RESHAPE_OUT_TRANSPOSE, bias=RESHAPE),
    *_pair(_ATT + "output_dense/", _LAYER + "attention.output.dense", "encoder",
           kernel=RESHAPE_IN_TRANSPOSE),
    *_pair(_E + "_self_attention_layer_norm/", _LAYER + "attention.output.LayerNorm", "encoder",
           kernel=NONE),
    *_pair(_E + "_feedforward_intermediate_dense/", _LAYER + "intermediate.dense", "encoder"),
    *_pair(_E + "_feedforward_output_dense/", _LAYER + "output.dense", "encoder"),
    *_pair(_E + "_feedforward_layer_norm/", _LAYER + "output.LayerNorm", "encoder", kernel=NONE),
    *_pair(_M + "dense/", "{trunk}pooler.dense", "pooler"),
    # BertTextClassifier: pooled output -> dropout -> Dense "logits"
    *_pair(_T + "dense/", "classifier", "classifier"),
    # BertMaskedLM's MaskedLMHead: dense (exact GELU) -> LayerNorm -> tied embedding + bias
    *_pair(_T + "masked_lm_head/_intermediate_dense/", "cls.predictions.transform.dense",
           "predictions"),
    *_pair(_T + "masked_lm_head/_intermediate_layer_norm/",
           "cls.predictions.transform.LayerNorm", "predictions", kernel=NONE),
    _rule(_T + "masked_lm_head/vars/0", "cls.predictions.bias", NONE, "predictions"),
])

#: datasets read by no one: the task's optimizer state
KERAS_SKIP = ((re.compile(re.escape(TASK_WEIGHTS) + r"/optimizer/"), "optimizer state"),
              (re.compile(r"[^/]+/optimizer/"), "optimizer state"))

_ENCODER = re.compile(r"^(" + re.escape(_M) + r"transformer_encoder)(?:_(\d+))?/")


def encoder_order(names):
    """``{suffix: layer}``: the encoder blocks' numeric suffixes (None for the unsuffixed
    first one, as 0) ranked -- ``_10`` after ``_9``, not after ``_1``."""
    suffixes = {int(m.group(2) or 0) for m in map(_ENCODER.match, names) if m}
    return {s: i for i, s in enumerate(sorted(suffixes))}


def canonical(name, order):
    """``name`` with its encoder block numbered by rank: ``transformer_encoder_{layer}``."""
    m = _ENCODER.match(name)
    if not m:
        return name
    return f"{m.group(1)}_{order[int(m.group(2) or 0)]}/" + name[m.end():]


def resolve(name, order, trunk):
    """``(rule, key)`` for a dataset, ``(None, skip reason)`` or ``(None, None)``."""
    for pattern, reason in KERAS_SKIP:
        if pattern.match(name):
            return None, reason
    form = canonical(name, order)
    for rule in KERAS_RULES:
        groups = rule.match(form)
        if groups is not None:
            return rule, rule.target_key(groups, trunk)
    return None, None


def source_shape(transform, shape, heads):
    """The dataset shape that gives PyTorch ``shape`` through ``transform``: the attention
    kernels keep the head count as a dimension of its own (``[hidden, heads, head_dim]``), so
    a ``num_heads`` that disagrees with the file is caught, not silently reshaped away."""
    if transform == RESHAPE_OUT_TRANSPOSE:
        return (shape[1], heads, shape[0] // heads)
    if transform == RESHAPE:
        return (heads, shape[0] // heads)
    if transform == RESHAPE_IN_TRANSPOSE:
        return (heads, shape[1] // heads, shape[0])
    if transform == TRANSPOSE:
        return tuple(reversed(shape))
    return tuple(shape)


def plan_preset(reader, preset, keep_pooler=None):
    """The :class:`ConversionPlan` for ``preset`` read through ``reader`` (an
    :class:`~bertconvert.checkpoint.h5.H5WeightsReader`). Every problem -- a dataset no rule
    knows, a shape config.json disagrees with, a parameter no dataset fills -- is listed in
    one :class:`MappingError`."""
    head, config, num_labels = preset.head, preset.config, preset.num_labels
    trunk = mapping.trunk_prefix(head)
    keep_pooler = layout.writes_pooler(head, keep_pooler)
    state = expected_parameters(head, config, num_labels)
    tied = tied_parameters(head, config)
    order = encoder_order(reader.names)
    plan = ConversionPlan(prefix=preset.directory, head=head, num_labels=num_labels,
                          config=config, config_path=preset.config_path,
                          model_class=layout.LAYOUTS[head].class_name, tied=tied,
                          key_order=list(state), keep_pooler=keep_pooler)
    problems, filled = [], set()
    for name in reader.names:
        entry = reader.entry(name)
        rule, key = resolve(name, order, trunk)
        if rule is None:
            if key is not None:
                plan.skipped.append((name, key))
            else:
                problems.append(f"{name} {list(entry.shape)}: no rule maps this dataset")
            continue
        if mapping.part_of_key(key) == "pooler" and not keep_pooler:
            plan.dropped.append((name, key, pooler_drop_reason(head)))
            continue
        if key not in state:
            problems.append(f"{name} -> {key}: the {head} model has no such parameter"
                            + (f" (config.json: num_layers {config.num_hidden_layers})"
                               if ".layer." in key else ""))
            continue
        want = tuple(state[key])
        if tuple(entry.shape) != source_shape(rule.transform, want, config.num_attention_heads):
            problems.append(f"{name} has shape {list(entry.shape)}, but config.json "
                            f"({_fields(config)}) needs "
                            f"{list(source_shape(rule.transform, want, config.num_attention_heads))} "
                            f"for {key}")
            continue
        if entry.dtype_name not in ("float16", "float32", "float64", "bfloat16"):
            problems.append(f"{name} is {entry.dtype_name}, not a floating-point tensor")
            continue
        filled.add(key)
        plan.tensors.append(PlannedTensor(name, key, rule, entry.shape, want, entry.dtype_name))
    missing = [k for k in state if k not in filled and k not in tied
               and not (mapping.part_of_key(k) == "pooler" and not keep_pooler)]
    problems += [f"{k}: no dataset in the preset fills it" for k in missing]
    if problems:
        raise MappingError(f"the KerasHub preset {preset.directory} does not fit its config.json "
                           f"as a {head} model ({len(problems)} problem(s)):\n  "
                           + "\n  ".join(problems))
    plan.notes.extend(preset.notes)
    return plan


def _fields(config):
    return (f"vocabulary_size {config.vocab_size}, hidden_dim {config.hidden_size}, num_heads "
            f"{config.num_attention_heads}, intermediate_dim {config.intermediate_size}, "
            f"max_sequence_length {config.max_position_embeddings}, num_segments "
            f"{config.type_vocab_size}")


def describe_preset(directory, head="auto", keep_pooler=False):
    """``bertconvert inspect`` for a preset: every h5 dataset (name, shape, dtype) with the
    key it fills, "skipped" (optimizer state), "dropped" (the pooler a head leaves out) or
    "UNKNOWN"; the same dict as for a TF checkpoint, plus ``problems`` (what converting would
    refuse: shapes config.json disagrees with, parameters nothing fills)."""
    from ..checkpoint.h5 import H5WeightsReader
    from .keras_preset import read_preset

    preset = read_preset(directory, head)
    trunk = mapping.trunk_prefix(preset.head)
    pooler_dropped = None if layout.writes_pooler(preset.head, keep_pooler) \
        else pooler_drop_reason(preset.head)
    rows, problems = [], []
    with H5WeightsReader(preset.weight_files, prefix=preset.directory) as reader:
        order = encoder_order(reader.names)
        for name in reader.names:
            entry = reader.entry(name)
            row = {"name": name, "shape": list(entry.shape), "dtype": entry.dtype_name}
            rule, key = resolve(name, order, trunk)
            if rule is None:
                row["target"], row["detail"] = ("skipped", key) if key else \
                    ("UNKNOWN", "matches no rule of a KerasHub BERT preset")
            elif mapping.part_of_key(key) == "pooler" and pooler_dropped:
                row["target"], row["detail"] = "dropped", pooler_dropped
            else:
                row["target"], row["detail"] = key, rule.transform
            rows.append(row)
        rows.sort(key=lambda r: _natural(canonical(r["name"], order)))  # _2 before _10
        try:
            plan_preset(reader, preset, keep_pooler)
        except MappingError as e:
            problems = str(e).split("\n  ")[1:]
    return {"checkpoint": preset.directory, "head": preset.head, "detected_head": preset.head,
            "chosen": head not in (None, "auto"), "note": "; ".join(preset.notes),
            "missing": [], "num_labels": preset.num_labels, "variables": rows,
            "problems": problems, "keras_hub": {"task": preset.task, "pooling": preset.pooling}}


def _natural(text):
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", text)]
