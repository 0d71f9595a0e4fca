"""Name the config field a checkpoint (or a weights file) disagrees with, from tensor shapes.

The one source of "vocab_size in the config is X but ..." hints: the converter's planner
feeds :class:`ShapeEvidence` every tensor it matched, and ``from_pretrained`` its mismatched
tensors (:func:`weight_shape_hints`).

When a ``bert_config.json`` does not belong to a checkpoint, dozens of tensors fail their
shape check at once (a wrong ``hidden_size`` touches nearly every weight). Listing them is
not enough: the user needs to know which field is wrong and what the checkpoint says it
should be. :class:`ShapeEvidence` collects, for every tensor the planner matched to a
parameter, what each dimension tells about the config field that sizes it (the planner's
parameter templates name those fields), then turns disagreements into one hint per field::

    hidden_size in bert_config.json is 64 but the checkpoint's tensors have 32

Embedding tables are looked at separately from the encoder: ALBERT-style factorized
embeddings ([vocab, E] with E smaller than the hidden size, projected up inside the model)
show up as embeddings narrower than encoder tensors that agree with the config, whereas a
wrong ``hidden_size`` shows up as every tensor disagreeing with the config the same way.

Such a mismatch breaks nearly every tensor the same way; :func:`problem_report` lays out the
message with the hints first and each repetitive kind of problem cut to its first few.

Pure data, no I/O, no numpy, no torch: callers feed it names and shapes.
"""
from collections import defaultdict

from ..errors import option

#: Shape fields the templates use, in the order hints are given (the most telling first).
FIELDS = ("hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size",
          "vocab_size", "max_position_embeddings", "type_vocab_size")
#: Pseudo field: the width of the embedding tables (hidden_size, unless factorized).
EMBEDDING_WIDTH = "embedding width"

#: PyTorch key suffix -> what the hint calls the tensor whose rows give vocab_size
#: (the names Google's checkpoints use, so users can find them with ``bertconvert inspect``).
_VOCAB_TENSORS = (("word_embeddings.weight", "word_embeddings"),
                  ("cls.predictions.bias", "output_bias"),
                  ("cls.predictions.decoder.weight", "decoder"))

#: PyTorch key suffix -> what sizes the tensor's first dimension, for weights loaded into a
#: model (no plan templates there): the tensors a wrong config field shows up in first.
_FIRST_DIMENSION = (("embeddings.LayerNorm.weight", "hidden_size"),
                    ("word_embeddings.weight", "vocab_size"),
                    ("cls.predictions.bias", "vocab_size"),
                    ("intermediate.dense.bias", "intermediate_size"),
                    ("position_embeddings.weight", "max_position_embeddings"),
                    ("token_type_embeddings.weight", "type_vocab_size"))

#: TF2 attention transforms -> the axis of the *source* shape that counts attention heads.
#: (TF1 stores projections as [hidden, hidden], which does not reveal the head count.)
_HEADS_AXIS = {"reshape_out+transpose": 1, "reshape_in+transpose": 0, "reshape": 0}


def _values(observed):
    return " and ".join(str(v) for v in sorted(observed))


