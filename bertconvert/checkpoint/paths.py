"""Find a checkpoint's prefix from what a user typed: a prefix, an .index file, a data shard,
or a directory (its ``checkpoint`` state file first, then a SavedModel's
``variables/variables``, else its only ``*.index``).

A SavedModel directory (``saved_model.pb`` + ``variables/variables.{index,data-*}``) keeps
its weights in an ordinary object-based checkpoint; we read that and never parse
``saved_model.pb``.
"""
import codecs
import glob
import os
import re

from ..errors import CheckpointNotFoundError, SavedModelVariablesError

INDEX_SUFFIX = ".index"
_DATA_SUFFIX = re.compile(r"\.data-\d{5,}-of-\d{5,}$")
_STATE_LINE = re.compile(r'^\s*model_checkpoint_path\s*:\s*"((?:[^"\\]|\\.)*)"', re.MULTILINE)
STATE_FILE = "checkpoint"
#: What marks a directory as a SavedModel (binary or text protobuf).
SAVED_MODEL_FILES = ("saved_model.pb", "saved_model.pbtxt")
#: Where a SavedModel keeps its variables, relative to its directory.
SAVED_MODEL_VARIABLES = os.path.join("variables", "variables")


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


def is_saved_model(path):
    """True when ``path`` is a SavedModel directory (it holds ``saved_model.pb`` or
    ``saved_model.pbtxt``), or that file itself."""
    path = os.fspath(path)
    if os.path.isdir(path):
        return any(os.path.isfile(os.path.join(path, name)) for name in SAVED_MODEL_FILES)
    return os.path.basename(path) in SAVED_MODEL_FILES and os.path.isfile(path)


def _listing(directory, limit=8):
    try:
        names = sorted(os.listdir(directory))
    except OSError as e:
        return f"unreadable ({e.strerror or e})"
    shown = ", ".join(n + ("/" if os.path.isdir(os.path.join(directory, n)) else "")
                      for n in names[:limit])
    more = f", ... ({len(names)} entries)" if len(names) > limit else ""
    return (shown + more) or "nothing"


def _saved_model_prefix(directory):
    """``directory/variables/variables`` if the SavedModel has it; else a named error."""
    prefix = os.path.join(directory, SAVED_MODEL_VARIABLES)
    if os.path.isfile(prefix + INDEX_SUFFIX):
        return prefix
    variables = os.path.join(directory, "variables")
    if os.path.isdir(variables):
        found = f"its variables/ directory holds {_listing(variables)}"
    else:
        found = f"it has no variables/ directory (it holds {_listing(directory)})"
    raise SavedModelVariablesError(
        f"{directory} is a TensorFlow SavedModel but {found}; expected the weights in "
        f"variables/variables{INDEX_SUFFIX} and variables/variables.data-*. A SavedModel "
        "whose variables were frozen into constants, or that was copied without variables/, "
        "has no weights to read: copy the whole SavedModel directory, or pass a checkpoint")


def resolve_prefix(path):
    """Return the checkpoint prefix for ``path`` or raise CheckpointNotFoundError.

    Example::

        resolve_prefix("model/")                          # -> "model/bert_model.ckpt"
        resolve_prefix("model/bert_model.ckpt.index")     # -> "model/bert_model.ckpt"
        resolve_prefix("saved_model_dir")                 # -> "saved_model_dir/variables/variables"
    """
    path = os.fspath(path)
    if os.path.basename(path) in SAVED_MODEL_FILES and os.path.isfile(path):
        path = os.path.dirname(path) or os.curdir  # the SavedModel's own file: its directory
    if os.path.isdir(path):
        prefix = _from_state_file(path)
        if prefix is not None:
            return prefix
        indexes = sorted(glob.glob(os.path.join(glob.escape(path), "*" + INDEX_SUFFIX)))
        if is_saved_model(path) and not indexes:
            return _saved_model_prefix(path)
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
