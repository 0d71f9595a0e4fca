"""TF2 object graphs, string tensors and SavedModel variables, read without TensorFlow.

The fixture-based tests compare against what TensorFlow's own protobuf classes parsed when
fixtures/make_tf_checkpoints.py wrote the checkpoints (``expected_graph.json``), so they
run without TensorFlow; the ``tf``-marked tests build fresh object structures with
TensorFlow and compare against its parser and reader live.
"""
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bertconvert.checkpoint import (is_saved_model, load_checkpoint, parse_object_graph,
                                    read_object_graph, save_checkpoint)
from bertconvert.checkpoint.dtypes import DT_STRING
from bertconvert.checkpoint.object_graph import (OBJECT_GRAPH_KEY, ObjectGraph,
                                                 escape_local_name, is_optimizer_slot_key,
                                                 object_path_of_key)
from bertconvert.checkpoint.paths import resolve_prefix, shard_path
from bertconvert.checkpoint.proto import encode_entry, encode_header, encode_varint
from bertconvert.checkpoint.strings import decode_string_tensor, encode_string_tensor
from bertconvert.checkpoint.table import build_table
from bertconvert.errors import (CheckpointError, CheckpointFormatError, CheckpointNotFoundError,
                                ChecksumMismatchError, SavedModelVariablesError)

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
FIXTURES = os.path.join(ROOT, "fixtures", "tf_checkpoints")
GRAPH_CASES = sorted(c for c in os.listdir(FIXTURES)
                     if os.path.isfile(os.path.join(FIXTURES, c, "expected_graph.json")))


def _expected_graph(case):
    with open(os.path.join(FIXTURES, case, "expected_graph.json"), encoding="utf-8") as f:
        return json.load(f)


def _graph_bytes(case):
    return load_checkpoint(os.path.join(FIXTURES, case)).get_tensor(OBJECT_GRAPH_KEY)


# --- protobuf building blocks for hand-made (hostile) graphs ---------------------------
def _bytes_field(number, payload):
    return encode_varint(number << 3 | 2) + encode_varint(len(payload)) + payload


def _int_field(number, value):
    return encode_varint(number << 3) + encode_varint(value)


def _node(children=(), keys=(), slots=()):
    """A TrackableObject: children [(node_id, name)], attribute keys, slots (orig, name, slot)."""
    out = b"".join(_bytes_field(1, _int_field(1, i) + _bytes_field(2, n.encode()))
                   for i, n in children)
    out += b"".join(_bytes_field(2, _bytes_field(1, b"VARIABLE_VALUE") + _bytes_field(3, k.encode()))
                    for k in keys)
    out += b"".join(_bytes_field(3, _int_field(1, o) + _bytes_field(2, n.encode()) + _int_field(3, s))
                    for o, n, s in slots)
    return out


def _graph(*nodes):
    return b"".join(_bytes_field(1, node) for node in nodes)


def _write_bundle(prefix, tensors):
    """A one-shard checkpoint from ``{name: (tf_dtype, shape, payload, masked_crc)}``."""
    items, data = [(b"", encode_header(num_shards=1))], b""
    for name in sorted(tensors):
        dtype, shape, payload, crc = tensors[name]
        items.append((name.encode(), encode_entry(dtype, shape, 0, len(data), len(payload), crc)))
        data += payload
    with open(shard_path(prefix, 0, 1), "wb") as f:
        f.write(data)
    with open(prefix + ".index", "wb") as f:
        f.write(build_table(items))
    return prefix


def _string_tensor(values, shape=None):
    payload, crc = encode_string_tensor(values)
    return DT_STRING, (len(values),) if shape is None else shape, payload, crc


# --- string tensors -------------------------------------------------------------------
@pytest.mark.parametrize("mmap", [True, False])
@pytest.mark.parametrize("verify", [True, False])
def test_string_fixture_reads_as_tensorflow_read_it(mmap, verify):
    reader = load_checkpoint(os.path.join(FIXTURES, "savev2_dtypes"), mmap=mmap,
                             verify_checksums=verify)
    value = reader.get_tensor("strings")
    assert value.dtype == object and value.shape == (3,)
    assert value.tolist() == [b"alpha", b"", b"gamma"]


