"""Declarative name mapping between TensorFlow BERT checkpoints and PyTorch state-dict keys.

Pure data and pure functions: no file I/O, no TensorFlow, no torch. Three tables drive
everything:

* :data:`TF1_RULES` — Google's names (``modeling.py``, ``run_pretraining.py``,
  ``run_classifier.py``, ``run_squad.py``);
* :data:`TF2_RULES` — tensorflow/models' object-based BertEncoder + pretrainer names (the
  ``/.ATTRIBUTES/VARIABLE_VALUE`` suffix is implied);
* :data:`SKIP_PATTERNS` — optimizer slots and bookkeeping, skipped without reading them.

A rule pairs a TF name *template* with a PyTorch key *template*; placeholders such as
``{layer}`` and ``{proj}`` become named regex groups, so each rule works in both directions
(convert and export) and is matched with ``fullmatch``. Every variable must be skipped or
matched by exactly one rule; :func:`resolve` enforces that.

Example::

    >>> r = resolve("bert/encoder/layer_3/attention/self/key/kernel", trunk="bert.")
    >>> r.key, r.rule.transform
    ('bert.encoder.layer.3.attention.self.key.weight', 'transpose')
"""
import re
from dataclasses import dataclass, field

import numpy as np

from .. import layout
from ..errors import option

TF2_SUFFIX = "/.ATTRIBUTES/VARIABLE_VALUE"

# --- transforms: TF layout -> PyTorch layout (numpy, exact: only moves bytes) ---------------
NONE = "none"
TRANSPOSE = "transpose"
RESHAPE = "reshape"                            # [heads, head_dim] -> [hidden]
RESHAPE_OUT_TRANSPOSE = "reshape_out+transpose"  # [in, heads, head_dim] -> [heads*head_dim, in]
RESHAPE_IN_TRANSPOSE = "reshape_in+transpose"    # [heads, head_dim, out] -> [out, heads*head_dim]


def _transform_shape(transform, shape):
    shape = tuple(int(d) for d in shape)
    if transform == NONE:
        return shape
    if transform == TRANSPOSE and len(shape) == 2:
        return shape[::-1]
    if transform == RESHAPE and len(shape) == 2:
        return (shape[0] * shape[1],)
    if transform == RESHAPE_OUT_TRANSPOSE and len(shape) == 3:
        return (shape[1] * shape[2], shape[0])
    if transform == RESHAPE_IN_TRANSPOSE and len(shape) == 3:
        return (shape[2], shape[0] * shape[1])
    return None


def transformed_shape(transform, shape):
    """Shape after ``transform``, or None when the rank does not fit the transform."""
    if transform not in TRANSFORMS:
        raise ValueError(f"unknown transform {transform!r}")
    return _transform_shape(transform, shape)


def apply_transform(transform, array):
    """Apply ``transform`` to a numpy array; returns a C-contiguous array (bytes unchanged)."""
    if transformed_shape(transform, array.shape) is None:
        raise ValueError(f"transform {transform} does not fit shape {list(array.shape)}")
    if transform == TRANSPOSE:
        array = array.T
    elif transform == RESHAPE:
        array = array.reshape(-1)
    elif transform == RESHAPE_OUT_TRANSPOSE:
        array = array.reshape(array.shape[0], -1).T
    elif transform == RESHAPE_IN_TRANSPOSE:
        array = array.reshape(-1, array.shape[-1]).T
    return np.ascontiguousarray(array)


def invert_transform(transform, array):
    """PyTorch layout back to the TF1 layout (only the 2-D transforms TF1 uses)."""
    if transform == NONE:
        return np.ascontiguousarray(array)
    if transform == TRANSPOSE and array.ndim == 2:
        return np.ascontiguousarray(array.T)
    raise ValueError(f"transform {transform} cannot be inverted for shape {list(array.shape)}")


TRANSFORMS = (NONE, TRANSPOSE, RESHAPE, RESHAPE_OUT_TRANSPOSE, RESHAPE_IN_TRANSPOSE)

