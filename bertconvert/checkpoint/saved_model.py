"""The one fact a TF1 serving graph adds to its variables: BERT's attention head count.

TF1 attention kernels are 2-D (``[hidden, heads * head_size]``), so the head count is not in
a TF1 SavedModel's variables. Its graph (``saved_model.pb``) has it: Google's
``modeling.py`` reshapes each projection to ``[batch, seq, num_attention_heads, head_size]``
(``transpose_for_scores``: a ``Reshape`` under ``bert/encoder/layer_0/attention/self/``
whose shape input is a ``Const``, or a ``Pack`` of a dynamic batch and ``Const``s), and its
later einsum variant reshapes the kernels to ``[hidden, heads, head_size]``. We read just
enough protobuf (wire format from :mod:`bertconvert.checkpoint.proto`, no TensorFlow)::

    SavedModel     2 meta_graphs MetaGraphDef (repeated)
    MetaGraphDef   1 meta_info_def {4 tags (repeated string)}, 2 graph_def GraphDef
    GraphDef       1 node NodeDef (repeated)
    NodeDef        1 name, 2 op, 3 input (repeated), 5 attr map<string, AttrValue> {1 key, 2 value}
    AttrValue      8 tensor TensorProto
    TensorProto    1 dtype, 2 tensor_shape, 4 tensor_content, 7 int_val (int32, packed or not)

Anything else -- no graph, a text ``saved_model.pbtxt``, a graph without those reshapes,
malformed bytes, readings that disagree -- gives None: the caller then asks for a config.
"""
import logging
import mmap
import stat
import os

from ..errors import CheckpointFormatError
from .proto import decode_varint, iter_fields

logger = logging.getLogger(__name__)

SAVED_MODEL_PB = "saved_model.pb"
#: Where Google's modeling.py puts the first layer's self-attention ops.
ATTENTION_SCOPE = "bert/encoder/layer_0/attention/self/"
SERVING_TAG = "serve"
#: Bounds on the work a hostile graph can cause (a BERT-large serving graph has ~10k nodes).
MAX_GRAPH_BYTES = 1 << 30
MAX_NODES = 1_000_000
_DT_INT32, _DT_INT64 = 3, 9


def _text(buf, span):
    return bytes(buf[span[0]:span[1]]).decode("utf-8", "replace")


def _graph_span(buf):
    """``(start, end)`` of the GraphDef of the ``serve`` MetaGraph (else the first one)."""
    first = None
    for number, wire, value in iter_fields(buf):
        if number != 2 or wire != 2:
            continue
        tags, graph = [], None
        for n, w, v in iter_fields(buf, *value):
            if n == 1 and w == 2:
                tags = [_text(buf, t) for tn, tw, t in iter_fields(buf, *v) if tn == 4 and tw == 2]
            elif n == 2 and w == 2:
                graph = v
        if graph is None:
            continue
        if SERVING_TAG in tags:
            return graph
        first = first or graph
    return first


def _node(buf, start, end, scope):
    """``(name, op, inputs, value span or None)`` of a NodeDef; inputs and the ``value``
    attribute are decoded only for nodes under ``scope`` (the rest need just their name)."""
    name = op = ""
    inputs, value, attrs = [], None, []
    for n, w, v in iter_fields(buf, start, end):
        if w != 2:
            continue
        if n == 1:
            name = _text(buf, v)
        elif n == 2:
            op = _text(buf, v)
        elif n == 3:
            inputs.append(v)
        elif n == 5:
            attrs.append(v)
    if not name.startswith(scope):
        return name, op, [], None
    for span in attrs:
        key, attr = "", None
        for an, aw, av in iter_fields(buf, *span):
            if an == 1 and aw == 2:
                key = _text(buf, av)
            elif an == 2 and aw == 2:
                attr = av
        if key == "value" and attr is not None:
            value = attr
    return name, op, [_text(buf, i) for i in inputs], value