@pytest.mark.parametrize("values", [[], [b""], [b"x"], [b"a", b"", b"bc"], [b"\xff" * 300],
                                    ["ünï".encode(), b"\0" * 5, b"y" * 20000]])
def test_string_encoding_round_trips(values):
    payload, crc = encode_string_tensor(values)
    assert decode_string_tensor(payload, len(values), crc) == values
    assert decode_string_tensor(payload, len(values), None) == values


def test_string_checksums_are_checked():
    payload, crc = encode_string_tensor([b"alpha", b"", b"gamma"])
    body = bytearray(payload)
    body[-1] ^= 1  # a string byte
    with pytest.raises(ChecksumMismatchError, match="crc32c"):
        decode_string_tensor(bytes(body), 3, crc, "string tensor 's'")
    assert decode_string_tensor(bytes(body), 3, None)[2] == b"gamm`"  # unchecked on request
    lengths = bytearray(payload)
    lengths[3] ^= 1  # the lengths checksum itself
    with pytest.raises(ChecksumMismatchError, match="lengths"):
        decode_string_tensor(bytes(lengths), 3, crc)


@pytest.mark.parametrize("payload,count,match", [
    (b"\x05\x00\x05" + b"\0" * 4 + b"alphagamm", 3, "add up to 10 bytes"),    # one byte short
    (b"\x05\x00\x05" + b"\0" * 4 + b"alphagammaX", 3, "add up to 10 bytes"),  # one byte over
    (b"\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01" + b"\0" * 4, 1, "add up to"),  # 2**64-1 bytes
    (b"\x80\x80\x80" + b"\0" * 4, 1, "run past"),                                # unterminated
    (b"\x01\x01", 1, "need at least 5 bytes"),
    (b"\0" * 16, 1 << 60, "need at least"),  # a hostile element count allocates nothing
])
def test_string_layout_errors(payload, count, match):
    with pytest.raises(CheckpointFormatError, match=match):
        decode_string_tensor(payload, count, None)


def test_hostile_string_entries_in_a_checkpoint(tmp_path):
    payload, crc = encode_string_tensor([b"ab", b"c"])
    prefix = _write_bundle(str(tmp_path / "s"), {
        "ok": (DT_STRING, (2, 1), payload, crc),
        "scalar": _string_tensor([b"just bytes"], ()),
        "huge": (DT_STRING, (1 << 40,), payload, crc),
        "badcrc": (DT_STRING, (2,), payload, crc ^ 1),
        "short": (DT_STRING, (3,), payload, crc),
    })
    reader = load_checkpoint(prefix)
    ok = reader.get_tensor("ok")
    assert ok.shape == (2, 1) and ok.tolist() == [[b"ab"], [b"c"]]
    assert reader.get_tensor("scalar") == b"just bytes"
    with pytest.raises(CheckpointFormatError, match="needs? (at least )?[0-9]+"):
        reader.get_tensor("huge")
    with pytest.raises(ChecksumMismatchError, match="'badcrc'"):
        reader.get_tensor("badcrc")
    assert load_checkpoint(prefix, verify_checksums=False).get_tensor("badcrc").tolist() == [
        b"ab", b"c"]
    with pytest.raises(CheckpointFormatError, match="'short'"):
        reader.get_tensor("short")


def test_truncated_string_shard_is_named(tmp_path):
    prefix = _write_bundle(str(tmp_path / "s"), {"s": _string_tensor([b"abc", b"defgh"])})
    os.truncate(shard_path(prefix, 0, 1), 8)
    with pytest.raises(ChecksumMismatchError, match="truncated"):
        load_checkpoint(prefix).get_tensor("s")


