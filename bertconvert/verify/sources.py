"""Where a parity check finds what belongs to its checkpoint, without TensorFlow.

The checkpoint prefix comes from :func:`bertconvert.checkpoint.paths.resolve_prefix` -- the
same resolver ``convert`` uses, so ``verify DIR`` accepts every directory ``convert DIR``
does (a ``checkpoint`` state file naming the prefix, a SavedModel's
``variables/variables``, a lone ``*.index``). The config and vocabulary are looked up
beside the checkpoint, and for a SavedModel also in its directory and ``assets/``.
"""
import os

from ..layout import (CHECKPOINT_CONFIG_NAMES, GELU_FORMS, GELU_OF_HIDDEN_ACT,
                      TOKENIZER_CONFIG_NAME, VOCAB_NAME)
from ..checkpoint.paths import SAVED_MODEL_VARIABLES, STATE_FILE, resolve_prefix


def check_gelu(gelu):
    """``gelu`` if it is None or one of :data:`GELU_FORMS`; else VerificationError (exit 2)."""
    if gelu is not None and gelu not in GELU_FORMS:
        from ..errors import VerificationError, option
        raise VerificationError(
            f"{option('--gelu', 'gelu=')} must be one of {', '.join(GELU_FORMS)} (exact: "
            f"Google's TF1 erf form; tanh: Model Garden's approximation), got {gelu!r}")
    return gelu


def resolve_checkpoint_prefix(path):
    """The checkpoint prefix behind ``path`` (prefix, ``.index``/``.data-*`` file, checkpoint
    directory or SavedModel directory); CheckpointNotFoundError when there is none."""
    return resolve_prefix(path)


def checkpoint_dirs(prefix):
    """Directories that hold a checkpoint's companions (config, vocab.txt), nearest first.

    For a SavedModel's ``DIR/variables/variables`` these are ``DIR``, ``DIR/assets`` (where
    TF Hub exporters put ``vocab.txt``) and the directory above ``DIR``. Relative when
    ``prefix`` is (messages name the files as the user would: paths as given).
    """
    absolute = os.path.abspath(prefix)
    directory = os.path.dirname(absolute)
    if absolute.endswith(os.sep + SAVED_MODEL_VARIABLES):
        saved_model = os.path.dirname(directory)
        dirs = [saved_model, os.path.join(saved_model, "assets"), os.path.dirname(saved_model)]
    else:
        dirs = [directory]
    return dirs if os.path.isabs(prefix) else [os.path.relpath(d) for d in dirs]


def find_checkpoint_config(prefix):
    """``bert_config.json`` (else ``config.json``) beside the checkpoint, or None."""
    for directory in checkpoint_dirs(prefix):
        for name in CHECKPOINT_CONFIG_NAMES:
            candidate = os.path.join(directory, name)
            if os.path.isfile(candidate):
                return candidate
    return None


def gelu_from_config(config_file):
    """``"exact"``/``"tanh"`` as the model directory's ``config.json`` ``hidden_act`` says,
    or None (no file, unreadable, or a non-GELU activation)."""
    if not config_file:
        return None
    import json
    try:
        with open(config_file, encoding="utf-8") as f:
            act = json.load(f).get("hidden_act")
    except (OSError, ValueError, AttributeError):
        return None  # the PyTorch side reports a bad config with its own message
    return GELU_OF_HIDDEN_ACT.get(str(act).lower()) if isinstance(act, str) else None


def _regular_files(directory):
    """Every file directly in ``directory`` (links followed), sorted; [] when unreadable."""
    try:
        names = sorted(os.listdir(directory))
    except OSError:
        return []
    return [os.path.join(directory, n) for n in names if os.path.isfile(os.path.join(directory, n))]


def _companions(directory):
    """The config, vocabulary and tokenizer files a run may read from ``directory``."""
    names = CHECKPOINT_CONFIG_NAMES + (VOCAB_NAME, TOKENIZER_CONFIG_NAME)
    return [os.path.join(directory, n) for n in names]


def input_files(checkpoint, model_dir, text=None, reference=None):
    """``(files, directories)`` a verify run reads, which its outputs must spare.

    Files: CKPT itself when it is a file; the checkpoint's ``.index`` and data shards, the
    ``checkpoint`` state file of a directory given as CKPT; its config, ``vocab.txt`` and
    ``tokenizer_config.json`` in every directory they are looked up in
    (:func:`checkpoint_dirs`); for a SavedModel every file of its directory and of
    ``assets/`` (``saved_model.pb``, ``fingerprint.pb``...); every file directly in
    ``model_dir``; the ``text`` file and the ``reference`` golden file. Directories: the
    model directory and the SavedModel directory, which an output may lie in but not be.
    Only paths that exist are returned (an output there would replace something).
    """
    import glob
    files, directories = [], []
    if checkpoint is not None:
        checkpoint = os.fspath(checkpoint)
        if os.path.isfile(checkpoint):
            files.append(checkpoint)
        try:
            prefix = resolve_prefix(checkpoint)
        except Exception:  # noqa: BLE001 - a missing checkpoint is reported by the run itself
            prefix = None
        if os.path.isdir(checkpoint):
            files.append(os.path.join(checkpoint, STATE_FILE))
            if prefix is None:  # the run fails, but its error path must spare these too
                files += _companions(checkpoint)
        if prefix is not None:
            files.append(prefix + ".index")
            files += glob.glob(glob.escape(prefix) + ".data-*")
            dirs = checkpoint_dirs(prefix)
            for directory in dirs:
                files += _companions(directory)
            if prefix.endswith(os.sep + SAVED_MODEL_VARIABLES):
                files += _regular_files(dirs[0]) + _regular_files(dirs[1])
                directories.append(dirs[0])
    if model_dir is not None and os.path.isdir(model_dir):
        files += _regular_files(model_dir)
        directories.append(model_dir)
    for path in (text, reference):
        if isinstance(path, (str, os.PathLike)):
            files.append(os.fspath(path))
    return [f for f in files if os.path.exists(f)], directories


