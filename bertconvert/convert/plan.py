"""Decide a conversion before doing it: which variable fills which key, what is skipped.

:func:`plan_conversion` looks only at names, shapes and dtypes from the checkpoint index (no
tensor bytes are read) and at the target model's parameters, derived from the config as
pure data by :func:`expected_parameters` (no torch import, no model, no memory; a test
keeps that table equal to the real models' state dicts for every head). It accounts for
every tensor both ways -- each variable is skipped, dropped (a head the target model does
not have) or fills exactly one parameter; each parameter is filled, tied, or (with
``allow_new_head``) freshly initialised -- and raises one :class:`MappingError` listing
every problem, sorted, with hints. The converter then only executes the plan.
"""
import copy
import logging
import re
from dataclasses import dataclass, field
from math import prod

from .. import layout
from . import rules as mapping
from ..models import config as config_module
from ..models.config import MAX_NUM_LABELS, BertConfig
from ..models.shapehints import ShapeEvidence, every_problem, problem_report
from .tf2 import resolve_tf2, select_poolers
from ..errors import ConfigError, HeadError, MappingError, option
from .rules import head_option

logger = logging.getLogger(__name__)

FLOAT_KINDS = ("float16", "float32", "float64", "bfloat16")
_ITEMSIZE = {"float16": 2, "bfloat16": 2, "float32": 4, "float64": 8}


@dataclass(frozen=True)
class PlannedTensor:
    """One checkpoint variable and the PyTorch key it fills."""

    name: str
    key: str
    rule: mapping.Rule
    source_shape: tuple
    shape: tuple           # the key's shape (after the rule's transform)
    source_dtype: str

    @property
    def nbytes(self):
        """Bytes of the variable in the checkpoint."""
        return prod(self.source_shape) * _ITEMSIZE[self.source_dtype]


@dataclass
class ConversionPlan:
    """Everything the converter needs; built by :func:`plan_conversion`."""

    prefix: str
    head: str
    num_labels: int
    config: BertConfig
    config_path: str
    model_class: str
    tensors: list = field(default_factory=list)    # PlannedTensor, in checkpoint file order
    skipped: list = field(default_factory=list)    # (name, reason)
    dropped: list = field(default_factory=list)    # (name, key, reason)
    new_keys: list = field(default_factory=list)   # (key, shape) initialised freshly
    tied: dict = field(default_factory=dict)       # alias key -> key it shares storage with
    key_order: list = field(default_factory=list)  # the model's state-dict order
    notes: list = field(default_factory=list)
    #: whether the pooler is written (always for heads whose transformers class has one)
    keep_pooler: bool = True


# --- config ------------------------------------------------------------------------------
def resolve_config(config, prefix):
    """``(BertConfig, path or None)`` for converting the checkpoint at ``prefix``: ``config``
    if given, else the one beside the checkpoint (:func:`bertconvert.models.config.resolve_config`
    holds the precedence)."""
    return config_module.resolve_config(config, checkpoint=prefix)


# --- head and label count ------------------------------------------------------------------
def _classifier_variable(shapes, weights=None):
    """``(name, rows)`` of the checkpoint's classifier (label-sized) variable, or None."""
    # The weight matrix first, as TF1's output_weights before output_bias: it is what a
    # hostile index inflates, and what must be checked against the shard.
    for name, rule, groups in sorted(weights or (), key=lambda w: not w[1].target.endswith("weight")):
        if rule.part == "classifier":
            have = mapping.transformed_shape(rule.transform, shapes[name])
            if have:
                return name, int(have[0])
    for name in ("output_weights", "output_bias"):
        if name in shapes and len(shapes[name]) >= 1:
            return name, int(shapes[name][0])
    return None


def _classifier_rows(shapes, weights=None):
    found = _classifier_variable(shapes, weights)
    return found[1] if found else None


def _label_limit(reader, shapes, num_labels, weights=None):
    """The largest label count to accept: :data:`~bertconvert.config.MAX_NUM_LABELS`, or
    the checkpoint's classifier rows when more, once its bytes are known to be on disk (a
    hostile index may declare 2**40 rows it does not hold)."""
    found = _classifier_variable(shapes, weights)
    rows = found[1] if found else None
    if rows is None or rows <= MAX_NUM_LABELS or num_labels != rows:
        return MAX_NUM_LABELS
    reader.check_stored(found[0])
    return rows