# --- parts: which piece of the PyTorch model a rule fills --------------------------------------
#: Parts every model has; a variable of these parts that the model cannot take is an error.
TRUNK_PARTS = ("embeddings", "encoder")
#: Head parts, with the PyTorch key prefix they fill. A model without a part simply drops it.
HEAD_PART_PREFIXES = {
    "pooler": "{trunk}pooler.",
    "predictions": "cls.predictions.",
    "seq_relationship": "cls.seq_relationship.",
    "classifier": "classifier.",
    "qa_outputs": "qa_outputs.",
}

# Placeholder vocabulary for both sides of a rule.
_PLACEHOLDERS = {"layer": r"\d+", "proj": r"query|key|value"}


def _template_regex(template, extra=None):
    """Turn ``a/{layer}/b`` into a compiled regex with named groups (literal text escaped)."""
    values = dict(_PLACEHOLDERS, **(extra or {}))
    out, pos = [], 0
    for m in re.finditer(r"\{(\w+)\}", template):
        out.append(re.escape(template[pos:m.start()]))
        out.append(f"(?P<{m.group(1)}>{values[m.group(1)]})")
        pos = m.end()
    out.append(re.escape(template[pos:]))
    return re.compile("".join(out))


@dataclass(frozen=True)
class Rule:
    """One mapping: TF name template <-> PyTorch key template, plus the tensor transform."""

    source: str       # TF variable name template, e.g. "bert/encoder/layer_{layer}/..."
    target: str       # PyTorch key template; "{trunk}" is "bert." in head models, "" in BertModel
    transform: str
    part: str
    flavour: str      # "tf1" or "tf2"
    _source_re: re.Pattern = field(init=False, repr=False, compare=False)
    _target_re: re.Pattern = field(init=False, repr=False, compare=False)

    def __post_init__(self):
        if self.transform not in TRANSFORMS:
            raise ValueError(f"rule {self.source}: unknown transform {self.transform}")
        object.__setattr__(self, "_source_re", _template_regex(self.source))
        object.__setattr__(self, "_target_re", _template_regex(self.target, {"trunk": r"(?:bert\.)?"}))

    @property
    def pattern(self):
        """The regex this rule fullmatches against TF names."""
        return self._source_re.pattern

    def match(self, name):
        """Placeholder values when ``name`` fullmatches this rule, else None."""
        m = self._source_re.fullmatch(name)
        return None if m is None else m.groupdict()

    def target_key(self, groups, trunk):
        return self.target.format(trunk=trunk, **groups)

    def match_target(self, key):
        """Inverse: placeholder values when the PyTorch ``key`` fits this rule, else None."""
        m = self._target_re.fullmatch(key)
        if m is None:
            return None
        return {k: v for k, v in m.groupdict().items() if k != "trunk"}

    def source_name(self, groups):
        return self.source.format(**groups)

    @property
    def example(self):
        """A concrete TF name this rule matches (layer 0, proj query): for tests and docs."""
        return self.source_name({"layer": "0", "proj": "query"})


def _dense(source, target, part, flavour, kernel_transform=TRANSPOSE, bias_transform=NONE):
    return [Rule(f"{source}/kernel", f"{target}.weight", kernel_transform, part, flavour),
            Rule(f"{source}/bias", f"{target}.bias", bias_transform, part, flavour)]


def _layer_norm(source, target, part, flavour):
    # Google's LayerNorm calls its scale gamma and its shift beta; PyTorch: weight, bias.
    return [Rule(f"{source}/gamma", f"{target}.weight", NONE, part, flavour),
            Rule(f"{source}/beta", f"{target}.bias", NONE, part, flavour)]


