"""Find a checkpoint's prefix from what a user typed: a prefix, an .index file, a data shard,
or a directory (its ``checkpoint`` state file first, else its only ``*.index``).
"""
import codecs
import glob
import os
import re

from ..errors import CheckpointNotFoundError

INDEX_SUFFIX = ".index"
_DATA_SUFFIX = re.compile(r"\.data-\d{5,}-of-\d{5,}$")
_STATE_LINE = re.compile(r'^\s*model_checkpoint_path\s*:\s*"((?:[^"\\]|\\.)*)"', re.MULTILINE)
STATE_FILE = "checkpoint"


def shard_path(prefix, shard_id, num_shards):
    """``<prefix>.data-00000-of-00001``: the name TensorFlow gives shard ``shard_id``."""
    return f"{prefix}.data-{shard_id:05d}-of-{num_shards:05d}"


def _from_state_file(directory):
    """The prefix named by ``directory/checkpoint`` if that prefix exists, else None."""
    state = os.path.join(directory, STATE_FILE)
    if not os.path.isfile(state):
        return None
    try:
        with open(state, encoding="utf-8", errors="replace") as f:
            match = _STATE_LINE.search(f.read(1 << 20))  # a state file is a few lines
    except OSError:
        return None
    if not match:
        return None
    named = codecs.escape_decode(match.group(1).encode("utf-8"))[0].decode("utf-8", "replace")
    # Relative paths are relative to the directory; absolute ones may come from another
    # machine (the directory was copied), so fall back to the same base name here.
    candidates = [named if os.path.isabs(named) else os.path.join(directory, named),
                  os.path.join(directory, os.path.basename(named))]
    for candidate in candidates:
        if os.path.isfile(candidate + INDEX_SUFFIX):
            return candidate
    return None


def resolve_prefix(path):
    """Return the checkpoint prefix for ``path`` or raise CheckpointNotFoundError.

    Example::

        resolve_prefix("model/")                          # -> "model/bert_model.ckpt"
        resolve_prefix("model/bert_model.ckpt.index")     # -> "model/bert_model.ckpt"
    """
    path = os.fspath(path)
    if os.path.isdir(path):
        prefix = _from_state_file(path)
        if prefix is not None:
            return prefix
        indexes = sorted(glob.glob(os.path.join(glob.escape(path), "*" + INDEX_SUFFIX)))
        if len(indexes) == 1:
            return indexes[0][:-len(INDEX_SUFFIX)]
        if not indexes:
            raise CheckpointNotFoundError(
                f"directory {path} holds no TensorFlow checkpoint: expected a 'checkpoint' "
                "state file or one '*.index' file; pass the checkpoint prefix instead")
        names = ", ".join(os.path.basename(i) for i in indexes)
        raise CheckpointNotFoundError(
            f"directory {path} holds several checkpoints ({names}) and no usable 'checkpoint' "
            "state file; pass the prefix of the one you mean (e.g. "
            f"{indexes[-1][:-len(INDEX_SUFFIX)]})")
    if path.endswith(INDEX_SUFFIX) and os.path.isfile(path):
        return path[:-len(INDEX_SUFFIX)]
    if _DATA_SUFFIX.search(path):
        stripped = _DATA_SUFFIX.sub("", path)
        if os.path.isfile(stripped + INDEX_SUFFIX):
            return stripped
    if os.path.isfile(path + INDEX_SUFFIX):
        return path
    hint = ""
    if os.path.isfile(path):
        hint = (" The path is a single file; if it is a TensorFlow V1 checkpoint (no .index), "
                "re-save it in the V2 format with TensorFlow first.")
    raise CheckpointNotFoundError(
        f"no TensorFlow checkpoint at {path}: expected a prefix P with P{INDEX_SUFFIX} beside "
        f"it (e.g. bert_model.ckpt), an {INDEX_SUFFIX} file, or a directory holding one.{hint}")
