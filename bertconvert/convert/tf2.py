"""TF2 checkpoints and SavedModels: resolve every variable through its object paths.

A TF2 checkpoint names each tensor after *one* path through the saved Python objects, the
first one TensorFlow's breadth-first walk reached (``model/layer_with_weights-0/...``,
``masked_lm/embedding_table``, a SavedModel's ``variables/17``). Those names say little;
the object graph (:mod:`bertconvert.checkpoint.object_graph`) lists *every* path to the
variable, among them the semantic ones (``model/_network/_transformer_layers/0/...``).
:func:`resolve_tf2` matches every path of every variable against the TF2 rule table
(:data:`bertconvert.convert.rules.TF2_RULES`, templates relative to any root). A variable is

* skipped unread: optimizer state in both TF2 styles (``.OPTIMIZER_SLOT`` slots, Keras 3's
  ``optimizer/_variables/N``, anything reachable only through an optimizer) and
  bookkeeping (``save_counter``, ``global_step``, ``do_lower_case``, the graph itself);
* a weight, when its matching paths all name the same target (several may match:
  ``masked_lm/embedding_table`` and ``encoder/_embedding_layer/embeddings`` are one table);
* else a problem: unknown (grouped by the object that owns it) or ambiguous.

Also: which pooler a model gets (:func:`select_poolers`) and the config a checkpoint
without ``bert_config.json`` implies (:func:`infer_config`). No TensorFlow, no tensor bytes.
"""
import logging
from dataclasses import dataclass, field

from . import rules as mapping
from ..checkpoint.object_graph import object_path_of_key, read_object_graph
from ..errors import CheckpointFormatError, ConfigError, MappingError, option
from ..models.config import BertConfig

logger = logging.getLogger(__name__)

#: Layer-norm epsilon of every Model Garden BERT encoder (not recorded in the checkpoint).
DEFAULT_NORM_EPSILON = 1e-12
#: How many unknown objects an error lists before summarising the rest.
MAX_UNKNOWN_GROUPS = 20
#: Components of the longest TF2 rule template. The rules match relative to any root and
#: no placeholder value holds a ``/``, so a path's last this-many components decide which
#: rules match it: Hub SavedModels reach each variable by hundreds of paths that share them.
_SUFFIX_COMPONENTS = max(rule.source.count("/") + 1 for rule in mapping.TF2_RULES)


@dataclass
class Tf2Resolution:
    """What :func:`resolve_tf2` found: ``weights`` as ``(name, rule, groups)``, ``skipped``
    as ``(name, reason)``, ``problems`` as sentences, ``paths`` the semantic path used."""

    skipped: list = field(default_factory=list)
    weights: list = field(default_factory=list)
    problems: list = field(default_factory=list)
    paths: dict = field(default_factory=dict)
    unknown: dict = field(default_factory=dict)   # owner path -> [(attribute, shape)]

    def require_structure(self, prefix):
        """``(skipped, weights, problems)`` for the planner; MappingError at once when no
        variable is a BERT weight (every other problem would only repeat that)."""
        if not self.weights:
            raise MappingError(f"cannot convert {prefix}: {len(self.problems)} problem(s):\n"
                               + "\n".join(f"  - {p}" for p in self.problems))
        return list(self.skipped), list(self.weights), list(self.problems)


def is_tf2(reader):
    """True when ``reader``'s checkpoint is object-based (TF2 or a SavedModel's variables)."""
    return any(name.endswith(mapping.TF2_SUFFIX) for name in reader.get_variable_to_shape_map())


def _skip(name, graph, paths):
    reason = mapping.skip_reason(name)
    if reason is None and graph is not None and name in paths and graph.is_optimizer_state(name):
        reason = "optimizer state (TF2)"
    return reason


def _rule_matches(path, memo):
    """``[(target, rule, groups)]`` of every TF2 rule ``path`` matches (memoised by suffix)."""
    suffix = "/".join(path.rsplit("/", _SUFFIX_COMPONENTS)[-_SUFFIX_COMPONENTS:])
    found = memo.get(suffix)
    if found is None:
        found = memo[suffix] = []
        for rule in mapping.TF2_RULES:
            groups = rule.match(suffix)
            if groups is not None:
                found.append(((rule.target_key(groups, "bert."), rule.part, rule.pooler_of),
                              rule, groups))
    return found


def _owner(path):
    """The object a variable belongs to and its attribute: ``a/b/kernel`` -> (a/b, kernel)."""
    head, _, tail = path.rpartition("/")
    return head or "(root)", tail