# --- the object graph, against what TensorFlow's parser recorded ------------------------
def test_graph_fixtures_present():
    assert {"object_based", "object_graph", "saved_model"} <= set(GRAPH_CASES)


@pytest.mark.parametrize("case", GRAPH_CASES)
def test_nodes_match_tensorflows_parse(case):
    expected = _expected_graph(case)["nodes"]
    graph = read_object_graph(load_checkpoint(os.path.join(FIXTURES, case)))
    ours = [{"children": [[c.node_id, c.local_name] for c in node.children],
             "attributes": [[a.name, a.full_name, a.checkpoint_key] for a in node.attributes],
             "slot_variables": [[s.original_variable_node_id, s.slot_name,
                                 s.slot_variable_node_id] for s in node.slot_variables],
             "registered_saver": node.registered_saver,
             "has_checkpoint_values": node.has_checkpoint_values} for node in graph.nodes]
    assert ours == expected


@pytest.mark.parametrize("case", GRAPH_CASES)
def test_variable_paths_match_the_reference(case):
    expected = _expected_graph(case)
    reader = load_checkpoint(os.path.join(FIXTURES, case))
    graph = read_object_graph(reader)
    paths = graph.variable_paths()
    assert paths == expected["variable_paths"]
    for key, found in paths.items():
        assert key in reader  # every key the graph names is a tensor of the checkpoint
        own = object_path_of_key(key)
        assert own in found  # TensorFlow named the tensor after one of the paths...
        assert own.count("/") == found[0].count("/")  # ...a shortest one
    slots = {key: {"original_node": s.original_node, "slot_name": s.slot_name,
                   "slot_node": s.slot_node, "optimizer_node": s.optimizer_node}
             for key, s in graph.slot_variables().items()}
    assert slots == expected["slots"]


def test_shared_variable_has_every_path():
    graph = read_object_graph(load_checkpoint(os.path.join(FIXTURES, "object_graph")))
    key = "encoder/_embedding_layer/embeddings/.ATTRIBUTES/VARIABLE_VALUE"
    paths = graph.paths(key)
    # shortest first, then sorted; reached through both roots, both aliases and the head
    assert paths[:3] == ["encoder/_embedding_layer/embeddings",
                         "encoder/layer_with_weights-0/embeddings",
                         "model/masked_lm/embedding_table"]
    assert "model/encoder_network/layer_with_weights-0/embeddings" in paths
    assert "encoder/owner/masked_lm/embedding_table" in paths  # through the cycle, once
    assert len(paths) == len(set(paths))
    # escaped local names, as in checkpoint keys: '/' -> '.S', '.' -> '..'
    assert graph.paths("model/masked_lm/output_bias.Sbias/.ATTRIBUTES/VARIABLE_VALUE")[0] == \
        "model/masked_lm/output_bias.Sbias"
    assert "model/masked_lm/dense..v2/kernel" in graph.paths(
        "model/masked_lm/dense..v2/kernel/.ATTRIBUTES/VARIABLE_VALUE")
    assert graph.node_paths(0) == [""]


def test_optimizer_state_is_identified():
    reader = load_checkpoint(os.path.join(FIXTURES, "object_graph"))
    graph = read_object_graph(reader)
    state = {key for key in graph.checkpoint_keys() if graph.is_optimizer_state(key)}
    slots = set(graph.slot_variables())
    assert len(slots) == 4 and all(".OPTIMIZER_SLOT/optimizer/" in k for k in slots)
    assert state == slots | {"optimizer/beta1_power/.ATTRIBUTES/VARIABLE_VALUE",
                             "optimizer/beta2_power/.ATTRIBUTES/VARIABLE_VALUE"}
    assert all(graph.is_slot(k) for k in slots)
    assert not graph.is_slot("optimizer/beta1_power/.ATTRIBUTES/VARIABLE_VALUE")
    slot = graph.slot_variables()[
        "encoder/layer_with_weights-1/kernel/.OPTIMIZER_SLOT/optimizer/m/.ATTRIBUTES/VARIABLE_VALUE"]
    assert slot.slot_name == "m"
    assert graph.node_of("encoder/layer_with_weights-1/kernel/.ATTRIBUTES/VARIABLE_VALUE") == \
        slot.original_node
    assert graph.node_paths(slot.optimizer_node) == ["optimizer"]
    # keys the graph does not know are judged by name
    assert graph.is_optimizer_state("x/.OPTIMIZER_SLOT/opt/m/.ATTRIBUTES/VARIABLE_VALUE")
    assert not graph.is_optimizer_state("bert/pooler/dense/kernel")