class ShapeEvidence:
    """What the checkpoint's tensor shapes say about each config field.

    Feed it with :meth:`observe` (one call per matched tensor), :meth:`observe_layer` and
    :meth:`observe_heads`; :meth:`hints` then names every field the config gets wrong.

    >>> from bertconvert.models.config import BertConfig
    >>> ev = ShapeEvidence(BertConfig(99, hidden_size=64, num_attention_heads=4), "cfg.json")
    >>> ev.observe("bert/pooler/dense/bias", "bert.pooler.dense.bias", "pooler",
    ...            ("hidden_size",), (32,))
    >>> ev.hints()
    ["hidden_size in cfg.json is 64 but the checkpoint's tensors have 32"]
    """

    def __init__(self, config, config_label, holder="the checkpoint"):
        self.config = config
        self.label = config_label
        #: what holds the tensors, as the hints name it ("the checkpoint", "the weights")
        self.holder = holder
        self._holders = holder + ("'" if holder.endswith("s") else "'s")
        # field -> value -> [(TF name, PyTorch key)], in the order seen
        self._seen = defaultdict(lambda: defaultdict(list))
        self._layers = set()

    def observe(self, name, key, part, template, shape):
        """Record tensor ``name`` (filling ``key`` of model part ``part``) whose transformed
        ``shape`` is sized by ``template`` (config field names, or ints for fixed sizes)."""
        if len(template) != len(shape):
            return  # a rank mismatch says nothing about the sizes
        for field, size in zip(template, shape):
            if not isinstance(field, str) or field not in FIELDS:
                continue  # fixed sizes (2 NSP classes) and num_labels come from elsewhere
            if field == "hidden_size" and part == "embeddings":
                field = EMBEDDING_WIDTH
            self._seen[field][int(size)].append((name, key))

    def observe_layer(self, index):
        """Record that the checkpoint has encoder layer ``index``."""
        self._layers.add(int(index))

    def observe_heads(self, name, transform, source_shape):
        """Record the head count a TF2 attention tensor shows (its heads are a separate axis)."""
        axis = _HEADS_AXIS.get(transform)
        if axis is not None and len(source_shape) > axis:
            self._seen["num_attention_heads"][int(source_shape[axis])].append((name, None))

    def heads_problems(self):
        """Problems for TF2 attention tensors whose head count disagrees with the config.

        Their flattened shapes still fit (heads x head_dim = hidden), so the planner's shape
        check cannot see this; converted as-is, attention would split the heads wrongly.
        """
        want = self.config.num_attention_heads
        return [f"{name}: has {value} attention heads but num_attention_heads in {self.label} "
                f"is {want}"
                for value, uses in sorted(self._seen["num_attention_heads"].items()) if value != want
                for name, _ in uses]

    def _disagreeing(self, field):
        want = getattr(self.config, field)
        return {v: uses for v, uses in self._seen[field].items() if v != want}

    def _field_hint(self, field):
        want = getattr(self.config, field)
        wrong = self._disagreeing(field)
        if not wrong:
            return []
        have = _values(wrong)
        head = f"{field} in {self.label} is {want} but"
        if field == "vocab_size":
            hints = []
            for value, uses in sorted(wrong.items()):
                for suffix, what in _VOCAB_TENSORS:
                    if any(key.endswith(suffix) for _, key in uses):
                        hints.append(f"{head} {self._holders} {what} has {value} rows")
            return hints
        if field == "max_position_embeddings":
            return [f"{head} {self.holder} has {have} positions"]
        if field == "type_vocab_size":
            return [f"{head} {self.holder} has {have} token types"]
        return [f"{head} {self._holders} tensors have {have}"]

    def _layer_hint(self):
        if not self._layers:
            return []
        count = max(self._layers) + 1
        want = self.config.num_hidden_layers
        # Only a well-formed run of layers 0..n-1 tells the layer count; stray indices are
        # reported as problems of their own.
        if count == want or self._layers != set(range(count)):
            return []
        return [f"num_hidden_layers in {self.label} is {want} but {self.holder} has {count} "
                f"layers (layer_0 to layer_{count - 1})"]

    def _embedding_hint(self):
        widths = set(self._seen[EMBEDDING_WIDTH])
        encoder = set(self._seen["hidden_size"])
        hidden = self.config.hidden_size
        # The hidden size the model really has: the encoder's, when the checkpoint shows it
        # unambiguously, else the config's.
        model_hidden = next(iter(encoder)) if len(encoder) == 1 else hidden
        odd = sorted(w for w in widths if w != model_hidden)
        if not odd:
            return []
        if not encoder:
            # No encoder tensor to tell a wrong hidden_size from factorized embeddings (an
            # ALBERT checkpoint's encoder matches no rule at all): say both.
            return [f"hidden_size in {self.label} is {hidden} but {self._holders} embeddings "
                    f"are {_values(odd)} wide, and no encoder tensor shows the hidden size: a "
                    "wrong hidden_size, or factorized (ALBERT-style) embeddings, which are not "
                    "supported"]
        return [f"{self._holders} embeddings are {_values(odd)} wide but its encoder tensors "
                f"are {model_hidden} wide: factorized (ALBERT-style) embeddings are not "
                "supported; convert a BERT checkpoint"]

    def hints(self):
        """One line per config field the checkpoint's shapes disagree with, most telling first
        (an empty list when the shapes explain nothing)."""
        out = []
        for field in FIELDS:
            if field == "num_hidden_layers":
                out += self._layer_hint()
            elif field == "hidden_size":
                out += self._field_hint(field) + self._embedding_hint()
            else:
                out += self._field_hint(field)
        return list(dict.fromkeys(out))


def weight_shape_hints(config, mismatched, config_label="the config"):
    """Hints for tensors of a weights file that do not fit the model built from ``config``:
    ``mismatched`` is ``[(key, shape in the file, shape in the model)]``. Only tensors whose
    first dimension one config field sizes are looked at (:data:`_FIRST_DIMENSION`)."""
    evidence = ShapeEvidence(config, config_label, holder="the weights")
    for key, have, _ in mismatched:
        field = next((f for suffix, f in _FIRST_DIMENSION if key.endswith(suffix)), None)
        if field is not None and have:
            evidence.observe(key, key, None, (field,), (have[0],))
    return evidence.hints()


#: How many problems of one repetitive kind a message shows before counting the rest.
SHOWN_PER_KIND = 2


def summarise(lines, what, shown=SHOWN_PER_KIND):
    """The first ``shown`` of ``lines``, then "and N more ``what``" for the rest: a wrong
    config breaks nearly every tensor the same way, and a hundred lines of that would bury
    the hint that names the field."""
    lines = list(lines)
    if len(lines) <= shown + 1:  # "and 1 more" would take the line the problem takes
        return lines
    return lines[:shown] + [f"and {len(lines) - shown} more {what} "
                            f"({option('--debug', 'DEBUG logging')} lists every one)"]


def problem_report(title, problems, grouped=None, hints=()):
    """A multi-line message: ``title`` with the problem count, the ``hints`` first when there
    are any (they name what to change), then ``problems`` in full and each list of
    ``grouped`` (``{what: [problem, ...]}``, e.g. ``{"tensors with mismatched shapes":
    [...]}``) cut by :func:`summarise`. :func:`every_problem` gives the uncut list."""
    grouped = {what: sorted(items) for what, items in (grouped or {}).items() if items}
    count = len(problems) + sum(map(len, grouped.values()))
    shown, counted = list(problems), []  # the problems, sorted; then the "and N more" lines
    for what, items in grouped.items():
        cut = summarise(items, what)
        if len(cut) < len(items):
            shown, counted = shown + cut[:-1], counted + cut[-1:]
        else:
            shown += cut
    shown = sorted(shown) + counted
    hints = list(dict.fromkeys(hints))
    if not hints:
        return "\n".join([f"{title}: {count} problem(s):"] + [f"  - {p}" for p in shown])
    return "\n".join([f"{title}: {count} problem(s)", "hints:"] + [f"  - {h}" for h in hints]
                     + ["problems:"] + [f"  - {p}" for p in shown])


def every_problem(problems, grouped=None):
    """All problems of a :func:`problem_report`, sorted, uncut (what ``--debug`` logs)."""
    return sorted(list(problems) + [p for items in (grouped or {}).values() for p in items])
