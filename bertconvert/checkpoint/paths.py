"""Find a checkpoint's prefix from what a user typed: a prefix, an .index file, a data shard,
or a directory (its ``checkpoint`` state file first, then a SavedModel's
``variables/variables``, else its only ``*.index``).

A directory holding none of those is looked into one level down: a TF Serving base
directory (``export/`` with numbered SavedModel versions ``1700000000/``...) gives its
highest version; a directory with exactly one subdirectory holding a checkpoint or a
SavedModel (a Model Garden / TF Hub download: ``case/saved_model/`` beside other files)
gives that one (an interrupted estimator export, ``temp-<time>/``, is never one); several
are an :class:`~bertconvert.errors.AmbiguousCheckpointError` that lists them. Which was taken is said (:func:`resolve_checkpoint` returns it as a note).

A SavedModel directory (``saved_model.pb`` + ``variables/variables.{index,data-*}``) keeps
its weights in an ordinary checkpoint; we read that (and, for TF1 serving exports, only
the attention head count from ``saved_model.pb``: :mod:`bertconvert.checkpoint.saved_model`).
"""
import codecs
import glob
import logging
import os
import re

from ..errors import AmbiguousCheckpointError, CheckpointNotFoundError, SavedModelVariablesError

logger = logging.getLogger(__name__)

INDEX_SUFFIX = ".index"
_DATA_SUFFIX = re.compile(r"\.data-\d{5,}-of-\d{5,}$")
_STATE_LINE = re.compile(r'^\s*model_checkpoint_path\s*:\s*"((?:[^"\\]|\\.)*)"', re.MULTILINE)
STATE_FILE = "checkpoint"
#: What marks a directory as a SavedModel (binary or text protobuf).
SAVED_MODEL_FILES = ("saved_model.pb", "saved_model.pbtxt")
#: Where a SavedModel keeps its variables, relative to its directory.
SAVED_MODEL_VARIABLES = os.path.join("variables", "variables")
#: How many entries of a directory the one-level-down search looks at (a hostile or huge
#: directory must not cost minutes); beyond that, the user names the checkpoint.
MAX_SUBDIRECTORIES = 10_000
#: What ``estimator.export_saved_model`` names an export in progress (``temp-1700000000``).
TEMP_EXPORT_PREFIX = "temp-"


def shard_path(prefix, shard_id, num_shards):
    """``<prefix>.data-00000-of-00001``: the name TensorFlow gives shard ``shard_id``."""
    return f"{prefix}.data-{shard_id:05d}-of-{num_shards:05d}"


def state_file_prefix(text):
    """The prefix a ``checkpoint`` state file's text names (``model_checkpoint_path``), or
    None when it names none."""
    match = _STATE_LINE.search(text)
    if not match:
        return None
    return codecs.escape_decode(match.group(1).encode("utf-8"))[0].decode("utf-8", "replace")


def _from_state_file(directory):
    """The prefix named by ``directory/checkpoint`` if that prefix exists, else None."""
    state = os.path.join(directory, STATE_FILE)
    if not os.path.isfile(state):
        return None
    try:
        with open(state, encoding="utf-8", errors="replace") as f:
            named = state_file_prefix(f.read(1 << 20))  # a state file is a few lines
    except OSError:
        return None
    if named is None:
        return None
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


def _holds_checkpoint(directory):
    """True when ``directory`` itself holds a checkpoint or a SavedModel (not looking deeper)."""
    if is_saved_model(directory) or _from_state_file(directory) is not None:
        return True
    return bool(glob.glob(os.path.join(glob.escape(directory), "*" + INDEX_SUFFIX)))


def _subdirectories(directory):
    """The non-hidden subdirectories of ``directory`` (symlinks followed), sorted; at most
    :data:`MAX_SUBDIRECTORIES` entries are looked at."""
    found = []
    try:
        with os.scandir(directory) as entries:
            for count, entry in enumerate(entries):
                if count >= MAX_SUBDIRECTORIES:
                    break
                if not entry.name.startswith(".") and entry.is_dir():
                    found.append(entry.name)
    except OSError:
        return []
    return sorted(found)


def _in_directory(path):
    """The prefix of the checkpoint ``path`` holds itself; None when it holds none;
    CheckpointNotFoundError when it holds several, or a SavedModel without variables."""
    prefix = _from_state_file(path)
    if prefix is not None:
        return prefix
    indexes = sorted(glob.glob(os.path.join(glob.escape(path), "*" + INDEX_SUFFIX)))
    if is_saved_model(path) and not indexes:
        return _saved_model_prefix(path)
    if len(indexes) == 1:
        return indexes[0][:-len(INDEX_SUFFIX)]
    if not indexes:
        return None
    names = ", ".join(os.path.basename(i) for i in indexes)
    raise CheckpointNotFoundError(
        f"directory {path} holds several checkpoints ({names}) and no usable 'checkpoint' "
        "state file; pass the prefix of the one you mean (e.g. "
        f"{indexes[-1][:-len(INDEX_SUFFIX)]})")