def test_tf1_checkpoint_has_no_graph():
    assert read_object_graph(load_checkpoint(os.path.join(FIXTURES, "saver_v1"))) is None


def test_name_helpers():
    assert escape_local_name("output_bias/bias") == "output_bias.Sbias"
    assert escape_local_name("a.b") == "a..b"
    assert object_path_of_key("model/w/.ATTRIBUTES/VARIABLE_VALUE") == "model/w"
    assert object_path_of_key("bert/pooler/dense/bias") is None
    assert is_optimizer_slot_key("m/w/.OPTIMIZER_SLOT/optimizer/v/.ATTRIBUTES/VARIABLE_VALUE")
    assert not is_optimizer_slot_key("bert/encoder/layer_0/output/dense/kernel/adam_m")


# --- hostile graphs --------------------------------------------------------------------
def test_cyclic_children_give_simple_paths():
    data = _graph(_node([(1, "a")]),
                  _node([(2, "b"), (1, "self")]),
                  _node([(1, "back"), (0, "root"), (3, "leaf")]),
                  _node(keys=["a/b/leaf/.ATTRIBUTES/VARIABLE_VALUE"]))
    graph = parse_object_graph(data)
    assert graph.variable_paths() == {"a/b/leaf/.ATTRIBUTES/VARIABLE_VALUE": ["a/b/leaf"]}
    assert not graph.is_optimizer_state("a/b/leaf/.ATTRIBUTES/VARIABLE_VALUE")


@pytest.mark.parametrize("nodes,match", [
    ([_node([(5, "x")])], "refers to node 5"),
    ([_node([((1 << 64) - 1, "neg")])], "refers to node -1"),
    ([_node(slots=[(0, "m", 9)])], "refers to node 9"),
    ([_node([(1, "a"), (2, "b")]), _node(keys=["k"]), _node(keys=["k"])], "both node 1 and node 2"),
])
def test_bad_node_references(nodes, match):
    with pytest.raises(CheckpointFormatError, match=match):
        parse_object_graph(_graph(*nodes))


@pytest.mark.parametrize("data,match", [
    (b"", "no nodes"),
    (b"\x0a\x05\x0a\x03", "not a valid TrackableObjectGraph"),  # truncated inner message
    (b"\x08\x01", "wire type"),                                   # nodes as a varint
    (_graph(b"\x0a\x02\x08"), "not a valid"),                     # truncated child varint
    (b"\x0a\xff\xff\xff\xff\x0f", "not a valid"),                 # length past the end
    (_graph(b"\x12\x02\x1a\x05"), "not a valid"),
])
def test_malformed_protobuf(data, match):
    with pytest.raises(CheckpointFormatError, match=match):
        parse_object_graph(data)


def test_exponentially_many_paths_are_refused():
    # 40 diamonds in a row (80 deep, under MAX_DEPTH): 2**40 paths to the last node; must
    # fail fast, not hang
    nodes = []
    for i in range(40):
        nodes.append(_node([(2 * i + 1, "l"), (2 * i + 2, "r")]))
        nodes.append(_node([(2 * i + 2, "x")]))
    nodes.append(_node(keys=["end/.ATTRIBUTES/VARIABLE_VALUE"]))
    graph = parse_object_graph(_graph(*nodes))
    with pytest.raises(CheckpointFormatError, match="too many paths"):
        graph.variable_paths()


