"""TensorFlow checkpoints (the V2 "tensor bundle" format) read and written without TensorFlow.

The API mirrors ``tf.train``::

    from bertconvert.checkpoint import load_checkpoint, list_variables, load_variable, save_checkpoint

    reader = load_checkpoint("uncased_L-12_H-768_A-12/bert_model.ckpt")   # prefix, .index or dir
    reader.get_variable_to_shape_map()          # {"bert/pooler/dense/bias": [768], ...}
    reader.get_tensor("bert/pooler/dense/bias") # numpy array, crc32c-checked, memory-mapped
    load_checkpoint(path, verify_checksums=False, mmap=False)  # unchecked, private copies
    reader.entry("bert/pooler/dense/bias")      # dtype, shape, shard_id, offset, size, crc32c
    save_checkpoint("out/model.ckpt", {"w": np.ones((2, 3), np.float32)})

Nothing here imports TensorFlow.
"""
from .bundle import BundleIndex, CheckpointReader, list_variables, load_checkpoint, load_variable, parse_index
from .proto import BundleHeader, TensorEntry
from .writer import save_checkpoint

__all__ = ["load_checkpoint", "list_variables", "load_variable", "save_checkpoint",
           "CheckpointReader", "TensorEntry", "BundleHeader", "BundleIndex", "parse_index"]