def _tf1_rules():
    t, emb, enc = "tf1", "bert/embeddings", "bert/encoder/layer_{layer}"
    pt = "{trunk}encoder.layer.{layer}"
    rules = [
        Rule(f"{emb}/word_embeddings", "{trunk}embeddings.word_embeddings.weight", NONE, "embeddings", t),
        Rule(f"{emb}/position_embeddings", "{trunk}embeddings.position_embeddings.weight", NONE, "embeddings", t),
        Rule(f"{emb}/token_type_embeddings", "{trunk}embeddings.token_type_embeddings.weight", NONE, "embeddings", t),
        *_layer_norm(f"{emb}/LayerNorm", "{trunk}embeddings.LayerNorm", "embeddings", t),
        *_dense(f"{enc}/attention/self/{{proj}}", f"{pt}.attention.self.{{proj}}", "encoder", t),
        *_dense(f"{enc}/attention/output/dense", f"{pt}.attention.output.dense", "encoder", t),
        *_layer_norm(f"{enc}/attention/output/LayerNorm", f"{pt}.attention.output.LayerNorm", "encoder", t),
        *_dense(f"{enc}/intermediate/dense", f"{pt}.intermediate.dense", "encoder", t),
        *_dense(f"{enc}/output/dense", f"{pt}.output.dense", "encoder", t),
        *_layer_norm(f"{enc}/output/LayerNorm", f"{pt}.output.LayerNorm", "encoder", t),
        *_dense("bert/pooler/dense", "{trunk}pooler.dense", "pooler", t),
        *_dense("cls/predictions/transform/dense", "cls.predictions.transform.dense", "predictions", t),
        *_layer_norm("cls/predictions/transform/LayerNorm", "cls.predictions.transform.LayerNorm",
                     "predictions", t),
        Rule("cls/predictions/output_bias", "cls.predictions.bias", NONE, "predictions", t),
        # run_pretraining.py / run_classifier.py / run_squad.py create output_weights as
        # [out, in] already, so these are copied as they are.
        Rule("cls/seq_relationship/output_weights", "cls.seq_relationship.weight", NONE, "seq_relationship", t),
        Rule("cls/seq_relationship/output_bias", "cls.seq_relationship.bias", NONE, "seq_relationship", t),
        Rule("output_weights", "classifier.weight", NONE, "classifier", t),
        Rule("output_bias", "classifier.bias", NONE, "classifier", t),
        Rule("cls/squad/output_weights", "qa_outputs.weight", NONE, "qa_outputs", t),
        Rule("cls/squad/output_bias", "qa_outputs.bias", NONE, "qa_outputs", t),
    ]
    return tuple(rules)


def _tf2_rules():
    t, enc, blk = "tf2", "encoder", "encoder/_transformer_layers/{layer}"
    pt = "{trunk}encoder.layer.{layer}"
    rules = [
        Rule(f"{enc}/_embedding_layer/embeddings", "{trunk}embeddings.word_embeddings.weight", NONE, "embeddings", t),
        # Model Garden's MaskedLM shares the encoder's table; the object graph stores a shared
        # variable once, under its shortest path, which is this one in pretrainer checkpoints.
        Rule("masked_lm/embedding_table", "{trunk}embeddings.word_embeddings.weight", NONE, "embeddings", t),
        Rule(f"{enc}/_position_embedding_layer/embeddings", "{trunk}embeddings.position_embeddings.weight",
             NONE, "embeddings", t),
        Rule(f"{enc}/_type_embedding_layer/embeddings", "{trunk}embeddings.token_type_embeddings.weight",
             NONE, "embeddings", t),
        *_layer_norm(f"{enc}/_embedding_norm_layer", "{trunk}embeddings.LayerNorm", "embeddings", t),
        # EinsumDense projections keep the heads as separate axes.
        *_dense(f"{blk}/_attention_layer/_{{proj}}_dense", f"{pt}.attention.self.{{proj}}", "encoder", t,
                kernel_transform=RESHAPE_OUT_TRANSPOSE, bias_transform=RESHAPE),
        *_dense(f"{blk}/_attention_layer/_output_dense", f"{pt}.attention.output.dense", "encoder", t,
                kernel_transform=RESHAPE_IN_TRANSPOSE),
        *_layer_norm(f"{blk}/_attention_layer_norm", f"{pt}.attention.output.LayerNorm", "encoder", t),
        *_dense(f"{blk}/_intermediate_dense", f"{pt}.intermediate.dense", "encoder", t),
        *_dense(f"{blk}/_output_dense", f"{pt}.output.dense", "encoder", t),
        *_layer_norm(f"{blk}/_output_layer_norm", f"{pt}.output.LayerNorm", "encoder", t),
        *_dense(f"{enc}/_pooler_layer", "{trunk}pooler.dense", "pooler", t),
        *_dense("masked_lm/dense", "cls.predictions.transform.dense", "predictions", t),
        *_layer_norm("masked_lm/layer_norm", "cls.predictions.transform.LayerNorm", "predictions", t),
        Rule("masked_lm/bias", "cls.predictions.bias", NONE, "predictions", t),
        *_dense("next_sentence/out_proj", "cls.seq_relationship", "seq_relationship", t),
    ]
    return tuple(rules)