def resolve_tf2(reader, shapes=None):
    """Resolve an object-based checkpoint's variables (see the module docstring), or None for
    a TF1 checkpoint. Reads the object graph, never a weight."""
    shapes = shapes if shapes is not None else reader.get_variable_to_shape_map()
    graph = read_object_graph(reader)
    if graph is None and not any(n.endswith(mapping.TF2_SUFFIX) for n in shapes):
        return None
    try:
        paths = graph.variable_paths() if graph is not None else {}
    except CheckpointFormatError as e:  # a budget exceeded: say which checkpoint
        raise type(e)(f"checkpoint {reader.prefix}: {e}") from e
    out = Tf2Resolution()
    memo = {}
    for name in sorted(shapes):
        reason = _skip(name, graph, paths)
        if reason:
            out.skipped.append((name, reason))
            continue
        own = object_path_of_key(name) or name
        candidates = paths.get(name) or [own]
        found = {}  # (target, part, pooler_of) -> (rule, groups, path): the first path wins
        for path in candidates:
            for target, rule, groups in _rule_matches(path, memo):
                found.setdefault(target, (rule, groups, path))
        if len(found) == 1:
            rule, groups, path = next(iter(found.values()))
            out.weights.append((name, rule, dict(groups)))  # memoised: not to be shared
            out.paths[name] = path
        elif found:
            which = "; ".join(f"{p} -> {t[0]}" for t, (_, _, p) in found.items())
            out.problems.append(f"{name}: its object paths name different targets ({which}); "
                                "the object graph is not one of Model Garden's BERT models")
        else:
            owner, attribute = _owner(candidates[0])
            out.unknown.setdefault(owner, []).append((attribute, list(shapes[name])))
    for owner in sorted(out.unknown)[:MAX_UNKNOWN_GROUPS]:
        attrs = ", ".join(f"{a} {s}" for a, s in sorted(out.unknown[owner]))
        if owner == "(root)":  # variables of the root object itself (a bare step counter...)
            out.problems.append(f"{attrs} (top level): matches no rule")
            continue
        hint = mapping.unknown_name_hint(owner + "/" + out.unknown[owner][0][0] + mapping.TF2_SUFFIX)
        out.problems.append(f"{owner}/: {attrs}: matches no rule ({hint})")
    if len(out.unknown) > MAX_UNKNOWN_GROUPS:
        rest = sorted(out.unknown)[MAX_UNKNOWN_GROUPS:]
        out.problems.append(f"... and {len(rest)} more object(s) no rule knows "
                            f"({sum(len(out.unknown[o]) for o in rest)} variables)")
    if not out.weights:
        out.problems.append(
            "no Model Garden BERT structure in the object graph: no path ends like an encoder's "
            "_embedding_layer/embeddings, _transformer_layers/N/... or a head's masked_lm/, "
            "classifier/, span_labeling/ (BertEncoder, BertEncoderV2, EncoderScaffold and "
            "Model Garden's BERT heads are supported)")
    return out


def select_poolers(weights, model_parts):
    """``(weights kept, dropped, notes)``: Model Garden's sentence heads carry their own pooler
    (ClassificationHead ``dense``), computed instead of the encoder's. When the target model
    has that head part, the head's pooler becomes ``bert.pooler`` and the encoder's unused
    pooler is dropped; otherwise the head's pooler is dropped with the rest of its head."""
    own = [w for w in weights if w[1].pooler_of]
    if not own:
        return weights, [], []
    use_own = any(rule.pooler_of in model_parts for _, rule, _ in own)
    kept, dropped = [], []
    for name, rule, groups in weights:
        if rule.part != "pooler" or bool(rule.pooler_of) == use_own:
            kept.append((name, rule, groups))
        elif use_own:
            dropped.append((name, rule.target_key(groups, "bert."),
                            "the encoder's pooler, unused: the head has its own pooler"))
        else:
            dropped.append((name, rule.target_key(groups, "bert."),
                            f"the {rule.pooler_of} head's own pooler; the model has no such head"))
    if use_own:
        note = ("the head has its own pooler (Model Garden's ClassificationHead dense), converted "
                "as the pooler; the encoder's pooler is unused by it and dropped")
    else:
        note = ("the checkpoint's head has its own pooler, dropped with the head; the pooler is "
                "the encoder's")
    return kept, dropped, [note]


def _by_key(weights, shapes):
    return {rule.target_key(groups, "bert."): tuple(shapes[name]) for name, rule, groups in weights}


def infer_config(weights, shapes, source):
    """The :class:`BertConfig` that the resolved TF2 ``weights`` imply (Model Garden writes no
    config beside a checkpoint or into a SavedModel): sizes from the tensor shapes, the
    head count from the 3-D attention kernels, layer-norm epsilon 1e-12. ``source`` names
    the checkpoint in errors."""
    keys = _by_key(weights, shapes)
    need = {"word": "bert.embeddings.word_embeddings.weight",
            "position": "bert.embeddings.position_embeddings.weight",
            "type": "bert.embeddings.token_type_embeddings.weight",
            "query": "bert.encoder.layer.0.attention.self.query.weight",
            "intermediate": "bert.encoder.layer.0.intermediate.dense.weight"}
    missing = [k for k in need.values() if k not in keys]
    if missing or len(keys[need["query"]]) != 3:
        raise ConfigError(
            f"no config for {source}, and its tensors do not determine one (missing "
            f"{', '.join(missing) or '3-D attention kernels'}); pass the model's config "
            f"with {option('--config PATH', 'config=PATH')}")
    vocab, hidden = keys[need["word"]]
    layers = 1 + max(int(g["layer"]) for _, _, g in weights if "layer" in g)
    data = {"vocab_size": vocab, "hidden_size": hidden, "num_hidden_layers": layers,
            "num_attention_heads": keys[need["query"]][1],
            "intermediate_size": keys[need["intermediate"]][1],
            "max_position_embeddings": keys[need["position"]][0],
            "type_vocab_size": keys[need["type"]][0], "hidden_act": "gelu",
            "layer_norm_eps": DEFAULT_NORM_EPSILON, "hidden_dropout_prob": 0.1,
            "attention_probs_dropout_prob": 0.1, "initializer_range": 0.02}
    return BertConfig.from_dict(data)
