"""TensorFlow checkpoints (the V2 "tensor bundle" format) read and written without TensorFlow.

The API mirrors ``tf.train``::

    from bertconvert.checkpoint import load_checkpoint, list_variables, load_variable, save_checkpoint

    reader = load_checkpoint("uncased_L-12_H-768_A-12/bert_model.ckpt")   # prefix, .index or dir
    reader.get_variable_to_shape_map()          # {"bert/pooler/dense/bias": [768], ...}
    reader.get_tensor("bert/pooler/dense/bias") # numpy array, crc32c-checked, memory-mapped
    load_checkpoint(path, verify_checksums=False, mmap=False)  # unchecked, private copies
    reader.entry("bert/pooler/dense/bias")      # dtype, shape, shard_id, offset, size, crc32c
    save_checkpoint("out/model.ckpt", {"w": np.ones((2, 3), np.float32)})

TF2 object-based checkpoints and SavedModels (``load_checkpoint("saved_model_dir")`` reads
its ``variables/variables``) record every object path to each variable::

    graph = read_object_graph(reader)           # None for TF1 checkpoints
    graph.variable_paths()                      # {checkpoint key: [object paths]}
    graph.is_optimizer_state(key)               # slots and optimizer variables

Nothing here imports TensorFlow.
"""
import importlib

#: public name -> submodule defining it. Resolved on first use (PEP 562), so that
#: ``bertconvert.checkpoint.paths`` can be imported without numpy: the convert command
#: starts hashing the source files before the heavy imports.
_EXPORTS = {
    "BundleIndex": "bundle", "CheckpointReader": "bundle", "list_variables": "bundle",
    "load_checkpoint": "bundle", "load_variable": "bundle", "parse_index": "bundle",
    "BundleHeader": "proto", "TensorEntry": "proto",
    "save_checkpoint": "writer",
    "ObjectGraph": "object_graph", "read_object_graph": "object_graph",
    "parse_object_graph": "object_graph", "is_optimizer_slot_key": "object_graph",
    "is_saved_model": "paths",
}

__all__ = ["load_checkpoint", "list_variables", "load_variable", "save_checkpoint",
           "CheckpointReader", "TensorEntry", "BundleHeader", "BundleIndex", "parse_index",
           "ObjectGraph", "read_object_graph", "parse_object_graph", "is_optimizer_slot_key",
           "is_saved_model"]


def __getattr__(name):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_EXPORTS))