TF1_RULES = _tf1_rules()
TF2_RULES = _tf2_rules()
RULES = TF1_RULES + TF2_RULES

# --- skipped variables ---------------------------------------------------------------------
#: (regex searched in the name without the TF2 suffix, reason). Matching happens on names
#: only, so skipped tensors are never read.
SKIP_PATTERNS = (
    (r"/\.OPTIMIZER_SLOT/", "optimizer slot (TF2)"),
    (r"(^|/)(adam_m|adam_v)$", "optimizer slot (AdamWeightDecay)"),
    (r"(^|/)(AdamWeightDecayOptimizer|LAMB|Adam|Momentum|Adagrad|RMSProp)(_\d+)?$", "optimizer slot"),
    (r"(^|/)(beta1_power|beta2_power)$", "optimizer state"),
    (r"^optimizer/", "optimizer state (TF2)"),
    (r"^(global_step|save_counter)$", "training bookkeeping"),
    (r"^_CHECKPOINTABLE_OBJECT_GRAPH$", "object graph (TF2 bookkeeping)"),
)
_SKIP_RES = tuple((re.compile(p), reason) for p, reason in SKIP_PATTERNS)


def strip_tf2_suffix(name):
    return name[: -len(TF2_SUFFIX)] if name.endswith(TF2_SUFFIX) else name


def skip_reason(name):
    """Why ``name`` is skipped (optimizer slot, bookkeeping...), or None if it is a weight."""
    bare = strip_tf2_suffix(name)
    for regex, reason in _SKIP_RES:
        if regex.search(bare):
            return reason
    return None


@dataclass(frozen=True)
class Resolution:
    """A TF variable resolved to its PyTorch key."""

    name: str
    key: str
    rule: Rule
    groups: dict


def matching_rules(name):
    """All rules that match ``name`` (a correct table yields at most one)."""
    if name.endswith(TF2_SUFFIX):
        bare, table = name[: -len(TF2_SUFFIX)], TF2_RULES
    else:
        bare, table = name, TF1_RULES
    found = []
    for rule in table:
        groups = rule.match(bare)
        if groups is not None:
            found.append((rule, groups))
    return found


def resolve(name, trunk="bert."):
    """Resolve ``name`` to a :class:`Resolution`, or None when no rule matches.

    Raises ValueError when more than one rule matches (a broken table, never user input).
    """
    found = matching_rules(name)
    if not found:
        return None
    if len(found) > 1:
        raise ValueError(f"{name} matches {len(found)} rules: {[r.source for r, _ in found]}")
    rule, groups = found[0]
    return Resolution(name, rule.target_key(groups, trunk), rule, groups)


def trunk_prefix(head):
    """PyTorch key prefix of the trunk: BertModel has none, every head model has ``bert.``."""
    return "" if head == layout.BASE else "bert."


