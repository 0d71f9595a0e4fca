"""Cross-checks against TensorFlow itself: its checkpoints read by us, ours read by it.

Skipped (with a reason) where TensorFlow is not installed; the fixture-based tests in
test_checkpoint_reader.py cover reading there.
"""

import numpy as np
import pytest

pytestmark = pytest.mark.tf
tf = pytest.importorskip("tensorflow", reason="TensorFlow is needed for live cross-checks")

from bertconvert.checkpoint import list_variables, load_checkpoint, save_checkpoint  # noqa: E402
from bertconvert.checkpoint.table import build_table, read_table  # noqa: E402

DTYPES = ["float32", "float16", "bfloat16", "float64", "int8", "int16", "int32", "int64",
          "uint8", "uint16", "uint32", "uint64", "bool", "complex64", "complex128"]


def _random(rng, dtype, shape):
    np_dtype = tf.as_dtype(dtype).as_numpy_dtype
    if dtype == "bool":
        return rng.integers(0, 2, size=shape).astype(bool)
    if dtype.startswith(("int", "uint")):
        info = np.iinfo(np_dtype)
        return rng.integers(info.min, info.max, size=shape, dtype=np_dtype, endpoint=True)
    if dtype.startswith("complex"):
        return (rng.standard_normal(shape) + 1j * rng.standard_normal(shape)).astype(np_dtype)
    return rng.standard_normal(shape).astype(np.float32).astype(np_dtype)


def _assert_same_as_tensorflow(path):
    """Our reader and tf.train.load_checkpoint agree on names, shapes, dtypes and bytes."""
    ours = load_checkpoint(path)
    theirs = tf.train.load_checkpoint(path)
    assert ours.get_variable_to_shape_map() == theirs.get_variable_to_shape_map()
    their_dtypes = theirs.get_variable_to_dtype_map()
    checked = 0
    for name in ours:
        mine, reference = ours.get_tensor(name), theirs.get_tensor(name)
        if their_dtypes[name] == tf.string:  # bytes for a scalar, else an object array
            assert type(mine) is type(reference), name
            assert np.asarray(mine).tolist() == np.asarray(reference).tolist(), name
            continue
        reference = np.asarray(reference)
        assert mine.dtype == reference.dtype, name
        assert mine.shape == reference.shape, name
        assert mine.tobytes() == reference.tobytes(), name
        checked += 1
    assert list_variables(path) == tf.train.list_variables(path)
    return checked


def test_raw_savev2_every_dtype(tmp_path):
    rng = np.random.default_rng(11)
    names, tensors = [], []
    for dtype in DTYPES:
        for shape in [(5, 3), (), (0,), (2, 0, 3), (1, 1, 1, 4)]:
            names.append(f"{dtype}/{len(shape)}d_{'x'.join(map(str, shape)) or 'scalar'}")
            tensors.append(tf.constant(_random(rng, dtype, shape), dtype=dtype))
    prefix = str(tmp_path / "raw")
    tf.raw_ops.SaveV2(prefix=prefix, tensor_names=names, shape_and_slices=[""] * len(names),
                      tensors=tensors)
    assert _assert_same_as_tensorflow(prefix) == len(names)


def test_v1_saver_sharded_and_partitioned(tmp_path):
    rng = np.random.default_rng(12)
    graph = tf.Graph()
    with graph.as_default():
        for device in ("/cpu:0", "/cpu:1", "/cpu:2"):
            with tf.device(device):
                scope = device.strip("/").replace(":", "")
                tf.compat.v1.get_variable(f"{scope}/w", initializer=_random(rng, "float32", (6, 5)))
                tf.compat.v1.get_variable(
                    f"{scope}/split", initializer=tf.constant(_random(rng, "float32", (11, 3))),
                    partitioner=tf.compat.v1.fixed_size_partitioner(4))
        saver = tf.compat.v1.train.Saver(sharded=True)
        config = tf.compat.v1.ConfigProto(device_count={"CPU": 3})
        with tf.compat.v1.Session(graph=graph, config=config) as sess:
            sess.run(tf.compat.v1.global_variables_initializer())
            prefix = saver.save(sess, str(tmp_path / "model.ckpt"), write_meta_graph=False)
    reader = load_checkpoint(prefix)
    assert len(reader.files) == 4  # index + three shards
    assert len(reader.entry("cpu1/split").slices) == 4
    assert _assert_same_as_tensorflow(prefix) == 6
    assert load_checkpoint(str(tmp_path)).prefix == prefix  # via the state file


def test_object_based_checkpoint_with_sharding_policy(tmp_path):
    rng = np.random.default_rng(13)
    module = tf.Module()
    module.dense = [tf.Variable(_random(rng, "float32", (8, 8))) for _ in range(5)]
    module.half = tf.Variable(_random(rng, "bfloat16", (3, 3)))
    options = tf.train.CheckpointOptions(
        experimental_sharding_callback=tf.train.experimental.MaxShardSizePolicy(max_shard_size=400))
    ckpt = tf.train.Checkpoint(model=module, step=tf.Variable(3, dtype=tf.int64))
    prefix = ckpt.save(str(tmp_path / "ckpt"), options=options)
    assert len(load_checkpoint(prefix).files) > 3
    assert _assert_same_as_tensorflow(prefix) == 8  # 5 dense, half, step, save_counter


def test_tensorflow_reads_what_we_write(tmp_path):
    rng = np.random.default_rng(14)
    tensors = {}
    for dtype in DTYPES:
        for shape in [(4, 3), (), (0, 2)]:
            tensors[f"{dtype}/{len(shape)}d" + ("_empty" if 0 in shape else "")] = \
                np.asarray(_random(rng, dtype, shape))
    tensors["bert/embeddings/word_embeddings"] = rng.standard_normal((99, 32)).astype(np.float32)
    tensors["ünïcode/näme"] = np.arange(3, dtype=np.int32)
    prefix = str(tmp_path / "ours" / "bert_model.ckpt")
    save_checkpoint(prefix, tensors)
    theirs = tf.train.load_checkpoint(prefix)
    assert theirs.get_variable_to_shape_map() == {n: list(a.shape) for n, a in tensors.items()}
    for name, array in tensors.items():
        value = np.asarray(theirs.get_tensor(name))
        assert value.dtype == array.dtype and value.shape == array.shape, name
        assert value.tobytes() == array.tobytes(), name
    # TensorFlow's own restore path (not only the inspection reader) accepts it too.
    restored = tf.raw_ops.RestoreV2(prefix=prefix, tensor_names=["bert/embeddings/word_embeddings"],
                                    shape_and_slices=[""], dtypes=[tf.float32])
    assert restored[0].numpy().tobytes() == tensors["bert/embeddings/word_embeddings"].tobytes()


def test_tensorflow_reads_multi_block_tables_and_empty_checkpoints(tmp_path):
    prefix = str(tmp_path / "many")
    tensors = {f"layer_{i:03d}/kernel": np.full((2,), i, np.float32) for i in range(300)}
    save_checkpoint(prefix, tensors)
    with open(prefix + ".index", "rb") as f:
        items = read_table(f.read())
    with open(prefix + ".index", "wb") as f:
        f.write(build_table(items, block_size=100, restart_interval=5))
    assert _assert_same_as_tensorflow(prefix) == 300
    empty = str(tmp_path / "empty")
    save_checkpoint(empty, {})
    assert tf.train.list_variables(empty) == [] and list_variables(empty) == []