def check_outputs_spare_inputs(checkpoint, model_dir, outputs, text=None, reference=None):
    """Raise UnsafeOutputError (exit 2) when an output file (``{flag: path}``, e.g.
    ``{"--record": "x.npz"}``) is one of the run's inputs (:func:`input_files`), lies inside
    one, contains one, is the model or SavedModel directory itself, or is another output.

    Paths are compared after resolving symbolic links, and by device and inode (hard links,
    bind mounts). Called before any work, so neither the report nor the error path's JSON
    ever lands on an input.
    """
    from ..atomic import check_output_spares_inputs
    from ..errors import UnsafeOutputError, option
    outputs = {flag: path for flag, path in outputs.items() if path is not None}
    if not outputs:
        return
    files, directories = input_files(checkpoint, model_dir, text=text, reference=reference)
    seen = {}
    for flag, path in outputs.items():
        keyword = flag.lstrip("-").replace("-", "_")
        check_output_spares_inputs(path, files, flag=flag, keyword=keyword)
        target = _identity(path)
        for directory in directories:
            if target is not None and target == _identity(directory):
                raise UnsafeOutputError(
                    f"{option(flag, keyword)} {path} is the directory {directory} that this "
                    f"run reads; give {option(flag, keyword)} a file path (e.g. "
                    f"{os.path.join(directory, 'report.json')})")
        for other, other_path in seen.items():
            if target is not None and target == _identity(other_path):
                raise UnsafeOutputError(
                    f"{option(flag, keyword)} and {other} both name {path}; one would "
                    "overwrite the other: give each its own file")
        seen[option(flag, keyword)] = path


def check_inputs_are_files(checkpoint, model_dir, text=None, reference=None):
    """Raise VerificationError (exit 2) when a file this run would read -- a config,
    vocabulary, tokenizer config or weights file beside the checkpoint or in ``model_dir``,
    the ``text`` file, the ``reference`` golden file -- exists but is not a regular file (a
    FIFO, a device, a socket): reading it would hang or never end, and the lookups that
    skip it would otherwise report it as missing ("no model config", "does not exist")."""
    from .. import layout
    candidates = []
    for path, what in ((text, "--text file"), (reference, "golden file")):
        if isinstance(path, (str, os.PathLike)):
            candidates.append((os.fspath(path), what))
    directories = []
    if checkpoint is not None:
        try:
            directories += checkpoint_dirs(resolve_prefix(checkpoint))
        except Exception:  # noqa: BLE001 - a missing checkpoint is reported by the run itself
            if os.path.isdir(checkpoint):
                directories.append(os.fspath(checkpoint))
    if model_dir is not None and os.path.isdir(model_dir):
        directories.append(os.fspath(model_dir))
    for directory in directories:
        candidates += [(os.path.join(directory, name), _what(name)) for name in layout.FILE_NAMES]
    for path, what in candidates:
        _check_regular(path, what)


def _what(name):
    """What a model-directory or checkpoint file name is, for messages."""
    from .. import layout
    if name in layout.CONFIG_NAMES:
        return "model config"
    if name in layout.WEIGHTS_NAMES:
        return "weights file"
    if name == layout.VOCAB_NAME:
        return "vocabulary file"
    return {layout.TOKENIZER_CONFIG_NAME: "tokenizer config",
            layout.REPORT_NAME: "conversion record"}.get(name, "input file")


def _check_regular(path, what):
    import stat
    from ..errors import VerificationError, option
    from ..safeio import file_kind
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return  # absent (or a dangling link): whoever needs it says so
    if stat.S_ISREG(mode) or (stat.S_ISDIR(mode) and what not in ("--text file", "golden file")):
        return
    kind = "a directory" if stat.S_ISDIR(mode) else file_kind(mode)
    if what == "--text file":
        what = f"{option('--text', 'text=')} file"
    raise VerificationError(f"{what} {path} is {kind}, not a regular file; pass the path of "
                            "the file itself")


def _identity(path):
    """``path`` with links resolved, plus its (device, inode) when it exists."""
    real = os.path.realpath(os.fspath(path))
    try:
        st = os.stat(real)
    except OSError:
        return real, None
    return None, (st.st_dev, st.st_ino)
