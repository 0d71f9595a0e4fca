"""The stage vocabulary of a parity check: the names both sides and the report use.

Stages, in computation order::

    embeddings, layer 0 ... layer N-1, pooled, <head outputs, see HEAD_STAGES>

With sub-stages each layer's intermediate results come just before the layer's output (see
:data:`LAYER_SUBSTAGES`)::

    embeddings, layer 0 query, layer 0 key, layer 0 value, layer 0 attention output,
    layer 0 intermediate, layer 0, layer 1 query, ...

``pooled`` is the pooler the head uses: the encoder's, or the head's own ``pooler_dense``
where a TF2 Model Garden head has one (see :mod:`bertconvert.verify.tf_side`).
Nothing here imports TensorFlow or torch: the PyTorch side and the report use these names
without depending on the TensorFlow side.
"""
from .. import layout

#: Output stages each head adds after the trunk (embeddings, layers, pooled).
HEAD_STAGES = layout.HEAD_STAGES

#: Intermediate results of every encoder layer, in computation order, compared before the
#: layer's output: the query/key/value projections (a wrong query or key weight barely moves
#: a layer's output -- softmax over small scores is flat -- but moves its projection by the
#: full error), the attention block's output (after its LayerNorm) and the feed-forward
#: intermediate activation (after GELU).
LAYER_SUBSTAGES = ("query", "key", "value", "attention output", "intermediate")


def layer_name(layer):
    """Report name of an encoder layer's output: ``layer_name(3) == "layer 3"``."""
    return f"layer {layer}"


def substage_name(layer, part):
    """Report name of a layer's sub-stage: ``substage_name(3, "query") == "layer 3 query"``."""
    return f"layer {layer} {part}"


def split_stage_name(name):
    """``"layer 3 query"`` -> ``("layer 3", "query")``; any other stage -> ``(name, None)``."""
    for part in LAYER_SUBSTAGES:
        suffix = " " + part
        if name.startswith("layer ") and name.endswith(suffix):
            group = name[:-len(suffix)]
            if group[len("layer "):].isdigit():
                return group, part
    return name, None
