"""A pooler left out on purpose: what verify does not demand of such a model directory.

``bertconvert convert`` leaves ``bert.pooler.*`` out for the heads whose transformers class has
no pooler (:data:`bertconvert.layout.POOLERLESS_HEADS`) unless ``--keep-pooler``. Such a
directory is complete: the weights stage compares what it holds, and the ``pooled`` stage is
not compared, since loading initialises that unused pooler afresh (the head's outputs never
touch it). A directory of any other head without a pooler is still incomplete, and fails.
"""
from .. import layout

#: the pooler's keys (with the trunk prefix; files of a bare BertModel have none)
POOLER_KEYS = ("bert.pooler.dense.weight", "bert.pooler.dense.bias")


def holds_pooler(files):
    """Whether the model directory's weights (a :class:`~bertconvert.verify.weights.ModelTensors`)
    include the pooler."""
    return any(files.resolve(k) for k in POOLER_KEYS)


def is_pooler_key(key):
    """Whether ``key`` (with or without the ``bert.`` prefix) is one of the pooler's."""
    return key.removeprefix("bert.").startswith("pooler.")


def left_out(head, files):
    """True when ``head``'s pooler was left out deliberately: the head's transformers class
    has none and the directory's weights hold none."""
    return head in layout.LAYOUTS and not layout.writes_pooler(head) and not holds_pooler(files)


def not_compared_note(model_dir, head):
    """The report note for a pooler (and ``pooled`` stage) that is not compared."""
    return (f"pooler not compared: {model_dir} holds none ({head} does not use it; "
            "converted without --keep-pooler)")


def drop_pooled_stage(torch_outputs, ref_outputs):
    """Leave the ``pooled`` stage out of both sides: ``(torch_outputs, ref_outputs)`` copies."""
    return ({k: v for k, v in torch_outputs.items() if k != "pooled"},
            {k: v for k, v in ref_outputs.items() if k != "pooled"})
