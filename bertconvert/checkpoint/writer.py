"""Write TensorFlow V2 checkpoints (one data shard) that ``tf.train.load_checkpoint`` reads.

The layout follows TensorFlow's BundleWriter: tensors go into ``<prefix>.data-00000-of-00001``
back to back, each starting on a 64-byte boundary (TensorFlow's writer supports padding for
alignment and every reader simply seeks to the recorded offset; aligned offsets let a
reader map tensors without misaligned views); the ``.index`` table is uncompressed, its
keys sorted bytewise, with the header under the empty key.

Publishing is ordered so that no half-written checkpoint is ever visible: both files are
written under temporary names first; the old index at the prefix (if any) is removed, then
the data file is renamed into place, then the index. A crash in between leaves a data file
without an index, which no reader treats as a checkpoint.
"""
import contextlib
import logging
import os

import numpy as np

from ..atomic import atomic_write, remove_before_publish
from ..errors import CheckpointWriteError, UnsupportedDtypeError
from ..terminal.progress import progress_bar
from .crc import masked_crc32c
from .dtypes import bfloat16_dtype, tf_dtype_for
from .paths import INDEX_SUFFIX, shard_path
from .proto import encode_entry, encode_header
from .table import build_table

log = logging.getLogger(__name__)

ALIGNMENT = 64


def _as_array(name, value):
    """A C-contiguous little-endian numpy array for ``value`` (torch tensors accepted)."""
    if hasattr(value, "detach") and hasattr(value, "cpu"):  # a torch.Tensor (torch is loaded)
        import torch

        tensor = value.detach().cpu().contiguous()
        try:
            if tensor.dtype == torch.bfloat16:  # numpy has no bfloat16: reinterpret the bits
                return tensor.view(torch.int16).numpy().view(bfloat16_dtype())
            value = tensor.numpy()
        except TypeError as e:
            raise UnsupportedDtypeError(f"tensor {name!r}: torch dtype {tensor.dtype} has no "
                                        "TensorFlow checkpoint equivalent here; convert it with "
                                        ".to(torch.float32) first") from e
    try:
        array = np.asarray(value)
    except Exception as e:
        raise CheckpointWriteError(f"tensor {name!r}: cannot turn a {type(value).__name__} into "
                                   f"an array: {e}") from e
    try:
        tf_dtype_for(array.dtype)
    except UnsupportedDtypeError as e:
        raise UnsupportedDtypeError(f"tensor {name!r}: {e}") from e
    little = array.dtype.newbyteorder("<")  # checkpoints are little-endian everywhere
    if array.dtype != little:
        array = array.astype(little)
    # Not np.ascontiguousarray: it would turn a 0-d scalar into shape (1,).
    return array if array.flags.c_contiguous else array.copy(order="C")


def _check_names(tensors):
    keys = {}
    for name in tensors:
        if not isinstance(name, str) or not name:
            raise CheckpointWriteError(
                f"tensor names must be non-empty strings, got {name!r} (the empty key is "
                "reserved for the checkpoint header)")
        try:
            key = name.encode("utf-8", "surrogateescape")
        except UnicodeEncodeError as e:
            raise CheckpointWriteError(f"tensor name {name!r} cannot be encoded as UTF-8") from e
        if key.startswith(b"\x00"):
            raise CheckpointWriteError(
                f"tensor name {name!r} starts with a NUL byte, which TensorFlow reserves for "
                "the slices of partitioned variables")
        keys[key] = name
    return keys


def save_checkpoint(prefix, tensors, *, progress=False):
    """Write ``{name: array}`` as a TensorFlow checkpoint at ``prefix``; return the paths written.

    Arrays may be numpy arrays (float16/32/64, bfloat16 via ml_dtypes, int8/16/32/64,
    uint8/16/32/64, bool, complex64/128; scalars and empty arrays included) or CPU/GPU torch
    tensors. An existing checkpoint at ``prefix`` is replaced. Everything is validated before
    the first byte is written.

    Example::

        save_checkpoint("out/bert_model.ckpt", {"bert/pooler/dense/bias": np.zeros(768, np.float32)})
        # -> ["out/bert_model.ckpt.data-00000-of-00001", "out/bert_model.ckpt.index"]
    """
    prefix = os.fspath(prefix)
    if not prefix or prefix.endswith(os.sep):
        raise CheckpointWriteError(f"checkpoint prefix {prefix!r} must name a file stem, e.g. "
                                   "'out/bert_model.ckpt'")
    keys = _check_names(tensors)
    # Decide first: every array converted and every dtype known before anything is written.
    ordered = [(key, keys[key], _as_array(keys[key], tensors[keys[key]])) for key in sorted(keys)]
    data_path = shard_path(prefix, 0, 1)
    index_path = prefix + INDEX_SUFFIX
    total = sum(a.nbytes for _, _, a in ordered)
    bar = progress_bar(progress, total=total, desc=f"writing {os.path.basename(prefix)}",
                       unit="B", unit_scale=True)
    with atomic_write(index_path) as index_file:
        with atomic_write(data_path, direct=True) as data_file, bar as pbar:
            items = [(b"", encode_header(num_shards=1))]
            offset = 0
            for key, name, array in ordered:
                pad = -offset % ALIGNMENT
                if pad:
                    data_file.write(b"\0" * pad)
                    offset += pad
                raw = array.reshape(-1).view(np.uint8)
                data_file.write(raw)
                items.append((key, encode_entry(tf_dtype_for(array.dtype), array.shape, 0,
                                                offset, raw.nbytes, masked_crc32c(raw))))
                offset += raw.nbytes
                pbar.update(raw.nbytes)
            index_bytes = build_table(items)
            # Never let an old index describe the new data file (see module docstring).
            remove_before_publish(index_path)
        index_file.write(index_bytes)
    log.debug("wrote checkpoint %s: %d tensors, %d bytes", prefix, len(ordered), offset)
    return [data_path, index_path]

