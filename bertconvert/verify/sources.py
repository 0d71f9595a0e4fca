"""Where a parity check finds what belongs to its checkpoint, without TensorFlow.

The checkpoint prefix comes from :func:`bertconvert.checkpoint.paths.resolve_prefix` -- the
same resolver ``convert`` uses, so ``verify DIR`` accepts every directory ``convert DIR``
does (a ``checkpoint`` state file naming the prefix, a SavedModel's
``variables/variables``, a lone ``*.index``). The config and vocabulary are looked up
beside the checkpoint, and for a SavedModel also in its directory and ``assets/``.
"""
import os

from ..layout import CHECKPOINT_CONFIG_NAMES, GELU_FORMS, GELU_OF_HIDDEN_ACT
from ..checkpoint.paths import SAVED_MODEL_VARIABLES, resolve_prefix


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


def input_files(checkpoint, model_dir):
    """The files a verify run reads: the checkpoint's ``.index`` and data shards (and the
    ``checkpoint`` state file of a directory given as CKPT), and every file directly in
    ``model_dir``. Outputs (``--json``, ``--record``) must not overwrite any of them."""
    import glob
    files = []
    if checkpoint is not None:
        checkpoint = os.fspath(checkpoint)
        if os.path.isfile(checkpoint):
            files.append(checkpoint)
        try:
            prefix = resolve_prefix(checkpoint)
        except Exception:  # noqa: BLE001 - a missing checkpoint is reported by the run itself
            prefix = None
        if prefix is not None:
            files.append(prefix + ".index")
            files += glob.glob(glob.escape(prefix) + ".data-*")
        if os.path.isdir(checkpoint):
            files.append(os.path.join(checkpoint, "checkpoint"))
    if model_dir is not None and os.path.isdir(model_dir):
        files += [os.path.join(model_dir, n) for n in sorted(os.listdir(model_dir))
                  if os.path.isfile(os.path.join(model_dir, n))]
    return [f for f in files if os.path.exists(f)]
