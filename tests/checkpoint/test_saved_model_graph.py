"""Reading the attention head count from a TF1 serving graph without TensorFlow
(checkpoint/saved_model.py): the real export, and hand-encoded graphs for each form."""
import os
import shutil

import pytest

from bertconvert.checkpoint.saved_model import heads_from_graph_bytes, read_attention_heads

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SAVED_MODEL = os.path.join(ROOT, "fixtures", "tf1_serving", "export", "1700000000")
SCOPE = "bert/encoder/layer_0/attention/self/"


# --- a test-side protobuf encoder (wire format only) ---------------------------------------
def varint(n):
    n &= (1 << 64) - 1
    out = bytearray()
    while True:
        b, n = n & 0x7F, n >> 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def field(number, payload):
    """A length-delimited field."""
    return varint(number << 3 | 2) + varint(len(payload)) + payload


def vfield(number, value):
    return varint(number << 3) + varint(value)


def const(name, ints, content=False, dtype=3):
    if content:
        width = 4 if dtype == 3 else 8
        body = vfield(1, dtype) + field(4, b"".join(i.to_bytes(width, "little", signed=True)
                                                     for i in ints))
    else:
        body = vfield(1, dtype) + field(7, b"".join(varint(i) for i in ints))  # packed
    attr = field(1, b"value") + field(2, field(8, body))
    return field(1, name.encode()) + field(2, b"Const") + field(5, attr)


def node(name, op, *inputs):
    return field(1, name.encode()) + field(2, op.encode()) + b"".join(field(3, i.encode()) for i in inputs)


def saved_model(nodes, tags=(b"serve",)):
    graph = b"".join(field(1, n) for n in nodes)
    meta_info = b"".join(field(4, t) for t in tags)
    return field(2, field(1, meta_info) + field(2, graph))


# --- tests ----------------------------------------------------------------------------------
def test_real_export_from_tensorflow():
    assert read_attention_heads(SAVED_MODEL, 32) == 4
    assert read_attention_heads(SAVED_MODEL, 48) is None  # heads * head_size must be hidden


@pytest.mark.parametrize("content", [False, True], ids=["int_val", "tensor_content"])
def test_static_batch_const_shape(content):
    graph = saved_model([const(SCOPE + "Reshape/shape", [8, 128, 12, 64], content),
                         node(SCOPE + "Reshape", "Reshape", SCOPE + "query/BiasAdd", SCOPE + "Reshape/shape")])
    assert heads_from_graph_bytes(graph, 768) == 12


def test_dynamic_batch_pack_of_consts():
    graph = saved_model([
        node(SCOPE + "strided_slice", "StridedSlice", "bert/Shape"),
        const(SCOPE + "Reshape/shape/1", [128]), const(SCOPE + "Reshape/shape/2", [16]),
        const(SCOPE + "Reshape/shape/3", [64]),
        node(SCOPE + "Reshape/shape", "Pack", SCOPE + "strided_slice", SCOPE + "Reshape/shape/1",
             SCOPE + "Reshape/shape/2", SCOPE + "Reshape/shape/3"),
        node(SCOPE + "Reshape", "Reshape", SCOPE + "query/BiasAdd", SCOPE + "Reshape/shape:0")])
    assert heads_from_graph_bytes(graph, 1024) == 16


def test_einsum_kernel_reshape():
    """bert-tensorflow 1.0.4's dense_layer_3d: kernel [hidden, heads * size] -> [hidden, heads, size]."""
    graph = saved_model([const(SCOPE + "query/Reshape/shape", [384, 12, 32]),
                         node(SCOPE + "query/Reshape", "Reshape", SCOPE + "query/kernel/read",
                              SCOPE + "query/Reshape/shape")])
    assert heads_from_graph_bytes(graph, 384) == 12


def test_serve_tag_preferred_over_other_meta_graphs():
    train = saved_model([const(SCOPE + "Reshape/shape", [1, 2, 2, 16]),
                         node(SCOPE + "Reshape", "Reshape", "x", SCOPE + "Reshape/shape")], tags=(b"train",))
    serve = saved_model([const(SCOPE + "Reshape/shape", [1, 2, 4, 8]),
                         node(SCOPE + "Reshape", "Reshape", "x", SCOPE + "Reshape/shape")])
    assert heads_from_graph_bytes(train + serve, 32) == 4


@pytest.mark.parametrize("nodes", [
    [],                                                                     # empty graph
    [const("other/Reshape/shape", [1, 2, 4, 8]), node("other/Reshape", "Reshape", "x", "other/Reshape/shape")],
    [node(SCOPE + "Reshape", "Reshape", "x", SCOPE + "missing")],           # shape input absent
    [const(SCOPE + "Reshape/shape", [-1, 32]), node(SCOPE + "Reshape", "Reshape", "x", SCOPE + "Reshape/shape")],
    [const(SCOPE + "Reshape/shape", [1, 2, 4, 8], dtype=1),                 # a float tensor
     node(SCOPE + "Reshape", "Reshape", "x", SCOPE + "Reshape/shape")],
    [const(SCOPE + "a", [1, 2, 4, 8]), node(SCOPE + "R1", "Reshape", "x", SCOPE + "a"),   # disagree
     const(SCOPE + "b", [1, 2, 2, 16]), node(SCOPE + "R2", "Reshape", "x", SCOPE + "b")],
], ids=["empty", "outside-scope", "no-shape-node", "2-d", "float", "disagreeing"])
def test_graphs_that_do_not_say(nodes):
    assert heads_from_graph_bytes(saved_model(nodes), 32) is None


@pytest.mark.parametrize("data", [b"", b"\xff" * 20, b"\x12\x05ab", os.urandom(4096)])
def test_malformed_bytes_give_none(tmp_path, data):
    shutil.copytree(SAVED_MODEL, tmp_path / "m")
    (tmp_path / "m" / "saved_model.pb").write_bytes(data)
    assert read_attention_heads(str(tmp_path / "m"), 32) is None


def test_non_regular_graph_file_gives_none(tmp_path):
    (tmp_path / "m").mkdir()
    os.mkfifo(tmp_path / "m" / "saved_model.pb")  # must not hang
    assert read_attention_heads(str(tmp_path / "m"), 32) is None
    assert read_attention_heads(str(tmp_path / "absent"), 32) is None


def test_node_count_is_bounded(monkeypatch):
    """A graph of more nodes than any BERT serving graph has is not walked to its end."""
    import bertconvert.checkpoint.saved_model as module
    monkeypatch.setattr(module, "MAX_NODES", 10)
    filler = [node(f"n{i}", "NoOp") for i in range(20)]
    shape = [const(SCOPE + "Reshape/shape", [1, 2, 4, 8]),
             node(SCOPE + "Reshape", "Reshape", "x", SCOPE + "Reshape/shape")]
    assert heads_from_graph_bytes(saved_model(shape + filler[:5]), 32) == 4
    assert heads_from_graph_bytes(saved_model(filler + shape), 32) is None