def choose_head(head, weights, notes):
    """Validate ``head`` or, for "auto", detect it from the weights: names, or resolved
    ``(name, rule, groups)`` triples (TF2)."""
    if head in (None, "auto"):
        detected, note = _detect(weights)
        if detected is None:
            raise HeadError(f"cannot choose a head automatically: {note}")
        if note:
            notes.append(note)
        return detected
    if head not in mapping.HEAD_NAMES:
        raise HeadError(f"unknown head {head!r}; expected auto or one of {', '.join(mapping.HEAD_NAMES)}")
    return head


def _detect(weights):
    if weights and not isinstance(weights[0], str):
        return mapping.detect_head_of_rules([rule for _, rule, _ in weights])
    return mapping.detect_head(weights)


FIXED_LABEL_COUNTS = layout.FIXED_LABEL_COUNTS  # re-exported for inspect


def _labels_option(n):
    return option(f"--num-labels {n}", f"num_labels={n}")


def choose_num_labels(head, num_labels, shapes, config, weights=None):
    """The label count: from the checkpoint's classifier when it has one; an explicit
    ``num_labels`` must agree with the tensor shapes. Fixed-width heads accept their width
    (:data:`FIXED_LABEL_COUNTS`); base and masked-lm have no label-sized output, so any count
    agrees and is only recorded in config.json (for fine-tuning later)."""
    rows = _classifier_rows(shapes, weights)
    if num_labels is not None and (isinstance(num_labels, bool) or not isinstance(num_labels, int)
                                   or num_labels < 1):
        raise HeadError(f"num_labels must be a positive integer, got {num_labels!r}")
    if head == layout.MULTIPLE_CHOICE:
        if rows not in (None, 1):
            raise HeadError(
                f"multiple-choice scores each choice with one output, but output_weights has "
                f"{rows} rows; use {head_option(layout.SEQUENCE_CLASSIFICATION, layout.TOKEN_CLASSIFICATION)}")
        if num_labels not in (None, 1):
            raise HeadError(f"multiple-choice has exactly 1 output per choice; "
                            f"{_labels_option(num_labels)} does not apply (omit it or pass 1)")
        return 1
    if head in (layout.SEQUENCE_CLASSIFICATION, layout.TOKEN_CLASSIFICATION):
        if rows is not None:
            if num_labels is not None and num_labels != rows:
                raise HeadError(f"{_labels_option(num_labels)} disagrees with the checkpoint: "
                                f"output_weights has {rows} rows ({rows} labels)")
            return rows
        return layout.label_count(num_labels, config.num_labels)
    fixed = FIXED_LABEL_COUNTS.get(head)
    if num_labels is not None and fixed is not None and num_labels != fixed:
        raise HeadError(f"{head} has exactly {fixed} outputs, so {_labels_option(num_labels)} "
                        f"does not agree with it (omit it or pass {fixed})")
    return num_labels


# --- the target model's parameters, as data ------------------------------------------------
# Keys in state-dict order (the order torch's Module.state_dict() lists them) with shapes
# named after config fields; "num_labels" is the label count. tests/test_planning_params.py
# checks the table against every head's meta-device model, so it cannot drift from
# modeling.py / heads.py.
_H = "hidden_size"
_EMBEDDINGS = (
    ("embeddings.word_embeddings.weight", ("vocab_size", _H)),
    ("embeddings.position_embeddings.weight", ("max_position_embeddings", _H)),
    ("embeddings.token_type_embeddings.weight", ("type_vocab_size", _H)),
    ("embeddings.LayerNorm.weight", (_H,)),
    ("embeddings.LayerNorm.bias", (_H,)),
)
_LAYER = tuple(  # under encoder.layer.{n}.
    [item for proj in ("query", "key", "value")
     for item in ((f"attention.self.{proj}.weight", (_H, _H)), (f"attention.self.{proj}.bias", (_H,)))]
    + [("attention.output.dense.weight", (_H, _H)), ("attention.output.dense.bias", (_H,)),
       ("attention.output.LayerNorm.weight", (_H,)), ("attention.output.LayerNorm.bias", (_H,)),
       ("intermediate.dense.weight", ("intermediate_size", _H)),
       ("intermediate.dense.bias", ("intermediate_size",)),
       ("output.dense.weight", (_H, "intermediate_size")), ("output.dense.bias", (_H,)),
       ("output.LayerNorm.weight", (_H,)), ("output.LayerNorm.bias", (_H,))])
