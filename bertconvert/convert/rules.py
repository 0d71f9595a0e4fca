"""Declarative name mapping between TensorFlow BERT checkpoints and PyTorch state-dict keys.

Pure data and pure functions: no file I/O, no TensorFlow, no torch. Three tables drive
everything:

* :data:`TF1_RULES` — Google's names (``modeling.py``, ``run_pretraining.py``,
  ``run_classifier.py``, ``run_squad.py``);
* :data:`TF2_RULES` — TensorFlow Model Garden's object paths (BertEncoder, BertEncoderV2,
  EncoderScaffold and the heads of its BERT models), relative to whatever root the model was
  saved under: a TF2 rule matches an object path that *ends* with its template at a ``/``
  boundary (``encoder/``, ``model/encoder_network/``, ``model/_network/``, a SavedModel's
  ``layer_with_weights-0/``... or nothing). :mod:`bertconvert.convert.tf2` resolves every
  variable through all its object paths;
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

from .. import layout
from ..errors import option

TF2_SUFFIX = "/.ATTRIBUTES/VARIABLE_VALUE"

# Transforms live in .transforms; re-exported here, where the rules name them.
from .transforms import (NONE, RESHAPE, RESHAPE_IN_TRANSPOSE, RESHAPE_OUT_TRANSPOSE,  # noqa: E402,F401
                         TRANSFORMS, TRANSPOSE, _transform_shape, invert_transform,
                         transformed_shape)

# --- parts: which piece of the PyTorch model a rule fills --------------------------------------
#: Head parts, with the PyTorch key prefix they fill. A model without a part simply drops it.
HEAD_PART_PREFIXES = {
    "pooler": "{trunk}pooler.",
    "predictions": "cls.predictions.",
    "seq_relationship": "cls.seq_relationship.",
    "classifier": "classifier.",
    "qa_outputs": "qa_outputs.",
}

# Placeholder vocabulary for both sides of a rule.
_PLACEHOLDERS = {"layer": r"\d+", "proj": r"query|key|value",
                 # BertEncoder(V2) keeps its blocks in _transformer_layers, EncoderScaffold in
                 # _hidden_layers; the blocks themselves are the same TransformerEncoderBlock.
                 "blocks": r"_transformer_layers|_hidden_layers"}
#: Placeholder values of :attr:`Rule.example`.
_EXAMPLE_VALUES = {"layer": "0", "proj": "query", "blocks": "_transformer_layers"}
#: What may precede a TF2 template: any root, ending at a path-component boundary.
_TF2_ROOT = r"(?:.*/)?"


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
    #: a head's own pooler (Model Garden's ClassificationHead ``dense``): the head part it
    #: belongs to; it replaces the encoder's pooler when the target model has that part
    pooler_of: str = None
    #: the head layout this variable alone identifies (e.g. a Dense ``classifier`` without
    #: ``out_proj`` is BertTokenClassifier's), or None
    implies: str = None
    _source_re: re.Pattern = field(init=False, repr=False, compare=False)
    _target_re: re.Pattern = field(init=False, repr=False, compare=False)

    def __post_init__(self):
        if self.transform not in TRANSFORMS:
            raise ValueError(f"rule {self.source}: unknown transform {self.transform}")
        source_re = _template_regex(self.source)
        if self.flavour == "tf2":  # relative to any root (see the module docstring)
            source_re = re.compile(_TF2_ROOT + source_re.pattern)
        object.__setattr__(self, "_source_re", source_re)
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
        """The PyTorch key for placeholder values ``groups`` under trunk prefix ``trunk``."""
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
        return self.source_name(_EXAMPLE_VALUES)


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
    """Model Garden's names, each relative to the object that owns it (see the module doc)."""
    t, blk = "tf2", "{blocks}/{layer}"
    pt = "{trunk}encoder.layer.{layer}"
    seq, tok, qa = layout.SEQUENCE_CLASSIFICATION, layout.TOKEN_CLASSIFICATION, layout.QUESTION_ANSWERING
    rules = [
        # --- the encoder (BertEncoder, BertEncoderV2, EncoderScaffold) ---
        Rule("_embedding_layer/embeddings", "{trunk}embeddings.word_embeddings.weight", NONE, "embeddings", t),
        # Model Garden's MaskedLM shares the encoder's table; TensorFlow stores a shared
        # variable once, under the first path it reaches, often this one.
        Rule("masked_lm/embedding_table", "{trunk}embeddings.word_embeddings.weight", NONE, "embeddings", t),
        Rule("_position_embedding_layer/embeddings", "{trunk}embeddings.position_embeddings.weight",
             NONE, "embeddings", t),
        Rule("_type_embedding_layer/embeddings", "{trunk}embeddings.token_type_embeddings.weight",
             NONE, "embeddings", t),
        *_layer_norm("_embedding_norm_layer", "{trunk}embeddings.LayerNorm", "embeddings", t),
        # EinsumDense projections keep the heads as separate axes.
        *_dense(f"{blk}/_attention_layer/_{{proj}}_dense", f"{pt}.attention.self.{{proj}}", "encoder", t,
                kernel_transform=RESHAPE_OUT_TRANSPOSE, bias_transform=RESHAPE),
        *_dense(f"{blk}/_attention_layer/_output_dense", f"{pt}.attention.output.dense", "encoder", t,
                kernel_transform=RESHAPE_IN_TRANSPOSE),
        *_layer_norm(f"{blk}/_attention_layer_norm", f"{pt}.attention.output.LayerNorm", "encoder", t),
        *_dense(f"{blk}/_intermediate_dense", f"{pt}.intermediate.dense", "encoder", t),
        *_dense(f"{blk}/_output_dense", f"{pt}.output.dense", "encoder", t),
        *_layer_norm(f"{blk}/_output_layer_norm", f"{pt}.output.LayerNorm", "encoder", t),
        *_dense("_pooler_layer", "{trunk}pooler.dense", "pooler", t),
        # --- masked LM (layers.MaskedLM; its bias is the Keras weight "output_bias/bias",
        # reachable also through the layer's ``bias`` attribute) ---
        *_dense("masked_lm/dense", "cls.predictions.transform.dense", "predictions", t),
        *_layer_norm("masked_lm/layer_norm", "cls.predictions.transform.LayerNorm", "predictions", t),
        Rule("masked_lm/output_bias.Sbias", "cls.predictions.bias", NONE, "predictions", t),
        Rule("masked_lm/bias", "cls.predictions.bias", NONE, "predictions", t),
        # --- next sentence: BertPretrainerV2's classification_heads (a ClassificationHead with
        # its own pooler ``dense``, also saved as the checkpoint item next_sentence.pooler_dense) ---
        *_dense("classification_heads/0/out_proj", "cls.seq_relationship", "seq_relationship", t),
        *[Rule(r.source, r.target, r.transform, "pooler", t, pooler_of="seq_relationship")
          for r in _dense("classification_heads/0/dense", "{trunk}pooler.dense", "pooler", t)
          + _dense("next_sentence..pooler_dense", "{trunk}pooler.dense", "pooler", t)],
        # A ClassificationHead saved as the checkpoint item ``next_sentence`` (the encoder's
        # pooler feeds it): fixtures/checkpoints/tf2-pretraining is written so.
        *_dense("next_sentence/out_proj", "cls.seq_relationship", "seq_relationship", t),
        # --- sentence classification: BertClassifier's ClassificationHead ``classifier``
        # (own pooler ``dense`` unless use_encoder_pooler=True; the task saves it also as the
        # checkpoint item sentence_prediction.pooler_dense) ---
        *[Rule(r.source, r.target, r.transform, r.part, t, implies=seq)
          for r in _dense("classifier/out_proj", "classifier", "classifier", t)],
        *[Rule(r.source, r.target, r.transform, "pooler", t, pooler_of="classifier")
          for r in _dense("classifier/dense", "{trunk}pooler.dense", "pooler", t)
          + _dense("sentence_prediction..pooler_dense", "{trunk}pooler.dense", "pooler", t)],
        # --- token classification: BertTokenClassifier's Dense ``classifier`` ---
        *[Rule(r.source, r.target, r.transform, r.part, t, implies=tok)
          for r in _dense("classifier", "classifier", "classifier", t)],
        # --- span labeling: BertSpanLabeler's SpanLabeling network, a Dense(2) inside ---
        *[Rule(r.source, r.target, r.transform, r.part, t, implies=qa)
          for r in _dense("span_labeling/layer_with_weights-0", "qa_outputs", "qa_outputs", t)],
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
    (r"^do_lower_case$", "tokenizer setting (read into tokenizer_config.json)"),
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


def _resolved(names):
    """``[rule, ...]`` of the names that are weights and match exactly one rule."""
    out = []
    for name in names:
        if skip_reason(name) is None:
            found = matching_rules(name)
            if len(found) == 1:
                out.append(found[0][0])
    return out


def parts_present(names):
    """The set of parts (embeddings, encoder, pooler, predictions, ...) that ``names`` fill."""
    return {rule.part for rule in _resolved(names)}


def detect_head(variable_names):
    """Pick the head layout a checkpoint was saved from: ``(head, note)``.

    ``note`` explains ambiguity or dropped variables (empty when there is nothing to say).

    >>> detect_head(["bert/pooler/dense/kernel", "cls/squad/output_weights"])
    ('question-answering', '')
    """
    return detect_head_of_rules(_resolved(variable_names))


def detect_head_of_rules(rules):
    """:func:`detect_head` from the rules the checkpoint's weights matched (TF2 checkpoints
    are resolved through their object graph, not their names)."""
    parts = {rule.part for rule in rules}
    implied = {rule.implies for rule in rules if rule.implies}
    pretraining = {"predictions", "seq_relationship"} & parts
    if "qa_outputs" in parts and "classifier" in parts or len(implied) > 1:
        return None, ("checkpoint holds both a question-answering (span) head and a classifier "
                      "head; pass "
                      f"{head_option(layout.QUESTION_ANSWERING, layout.SEQUENCE_CLASSIFICATION)}")
    note = ""
    if "qa_outputs" in parts or "classifier" in parts:
        head = layout.QUESTION_ANSWERING if "qa_outputs" in parts else layout.SEQUENCE_CLASSIFICATION
        if implied:  # the structure says which classifier it is (Model Garden's heads)
            head = implied.pop()
        elif head == layout.SEQUENCE_CLASSIFICATION:
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