def _one_level_down(path):
    """``(prefix, note)`` from the one subdirectory of ``path`` holding a checkpoint (a TF
    Serving base directory: its highest numbered version); see the module docstring."""
    subdirs = [name for name in _subdirectories(path)
               if _holds_checkpoint(os.path.join(path, name))]
    if not subdirs:
        raise CheckpointNotFoundError(
            f"directory {path} holds no TensorFlow checkpoint and no SavedModel, neither "
            f"itself nor in a subdirectory (it holds {_listing(path)}): expected a "
            f"'checkpoint' state file or one '*{INDEX_SUFFIX}' file, or saved_model.pb with "
            "variables/; pass the checkpoint prefix (e.g. DIR/bert_model.ckpt) or the "
            "SavedModel directory")
    # The estimator's exporter writes temp-<time>/ first and renames it when complete; one
    # left by an interrupted export is not a version (TF Serving ignores it too), nor a
    # candidate of any kind: its variables may be half written.
    unfinished = [name for name in subdirs if name.startswith(TEMP_EXPORT_PREFIX)]
    candidates = [name for name in subdirs if name not in unfinished]
    if not candidates:
        raise CheckpointNotFoundError(
            f"directory {path} holds only unfinished exports ({', '.join(unfinished)}): an "
            "export writes temp-<time>/ and renames it to its version when complete, so these "
            "were interrupted; export again (or pass that directory itself if you know it is "
            "complete)")
    versions = [name for name in candidates
                if name.isdigit() and is_saved_model(os.path.join(path, name))]
    others = set(candidates) - set(versions)
    if versions and not others and (len(versions) > 1 or unfinished):
        chosen = max(versions, key=int)
        also = sorted((v for v in versions if v != chosen), key=int) + unfinished
        note = (f"{path} is a TF Serving base directory: using its highest version {chosen}"
                f"{' (also there: ' + ', '.join(also) + ')' if also else ''}; pass "
                f"{os.path.join(path, '<version>')} for another")
    elif len(candidates) == 1:
        chosen = candidates[0]
        kind = "SavedModel" if is_saved_model(os.path.join(path, chosen)) else "checkpoint"
        note = f"{path} holds no checkpoint itself: using the {kind} in {os.path.join(path, chosen)}"
    else:
        listed = ", ".join(os.path.join(path, name) for name in candidates)
        raise AmbiguousCheckpointError(
            f"directory {path} holds no checkpoint itself but {len(candidates)} subdirectories "
            f"that do ({listed}); pass the one you mean")
    prefix = _in_directory(os.path.join(path, chosen))
    if prefix is None:  # the subdirectory lost its files since it was looked at
        raise CheckpointNotFoundError(f"no TensorFlow checkpoint in {os.path.join(path, chosen)}")
    return prefix, note


def resolve_checkpoint(path):
    """``(prefix, notes)``: the checkpoint prefix for ``path`` (see :func:`resolve_prefix`)
    and sentences saying which checkpoint a directory gave when it was not the obvious one
    (a TF Serving version, a subdirectory); CheckpointNotFoundError when there is none."""
    path = os.fspath(path)
    if os.path.basename(path) in SAVED_MODEL_FILES and os.path.isfile(path):
        path = os.path.dirname(path) or os.curdir  # the SavedModel's own file: its directory
    if os.path.isdir(path):
        prefix = _in_directory(path)
        if prefix is not None:
            return prefix, []
        prefix, note = _one_level_down(path)
        return prefix, [note]
    return _file_prefix(path), []


def resolve_prefix(path):
    """Return the checkpoint prefix for ``path`` or raise CheckpointNotFoundError; which
    version or subdirectory a directory gave is logged (:func:`resolve_checkpoint` returns it).

    Example::

        resolve_prefix("model/")                          # -> "model/bert_model.ckpt"
        resolve_prefix("model/bert_model.ckpt.index")     # -> "model/bert_model.ckpt"
        resolve_prefix("saved_model_dir")                 # -> "saved_model_dir/variables/variables"
        resolve_prefix("export/")                         # -> "export/1700000000/variables/variables"
    """
    prefix, notes = resolve_checkpoint(path)
    for note in notes:
        logger.info("%s", note)
    return prefix


def _file_prefix(path):
    """The prefix for a path that is not a directory: a prefix, an .index or a data shard."""
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