_POOLER = (("pooler.dense.weight", (_H, _H)), ("pooler.dense.bias", (_H,)))
_MLM = (  # the LM head's own bias comes before its submodules, as state_dict() lists it
    ("cls.predictions.bias", ("vocab_size",)),
    ("cls.predictions.transform.dense.weight", (_H, _H)),
    ("cls.predictions.transform.dense.bias", (_H,)),
    ("cls.predictions.transform.LayerNorm.weight", (_H,)),
    ("cls.predictions.transform.LayerNorm.bias", (_H,)),
    (layout.TIED_DECODER_KEY, ("vocab_size", _H)),  # tied to the word embeddings
)
_NSP = (("cls.seq_relationship.weight", (2, _H)), ("cls.seq_relationship.bias", (2,)))
_CLASSIFIER = (("classifier.weight", ("num_labels", _H)), ("classifier.bias", ("num_labels",)))
_QA = (("qa_outputs.weight", (2, _H)), ("qa_outputs.bias", (2,)))

_PART_PARAMETERS = {"mlm": _MLM, "nsp": _NSP, "classifier": _CLASSIFIER, "qa": _QA}

#: head -> (model class name, whether its outputs use the pooler, head parameters after the trunk)
HEAD_LAYOUTS = {
    name: (head.class_name, head.uses_pooler,
           tuple(item for part in head.parts for item in _PART_PARAMETERS[part]))
    for name, head in layout.LAYOUTS.items()}
#: alias key -> the key whose parameter it shares, when the config ties the MLM decoder.
_TIED_DECODER = dict(layout.LAYOUTS[layout.PRETRAINING].tied)


def model_label_count(head, config, num_labels=None):
    """Outputs of the head's classifier: what ``build_model(head, config, num_labels)`` uses
    (multiple-choice scores each choice with 1 output; others: argument, config, else 2)."""
    if head == layout.MULTIPLE_CHOICE:
        return 1
    return layout.label_count(num_labels, config.num_labels)


def expected_parameters(head, config, num_labels=None):
    """``{key: shape}`` of ``build_model(head, config, num_labels).state_dict()``, in its order,
    computed from the config alone (no torch). Tied aliases are included, as state_dict()
    lists them; :func:`tied_parameters` says which they are.

    >>> params = expected_parameters("sequence-classification", BertConfig(99, hidden_size=32,
    ...     num_hidden_layers=1, num_attention_heads=4, intermediate_size=37), num_labels=3)
    >>> params["classifier.weight"], len(params)
    ((3, 32), 25)
    """
    if head not in HEAD_LAYOUTS:
        raise HeadError(f"unknown head {head!r}; expected one of {', '.join(HEAD_LAYOUTS)}")
    if config.hidden_size % config.num_attention_heads:
        raise ConfigError(f"hidden_size {config.hidden_size} is not a multiple of "
                          f"num_attention_heads {config.num_attention_heads}")
    labels = model_label_count(head, config, num_labels)

    def dims(names):
        return tuple(labels if d == "num_labels" else d if isinstance(d, int) else int(getattr(config, d))
                     for d in names)

    return {key: dims(template) for key, template in parameter_templates(head, config).items()}


def parameter_templates(head, config):
    """``{key: template}`` in state-dict order: each parameter's shape as config field names
    (``("vocab_size", "hidden_size")``), ``"num_labels"`` or fixed ints -- what sizes each
    dimension, which is how a shape mismatch is traced back to a config field."""
    trunk = mapping.trunk_prefix(head)
    out = {}
    for key, shape in _EMBEDDINGS:
        out[trunk + key] = shape
    for n in range(config.num_hidden_layers):
        for key, shape in _LAYER:
            out[f"{trunk}encoder.layer.{n}.{key}"] = shape
    for key, shape in _POOLER:
        out[trunk + key] = shape
    for key, shape in HEAD_LAYOUTS[head][2]:
        out[key] = shape
    return out


def tied_parameters(head, config):
    """``{alias key: key it shares storage with}`` for ``head`` under ``config``: the MLM
    decoder is tied to the word embeddings unless the config says ``tie_word_embeddings:
    false`` (then it is a parameter of its own)."""
    if not any(key in _TIED_DECODER for key, _ in HEAD_LAYOUTS[head][2]):
        return {}
    if getattr(config, "tie_word_embeddings", True) is False:
        return {}
    return dict(_TIED_DECODER)