def test_too_deep_and_many_edges():
    chain = [_node([(i + 1, "c")]) for i in range(150)] + [_node(keys=["deep"])]
    with pytest.raises(CheckpointFormatError, match="deeper than"):
        parse_object_graph(_graph(*chain)).variable_paths()
    # a node with many edges to itself and its parent: skipped, but bounded work
    loops = _graph(_node([(1, "a")]), _node([(1, "s")] * 10000 + [(0, "up")] * 10000
                                            + [(2, "v")]), _node(keys=["a/v/k"]))
    assert parse_object_graph(loops).variable_paths() == {"a/v/k": ["a/v"]}
    graph = ObjectGraph(parse_object_graph(loops).nodes, max_work=1000)
    with pytest.raises(CheckpointFormatError, match="too many paths"):
        graph.variable_paths()


def test_every_truncation_of_a_real_graph():
    # Cut anywhere, the graph is either malformed protobuf or lacks nodes the root refers
    # to (TensorFlow numbers nodes breadth-first): always a named error.
    data = _graph_bytes("object_graph")
    assert parse_object_graph(data).variable_paths()
    for end in range(len(data)):
        with pytest.raises(CheckpointFormatError):
            parse_object_graph(data[:end]).variable_paths()


@settings(max_examples=300, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_fuzzed_graphs_give_a_graph_or_a_format_error(data):
    original = bytearray(_graph_bytes("object_graph"))
    for _ in range(data.draw(st.integers(1, 8))):
        pos = data.draw(st.integers(0, len(original) - 1))
        original[pos] = data.draw(st.integers(0, 255))
    try:
        graph = parse_object_graph(bytes(original))
        for key in graph.variable_paths():
            graph.is_optimizer_state(key)
    except CheckpointFormatError:
        pass


def test_graph_tensor_of_the_wrong_kind(tmp_path):
    save_checkpoint(str(tmp_path / "num" / "c"), {OBJECT_GRAPH_KEY: np.zeros(3, np.float32)})
    with pytest.raises(CheckpointFormatError, match="scalar string"):
        read_object_graph(load_checkpoint(str(tmp_path / "num")))
    prefix = _write_bundle(str(tmp_path / "bad"), {
        OBJECT_GRAPH_KEY: _string_tensor([_graph(_node([(7, "x")]))], ())})
    with pytest.raises(CheckpointFormatError, match=r"bad: .*refers to node 7"):
        read_object_graph(load_checkpoint(prefix))


def test_object_graph_never_imports_tensorflow():
    script = textwrap.dedent(f"""
        import sys
        sys.modules["tensorflow"] = None
        from bertconvert.checkpoint import load_checkpoint, read_object_graph
        graph = read_object_graph(load_checkpoint({os.path.join(FIXTURES, "saved_model")!r}))
        assert graph.variable_paths()
        print("ok")
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


# --- SavedModel directories -------------------------------------------------------------
def test_saved_model_directory_resolves_to_its_variables():
    directory = os.path.join(FIXTURES, "saved_model")
    assert is_saved_model(directory)
    assert is_saved_model(os.path.join(directory, "saved_model.pb"))
    assert not is_saved_model(os.path.join(FIXTURES, "object_graph"))
    assert not is_saved_model(os.path.join(directory, "variables", "variables.index"))
    expected = os.path.join(directory, "variables", "variables")
    assert resolve_prefix(directory) == expected
    assert resolve_prefix(os.path.join(directory, "saved_model.pb")) == expected
    assert resolve_prefix(os.path.join(directory, "variables")) == expected
    reader = load_checkpoint(directory)
    assert reader.prefix == expected
    paths = read_object_graph(reader).variable_paths()
    assert "variables_list/0" in paths["masked_lm/embedding_table/.ATTRIBUTES/VARIABLE_VALUE"]


def test_saved_model_without_variables(tmp_path):
    bare = tmp_path / "bare"
    bare.mkdir()
    shutil.copy(os.path.join(FIXTURES, "saved_model", "saved_model.pb"), bare)
    with pytest.raises(SavedModelVariablesError) as info:
        load_checkpoint(str(bare))
    message = str(info.value)
    assert "SavedModel" in message and "no variables/ directory" in message
    assert "saved_model.pb" in message and "variables/variables.index" in message
    assert isinstance(info.value, CheckpointNotFoundError)
    (bare / "variables").mkdir()
    (bare / "variables" / "stray.txt").write_text("x")
    with pytest.raises(SavedModelVariablesError, match=r"variables/ directory holds stray\.txt"):
        resolve_prefix(str(bare))


def test_saved_model_dir_with_its_own_checkpoint_state(tmp_path):
    """An explicit 'checkpoint' state file still wins over the SavedModel's variables."""
    directory = tmp_path / "both"
    shutil.copytree(os.path.join(FIXTURES, "saved_model"), directory)
    for name in os.listdir(os.path.join(FIXTURES, "object_graph")):
        if name.startswith("ckpt"):
            shutil.copy(os.path.join(FIXTURES, "object_graph", name), directory)
    (directory / "checkpoint").write_text('model_checkpoint_path: "ckpt"\n')
    assert resolve_prefix(str(directory)) == str(directory / "ckpt")


# --- live cross-checks against TensorFlow ---------------------------------------------
@pytest.fixture
def maker(tf):
    """fixtures/make_tf_checkpoints.py as a module: its model builders and its reference
    path enumeration over TensorFlow's own protobuf parse."""
    spec = importlib.util.spec_from_file_location(
        "make_tf_checkpoints", os.path.join(ROOT, "fixtures", "make_tf_checkpoints.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _check_against_tensorflow(tf, maker, path):
    """Our graph, paths, slots and string tensor agree with TensorFlow's for ``path``."""
    theirs = tf.train.load_checkpoint(path)
    ours = load_checkpoint(path)
    data = theirs.get_tensor(OBJECT_GRAPH_KEY)
    assert ours.get_tensor(OBJECT_GRAPH_KEY) == data
    graph = read_object_graph(ours)
    expected = maker.describe_object_graph(data)
    paths = graph.variable_paths()
    assert paths == expected["variable_paths"]
    assert {k: s.slot_name for k, s in graph.slot_variables().items()} == {
        k: s["slot_name"] for k, s in expected["slots"].items()}
    assert set(paths) | {OBJECT_GRAPH_KEY} == set(theirs.get_variable_to_shape_map())
    return graph


@pytest.mark.tf
@pytest.mark.parametrize("root", ["model", "items"])
def test_checkpoint_roots_against_tensorflow(tf, maker, tmp_path, root):
    rng = np.random.default_rng(5)
    model, encoder, head = maker.build_object_graph_model(rng)
    optimizer = maker.adam_step([encoder._transformer_layers[1].bias, head.embedding_table])
    if root == "model":
        ckpt = tf.train.Checkpoint(model=model, optimizer=optimizer)
    else:  # how Model Garden saves: Checkpoint(**checkpoint_items)
        items = {"encoder": encoder, "masked_lm": head, "optimizer": optimizer,
                 "global_step": tf.Variable(3, dtype=tf.int64)}
        ckpt = tf.train.Checkpoint(**items)
    path = ckpt.save(str(tmp_path / "ckpt"))
    graph = _check_against_tensorflow(tf, maker, path)
    keys = graph.checkpoint_keys()
    slots = [k for k in keys if graph.is_slot(k)]
    assert len(slots) == 4 and all(graph.is_optimizer_state(k) for k in slots)
    assert graph.is_optimizer_state("optimizer/beta1_power/.ATTRIBUTES/VARIABLE_VALUE")
    weights = [k for k in keys if not graph.is_optimizer_state(k)]
    table = next(k for k in weights if "embedding" in k)
    if root == "model":
        assert "model/encoder_network/_embedding_layer/embeddings" in graph.paths(table)
    else:
        assert {"encoder/layer_with_weights-0/embeddings",
                "masked_lm/embedding_table"} <= set(graph.paths(table))


@pytest.mark.tf
def test_keras_layers_and_keras_optimizer(tf, maker, tmp_path):
    dense = tf.keras.layers.Dense(3)
    dense.build((None, 2))
    wrapper = tf.Module()
    wrapper.layer = dense
    wrapper.same_kernel = dense.kernel  # shared: two paths
    optimizer = tf.keras.optimizers.Adam()
    optimizer.apply_gradients([(tf.ones_like(v), v) for v in dense.trainable_variables])
    path = tf.train.Checkpoint(model=wrapper, optimizer=optimizer).save(str(tmp_path / "k"))
    graph = _check_against_tensorflow(tf, maker, path)
    kernel = next(k for k in graph.checkpoint_keys() if k.endswith("kernel/.ATTRIBUTES/VARIABLE_VALUE"))
    assert "model/same_kernel" in graph.paths(kernel)
    # the Keras optimizer also tracks the model's variables; they stay model state
    assert any(p.startswith("optimizer/") for p in graph.paths(kernel))
    assert not graph.is_optimizer_state(kernel)
    state = [k for k in graph.checkpoint_keys() if graph.is_optimizer_state(k)]
    assert state and all(k.startswith("optimizer/") for k in state)
    assert len([k for k in state if "_variables" in k]) >= 4  # m and v for kernel and bias


@pytest.mark.tf
def test_saved_model_against_tensorflow(tf, maker, tmp_path):
    module = tf.Module()
    module.encoder = tf.Module()
    module.encoder.w = tf.Variable(np.arange(6, dtype=np.float32).reshape(2, 3))
    module.variables_list = [module.encoder.w, tf.Variable([1.0, 2.0])]
    tf.saved_model.save(module, str(tmp_path / "sm"))
    directory = str(tmp_path / "sm")
    assert is_saved_model(directory)
    reader = load_checkpoint(directory)
    assert reader.prefix == os.path.join(directory, "variables", "variables")
    graph = _check_against_tensorflow(tf, maker, reader.prefix)
    theirs = tf.train.load_checkpoint(reader.prefix)
    for key in graph.checkpoint_keys():
        assert reader.get_tensor(key).tobytes() == np.asarray(theirs.get_tensor(key)).tobytes()
    w_key = next(k for k, p in graph.variable_paths().items() if "encoder/w" in p)
    assert graph.paths(w_key) == ["encoder/w", "variables_list/0"]


@pytest.mark.tf
def test_string_tensors_against_tensorflow(tf, tmp_path):
    values = {
        "scalar": tf.constant(b"one"), "empty": tf.constant([], tf.string),
        "matrix": tf.constant([[b"a", b""], [b"\xff" * 200, "ünï".encode()]]),
        "long": tf.constant([b"x" * 70000, b"y"]),
    }
    prefix = str(tmp_path / "s")
    tf.raw_ops.SaveV2(prefix=prefix, tensor_names=list(values), shape_and_slices=[""] * len(values),
                      tensors=list(values.values()))
    theirs, ours = tf.train.load_checkpoint(prefix), load_checkpoint(prefix)
    for name in values:
        mine, reference = ours.get_tensor(name), theirs.get_tensor(name)
        assert type(mine) is type(reference), name
        if isinstance(reference, bytes):
            assert mine == reference
        else:
            assert mine.dtype == reference.dtype == object and mine.shape == reference.shape
            assert mine.tolist() == reference.tolist(), name
    # and the other way: TensorFlow accepts the layout and checksums we encode
    written = _write_bundle(str(tmp_path / "ours"), {
        "v": _string_tensor([b"abc", b"", b"z" * 300]), "s": _string_tensor([b"q"], ())})
    back = tf.train.load_checkpoint(written)
    assert back.get_tensor("v").tolist() == [b"abc", b"", b"z" * 300]
    assert back.get_tensor("s") == b"q"


def test_errors_are_checkpoint_errors():
    assert issubclass(SavedModelVariablesError, CheckpointError)