def _int_tensor(buf, span):
    """The integers of an int32/int64 TensorProto inside an AttrValue, or None."""
    tensor = next((v for n, w, v in iter_fields(buf, *span) if n == 8 and w == 2), None)
    if tensor is None:
        return None
    dtype, content, ints = 0, None, []
    for n, w, v in iter_fields(buf, *tensor):
        if n == 1 and w == 0:
            dtype = v
        elif n == 4 and w == 2:
            content = bytes(buf[v[0]:v[1]])
        elif n in (7, 10) and w == 0:
            ints.append(v)
        elif n in (7, 10) and w == 2:  # packed
            pos, stop = v
            while pos < stop:
                item, pos = decode_varint(buf, pos, stop)
                ints.append(item)
    if dtype not in (_DT_INT32, _DT_INT64):
        return None
    if content is not None:
        width = 4 if dtype == _DT_INT32 else 8
        if len(content) % width or len(content) > 64:
            return None
        return [int.from_bytes(content[i:i + width], "little", signed=True)
                for i in range(0, len(content), width)]
    return [i - (1 << 64) if i >= 1 << 63 else i for i in ints]


def _shape_values(nodes, buf, name):
    """The dims a Reshape's shape input gives: ints, None for a dynamic one; or None."""
    node = nodes.get(name.split(":")[0].lstrip("^"))
    if node is None:
        return None
    op, inputs, value = node
    if op == "Const" and value is not None:
        return _int_tensor(buf, value)
    if op == "Pack":
        dims = []
        for item in inputs:
            if item.startswith("^"):
                continue
            found = nodes.get(item.split(":")[0])
            ints = _int_tensor(buf, found[2]) if found and found[0] == "Const" and found[2] else None
            dims.append(ints[0] if ints and len(ints) == 1 else None)
        return dims
    return None


def heads_from_graph_bytes(buf, hidden_size):
    """The head count the first attention layer's reshapes give, or None (see the module)."""
    span = _graph_span(buf)
    if span is None:
        return None
    nodes, reshapes, count = {}, [], 0
    for n, w, v in iter_fields(buf, *span):
        if n != 1 or w != 2:
            continue
        count += 1
        if count > MAX_NODES:
            return None
        name, op, inputs, value = _node(buf, *v, ATTENTION_SCOPE)
        if not name.startswith(ATTENTION_SCOPE):
            continue  # TF names a reshape's shape Consts and Pack under the reshape's scope
        nodes[name] = (op, inputs, value)
        if op == "Reshape" and len(inputs) >= 2:
            reshapes.append(inputs[1])
    found = set()
    for shape_input in reshapes:
        dims = _shape_values(nodes, buf, shape_input)
        if not dims or len(dims) not in (3, 4):
            continue
        heads, size = dims[-2], dims[-1]
        if not isinstance(heads, int) or not isinstance(size, int) or heads < 1 or size < 1:
            continue
        if heads * size != hidden_size:
            continue
        if len(dims) == 3 and dims[0] != hidden_size:  # [hidden, heads, head_size] kernels
            continue
        found.add(heads)
    if len(found) == 1:
        return found.pop()
    if found:
        logger.warning("the serving graph's attention reshapes give different head counts %s",
                       sorted(found))
    return None


def read_attention_heads(saved_model_dir, hidden_size):
    """The attention head count recorded in ``saved_model_dir/saved_model.pb``, or None when
    the graph does not say (no binary graph, no such reshape, unreadable, too big)."""
    path = os.path.join(saved_model_dir, SAVED_MODEL_PB)
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except OSError:
        return None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or not 0 < st.st_size <= MAX_GRAPH_BYTES:
            return None
        with mmap.mmap(fd, 0, access=mmap.ACCESS_READ) as buf:
            return heads_from_graph_bytes(buf, hidden_size)
    except (OSError, ValueError, CheckpointFormatError) as e:
        logger.info("cannot read the head count from %s: %s", path, e)
        return None
    finally:
        os.close(fd)