def _layer_of(key):
    m = re.search(r"encoder\.layer\.(\d+)\.", key)
    return int(m.group(1)) if m else None


def pooler_drop_reason(head):
    """Why a conversion to ``head`` leaves the pooler out (conversion.json's ``dropped``)."""
    return (f"transformers' {layout.LAYOUTS[head].class_name} has no pooler "
            f"(add_pooling_layer=False) and {head} does not use it; "
            f"{option('--keep-pooler', 'keep_pooler=True')} writes it")


def plan_conversion(reader, config, head="auto", num_labels=None, allow_new_head=False,
                    config_path=None, keep_pooler=False):
    """Plan converting the checkpoint behind ``reader`` into ``head``; raise MappingError listing
    every problem. ``config`` is a :class:`BertConfig`. Reads metadata only, never tensor bytes.
    Heads in :data:`~bertconvert.layout.POOLERLESS_HEADS` drop the pooler unless ``keep_pooler``.

    Example::

        plan = plan_conversion(load_checkpoint(path), BertConfig.from_json_file(cfg))
        plan.head, [t.key for t in plan.tensors][:1]
    """
    prefix = reader.prefix
    config_label = config_path or "the config"
    shapes = {name: tuple(int(d) for d in shape)
              for name, shape in reader.get_variable_to_shape_map().items()}
    notes, problems, hints = [], [], []
    skipped, weights = [], []
    tf2 = resolve_tf2(reader, shapes)  # object-based: resolved through the object graph
    if tf2 is not None:
        skipped, weights, problems = tf2.require_structure(prefix)
    for name in sorted(shapes) if tf2 is None else ():
        reason = mapping.skip_reason(name)
        if reason:
            skipped.append((name, reason))
            continue
        found = mapping.matching_rules(name)
        if len(found) == 1:
            weights.append((name, found[0][0], found[0][1]))
        elif not found:
            problems.append(f"{name} {list(shapes[name])}: matches no rule ({mapping.unknown_name_hint(name)})")
        else:  # a broken table; the rule tests keep this from shipping
            problems.append(f"{name}: matches {len(found)} rules {[r.source for r, _ in found]}")

    head = choose_head(head, weights if tf2 is not None else [w[0] for w in weights], notes)
    num_labels = choose_num_labels(head, num_labels, shapes, config, weights)
    config = copy.deepcopy(config)
    if num_labels is not None:
        config.set_num_labels(num_labels, limit=_label_limit(reader, shapes, num_labels, weights))
    # The model's layers are listed one by one below, so their count must come from the
    # checkpoint, not from the config alone: a config claiming 10**9 layers would otherwise
    # build billions of entries. Layers beyond the checkpoint's are one problem, not 16 each.
    present = [int(groups["layer"]) for _, _, groups in weights if "layer" in groups]
    layers_in_checkpoint = max(present) + 1 if present else 0
    listed_config = config
    if config.num_hidden_layers > layers_in_checkpoint:
        problems.append(
            f"{config_label} has num_hidden_layers {config.num_hidden_layers} but the checkpoint "
            f"has no variables for layers {layers_in_checkpoint} to {config.num_hidden_layers - 1}")
        listed_config = copy.deepcopy(config)
        listed_config.num_hidden_layers = layers_in_checkpoint
    state = expected_parameters(head, listed_config, num_labels)
    keep_pooler = layout.writes_pooler(head, keep_pooler)
    omitted = set() if keep_pooler else {k for k in state if mapping.part_of_key(k) == "pooler"}
    state = {k: shape for k, shape in state.items() if k not in omitted}
    tied = tied_parameters(head, config)
    expected = {k: shape for k, shape in state.items() if k not in tied}
    model_class, pooler_used, _ = HEAD_LAYOUTS[head]
    model_parts = {mapping.part_of_key(k) for k in expected}
    trunk = mapping.trunk_prefix(head)
    templates = parameter_templates(head, listed_config)
    # What the shapes say about each config field, for hints that name the wrong field.
    evidence = ShapeEvidence(config, config_label)
    # Problems a wrong config repeats for every tensor, by what the message calls them
    shape_problems, layer_problems = [], []

    planned, dropped, filled_by = [], [], {}
    weights, dropped, pooler_notes = select_poolers(weights, model_parts)
    notes += pooler_notes
    for name, rule, groups in weights:
        key = rule.target_key(groups, trunk)
        if "layer" in groups:
            evidence.observe_layer(groups["layer"])
        if rule.part == "encoder":
            evidence.observe_heads(name, rule.transform, shapes[name])
        if key in omitted:
            dropped.append((name, key, pooler_drop_reason(head)))
            continue
        if key not in expected:
            if rule.part in mapping.HEAD_PART_PREFIXES and rule.part not in model_parts:
                dropped.append((name, key, f"{head} has no {rule.part} head"))
            elif _layer_of(key) is not None and _layer_of(key) >= config.num_hidden_layers:
                layer_problems.append(f"{name}: the checkpoint has layer {_layer_of(key)} but the "
                                      f"model has only layers 0-{config.num_hidden_layers - 1}")
            else:
                problems.append(f"{name}: maps to {key}, which {model_class} does not have")
            continue
        if key in filled_by:
            problems.append(f"{name}: {key} is already filled by {filled_by[key]}")
            continue
        filled_by[key] = name
        entry = reader.entry(name)
        dtype = getattr(entry.dtype, "name", str(entry.dtype))
        have = mapping.transformed_shape(rule.transform, shapes[name])
        want = expected[key]
        if have is not None:
            evidence.observe(name, key, rule.part, templates[key], have)
        if dtype not in FLOAT_KINDS:
            problems.append(f"{name}: dtype {dtype}, expected a floating-point weight")
        elif have is None:
            problems.append(f"{name} {list(shapes[name])}: rank does not fit transform {rule.transform} "
                            f"(target {key} {list(want)})")
        elif have != want:
            shape_problems.append(f"{name} {list(shapes[name])}: gives {list(have)} for {key}, "
                                  f"but the {model_class} built from the config needs {list(want)}")
        else:
            planned.append(PlannedTensor(name, key, rule, shapes[name], want, dtype))

    new_keys = []
    for key in sorted(set(expected) - set(filled_by)):
        part = mapping.part_of_key(key)
        if part == "pooler" and not pooler_used:
            new_keys.append((key, expected[key]))  # never used by this head's outputs
            notes.append(f"{key} not in the checkpoint; {head} does not use the pooler, initialised it")
        elif part is not None and allow_new_head:
            new_keys.append((key, expected[key]))
        elif part is not None:
            problems.append(f"{key}: not in the checkpoint ({part} head)")
            detected, _ = _detect(weights if tf2 is not None else [w[0] for w in weights])
            hints.append(f"the checkpoint has no {part} variables; pass "
                         f"{option('--allow-new-head', 'allow_new_head=True')} to initialise them "
                         f"freshly for fine-tuning, or convert to the head it was saved with "
                         f"({head_option(detected or 'auto')})")
        else:
            problems.append(f"{key}: no checkpoint variable fills it")
    grouped = {"tensors with mismatched shapes": shape_problems,
               "tensors of layers the config does not have": layer_problems,
               "attention tensors with another head count": evidence.heads_problems()}
    field_hints = evidence.hints()
    if shape_problems and not field_hints:
        field_hints.append(f"check that {config_label} belongs to this checkpoint: its tensors "
                           "do not fit the shapes the config gives")
    hints = field_hints + hints
    if problems or any(grouped.values()):
        logger.debug("every problem:\n%s", "\n".join(every_problem(problems, grouped)))
        raise MappingError(problem_report(f"cannot convert {prefix} to {head} ({model_class})",
                                          problems, grouped, hints))
    unused = [n for n, k, _ in dropped if k not in omitted]
    if unused:
        logger.warning("dropping %d variable(s) that %s does not use: %s", len(unused), head,
                       ", ".join(unused))
    if len(unused) < len(dropped):  # the expected case for these heads: not a warning
        logger.info("leaving out the pooler: %s", pooler_drop_reason(head))
    if new_keys and allow_new_head:
        logger.warning("initialising %d new parameter(s) (not in the checkpoint): %s",
                       len(new_keys), ", ".join(k for k, _ in new_keys))

    def file_order(t):
        e = reader.entry(t.name)
        return (getattr(e, "shard_id", 0) or 0, getattr(e, "offset", 0) or 0, t.name)

    return ConversionPlan(
        prefix=prefix, head=head, num_labels=num_labels, config=config, config_path=config_path,
        model_class=model_class, tensors=sorted(planned, key=file_order),
        skipped=skipped, dropped=dropped, new_keys=new_keys, tied=tied,
        key_order=list(state), notes=notes, keep_pooler=keep_pooler)