def part_of_key(key):
    """The head part a PyTorch key belongs to (``pooler``, ``classifier``...) or None (trunk)."""
    for part, prefix in HEAD_PART_PREFIXES.items():
        if key.startswith(prefix.format(trunk="bert.")) or key.startswith(prefix.format(trunk="")):
            return part
    return None


def reverse_rule(key):
    """The TF1 rule and TF name for a PyTorch ``key`` (export direction), or None."""
    for rule in TF1_RULES:
        groups = rule.match_target(key)
        if groups is not None:
            return rule, rule.source_name(groups)
    return None


# --- head detection ------------------------------------------------------------------------
HEAD_NAMES = layout.HEAD_NAMES



def head_option(*heads):
    """``--head X or --head Y`` for the CLI, ``head='X' or head='Y'`` for Python callers."""
    return " or ".join(option(f"--head {h}", f"head={h!r}") for h in heads)


def ambiguous_classifier_note():
    """The note for a run_classifier layout, whose head the names cannot tell."""
    return ("root output_weights/output_bias is run_classifier's layout, shared by sequence-, "
            "token- and multiple-choice classification; chose sequence-classification. Pass "
            f"{head_option(layout.TOKEN_CLASSIFICATION, layout.MULTIPLE_CHOICE)} if the model was "
            "fine-tuned for that")


def parts_present(names):
    """The set of parts (embeddings, encoder, pooler, predictions, ...) that ``names`` fill."""
    parts = set()
    for name in names:
        if skip_reason(name) is None:
            found = matching_rules(name)
            if len(found) == 1:
                parts.add(found[0][0].part)
    return parts


def detect_head(variable_names):
    """Pick the head layout a checkpoint was saved from: ``(head, note)``.

    ``note`` explains ambiguity or dropped variables (empty when there is nothing to say).

    >>> detect_head(["bert/pooler/dense/kernel", "cls/squad/output_weights"])
    ('question-answering', '')
    """
    parts = parts_present(variable_names)
    pretraining = {"predictions", "seq_relationship"} & parts
    if "qa_outputs" in parts and "classifier" in parts:
        return None, ("checkpoint holds both run_squad (cls/squad/output_*) and run_classifier "
                      "(output_weights) heads; pass "
                      f"{head_option(layout.QUESTION_ANSWERING, layout.SEQUENCE_CLASSIFICATION)}")
    note = ""
    if "qa_outputs" in parts or "classifier" in parts:
        head = layout.QUESTION_ANSWERING if "qa_outputs" in parts else layout.SEQUENCE_CLASSIFICATION
        if head == layout.SEQUENCE_CLASSIFICATION:
            note = ambiguous_classifier_note()
        if pretraining:
            dropped = "; ".join(f"{p} variables are not part of {head} and are dropped" for p in sorted(pretraining))
            note = f"{note}; {dropped}" if note else dropped
        return head, note
    if pretraining == {"predictions", "seq_relationship"}:
        return layout.PRETRAINING, note
    if pretraining == {"predictions"}:
        return layout.MASKED_LM, note
    if pretraining == {"seq_relationship"}:
        return layout.NEXT_SENTENCE, note
    return layout.BASE, note


# --- hints for names no rule knows ---------------------------------------------------------
def _known_components():
    known = set()
    for rule in RULES:
        for comp in rule.example.split("/"):
            known.add(re.sub(r"\d+", "N", comp))
    for proj in ("query", "key", "value"):
        known.update({proj, f"_{proj}_dense"})
    return known


_KNOWN_COMPONENTS = _known_components()


def unknown_name_hint(name):
    """A short explanation of why ``name`` matched no rule (for the sorted error list)."""
    bare = strip_tf2_suffix(name)
    if "embedding_hidden_mapping" in bare or "embedding_size" in bare:
        return "factorized (ALBERT-style) embeddings are not supported"
    for comp in bare.split("/"):
        if re.sub(r"\d+", "N", comp) not in _KNOWN_COMPONENTS:
            return f"unknown scope '{comp}'"
    return "no rule for this name (known scopes in an unexpected order)"
