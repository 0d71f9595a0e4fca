"""What identifies a conversion (``publication.identity`` in an S3 output's
``conversion.json``): the source, without reading its data shards, and the options that
shape the output's bytes. Two runs with equal identities write the same files (fresh head
weights aside), so :mod:`bertconvert.convert.publish` can treat the second as a no-op.
"""
import json
import os

from ..errors import ConversionError
from .provenance import hash_files

#: conversion.json fields that decide the bytes of the model directory (with the source).
#: ``optimizer_state`` (the slots' list and global_step) decides whether the optimizer file is
#: written at all.
IDENTITY_FIELDS = ("head", "model_class", "num_labels", "dtype", "format", "activation",
                   "pooler_written", "new_keys", "config_inferred", "tied", "optimizer_state")


def file_sha256(path):
    """Hex sha256 of a file (the same reader as conversion.json's source hashes)."""
    return hash_files([path])[0]["sha256"]


def source_identity(reader, config_path, vocab_path):
    """What identifies the source of a conversion without reading its data shards.

    The ``.index`` pins every tensor (its crc32c is checked on every read), so its sha256
    with the shards' sizes stands for the checkpoint; config and vocabulary by sha256. For a
    checkpoint read in place from a bucket or server, the objects' pins (ETag, VersionId,
    size; the ``.index``'s sha256) stand for it; a reader may also offer its own
    ``source_identity()``.
    """
    own = getattr(reader, "source_identity", None)
    checkpoint = own() if callable(own) else None
    store = getattr(reader, "store", None)  # a checkpoint read in place from s3:// or http(s)://
    if checkpoint is None and store is not None:
        # The objects as pinned when the conversion began: the .index's sha256 (read whole
        # anyway) and each shard's size, ETag and VersionId, from HEAD -- no shard byte.
        checkpoint = {"objects": store.records()}
    if checkpoint is None and any("://" in os.fspath(f) for f in reader.files):
        raise ConversionError(
            "this checkpoint reader cannot say which version of its remote files it read "
            "(no source_identity()), so an s3:// output could not tell a rerun from a "
            "changed source; convert to a local directory, or from local files")
    if checkpoint is None:
        index, shards = reader.files[0], reader.files[1:]
        checkpoint = {"index_sha256": file_sha256(index),
                      "shards": sorted([os.path.basename(s).rsplit(".data-", 1)[-1],
                                        os.path.getsize(s)] for s in shards)}

    def digest(path):
        if path is None:
            return None
        if "://" in os.fspath(path):  # a remote config/vocab: its reader names it
            return os.fspath(path)
        return file_sha256(path)

    return {"checkpoint": checkpoint, "config": digest(config_path), "vocab": digest(vocab_path)}


def conversion_identity(report, source):
    """``publication.identity``: the source plus the options that shape the bytes."""
    fields = report.to_dict()
    # optimizer_state only when written, so a marker recorded before it counted still matches
    options = {k: fields.get(k) for k in IDENTITY_FIELDS
               if k != "optimizer_state" or fields.get(k) is not None}
    return json.loads(json.dumps({"source": source, "options": options}))
