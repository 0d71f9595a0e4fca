"""Reverse conversion: a PyTorch model directory -> a Google TF1 BERT checkpoint.

The directory may be ours (``bertconvert convert``) or transformers' (``save_pretrained``).
Every key goes back through the same TF1 rule table as conversion (the rules are
bidirectional), so the variable names are those Google's scripts restore: ``bert/...`` for
the trunk, ``cls/predictions`` and ``cls/seq_relationship`` for pre-training, root
``output_weights``/``output_bias`` for run_classifier-style heads, ``cls/squad/...`` for
run_squad. The checkpoint is written with the TF-free writer; TF -> PT -> TF is bit-exact.
``bert_config.json`` (Google flavour) and ``vocab.txt`` are placed beside the prefix.
A directory with ``optimizer.safetensors`` (``convert --optimizer-state``) also gives the
checkpoint its Adam slots (``<var>/adam_m``, ``<var>/adam_v``, back in the TF layout) and
``global_step``, so Google's scripts continue the run from where PyTorch left it.

A directory without a pooler (masked-lm, token-classification and question-answering are
converted without one unless ``--keep-pooler``; transformers saves them so too) is exported
as it is, without ``bert/pooler/dense``, and a warning says so: Google's run_squad.py and
run_pretraining.py load such a checkpoint (``init_checkpoint`` restores the variables it
has), but restoring the whole graph of ``modeling.BertModel`` (``tf.train.Saver``) needs
them: convert with ``--keep-pooler`` for a complete TF checkpoint.

Example::

    >>> export_model_dir("out/bert", "tf/bert_model.ckpt")
    ['tf/bert_model.ckpt.data-00000-of-00001', 'tf/bert_model.ckpt.index', 'tf/bert_config.json', ...]
"""
import filecmp
import logging
import os
import shutil

from . import rules as mapping
from ..models import weightfiles as serialization
from ..atomic import (atomic_write, check_output_spares_inputs, published_together,
                      remove_stale_temps)
from ..checkpoint import save_checkpoint
from ..checkpoint.paths import shard_path
from ..models.config import BertConfig
from ..models.statedict import BUFFER_KEYS, modern_key
from ..layout import GOOGLE_CONFIG_NAME, OPTIMIZER_NAME, VOCAB_NAME
from ..errors import MappingError, OutputExistsError, option
from .destination import (check_export_prefix, check_local_output, check_replaceable_files,
                          write_error)

logger = logging.getLogger(__name__)

#: Aliases of another key when tied (alias -> key it must equal to be dropped).
_TIED = {"cls.predictions.decoder.weight": ("bert.embeddings.word_embeddings.weight",
                                            "embeddings.word_embeddings.weight"),
         "cls.predictions.decoder.bias": ("cls.predictions.bias",)}


def _to_numpy(tensor):
    """A float32 numpy copy; float16/bfloat16 are widened exactly (Google's scripts use float32)."""
    import torch

    if tensor.is_floating_point() and tensor.dtype != torch.float32:
        tensor = tensor.float()
    return tensor.detach().cpu().contiguous().numpy()


def plan_export(state_dict):
    """``{tf_name: numpy array}`` for a PyTorch state dict; raises MappingError listing every
    key that has no TF1 name (nothing is written before this succeeds)."""
    import torch

    state = {modern_key(key): value for key, value in state_dict.items()}
    problems, out, sources = [], {}, {}
    for key in sorted(state):
        value = state[key]
        if BUFFER_KEYS.fullmatch(key):  # not TF variables at all
            continue
        if key in _TIED:
            twin = next((state[k] for k in _TIED[key] if k in state), None)
            if twin is not None and twin.shape == value.shape and torch.equal(twin, value):
                continue  # the tie Google's layout expresses by having no variable at all
            problems.append(f"{key}: differs from the tensor it is tied to in Google's layout "
                            f"({' / '.join(_TIED[key])}); an untied decoder cannot be exported")
            continue
        found = mapping.reverse_rule(key)
        if found is None:
            problems.append(f"{key} {list(value.shape)}: no TF1 variable name for this key")
            continue
        rule, tf_name = found
        if tf_name in sources:
            problems.append(f"{key}: {tf_name} already comes from {sources[tf_name]} "
                            "(mixed bert./unprefixed keys?)")
            continue
        if not value.is_floating_point():
            problems.append(f"{key}: dtype {value.dtype}, expected a floating-point weight")
            continue
        sources[tf_name] = key
        out[tf_name] = mapping.invert_transform(rule.transform, _to_numpy(value))
    if problems:
        raise MappingError(f"cannot export: {len(problems)} problem(s):\n"
                           + "\n".join(f"  - {p}" for p in sorted(problems)))
    return out


def _warn_without_pooler(tensors, model_dir, prefix):
    """Say that the checkpoint will lack ``bert/pooler`` (see the module's docstring)."""
    rule = mapping.reverse_rule("bert.pooler.dense.weight")
    pooler = rule[1].rsplit("/", 1)[0] if rule else "bert/pooler/dense"
    if not tensors or any(name.startswith(pooler + "/") for name in tensors):
        return
    logger.warning(
        "%s holds no pooler, so the checkpoint at %s has no %s variables: Google's scripts "
        "load it with init_checkpoint (only the variables it has), but restoring BertModel's "
        "whole graph with tf.train.Saver needs them; convert with --keep-pooler (Python: "
        "keep_pooler=True) for a complete TF checkpoint", model_dir, prefix, pooler)


def _side_file_needed(src_path, dst_path, overwrite, text=None, prefix=None):
    """Whether a side file (config, vocab) must be written; refuses to clobber a different one
    (the message names the ``prefix`` the user gave, and the side file)."""
    if not os.path.exists(dst_path) or overwrite:
        return True
    if src_path:
        same = filecmp.cmp(src_path, dst_path, shallow=False)
    else:
        with open(dst_path, encoding="utf-8") as f:
            same = f.read() == text
    if same:
        return False
    raise OutputExistsError(f"{option('--out', 'prefix')} {prefix}: the side file {dst_path} "
                            f"written beside it exists with different content; pass "
                            f"{option('--overwrite', 'overwrite=True')} to replace it")


def _write_side_file(src_path, dst_path, text=None):
    with atomic_write(dst_path, "wb" if src_path else "w") as f:
        if src_path:
            with open(src_path, "rb") as src:
                shutil.copyfileobj(src, f)
        else:
            f.write(text)
    return dst_path


def export_model_dir(model_dir, prefix, *, overwrite=False, progress=True):
    """Write the PyTorch model in ``model_dir`` as a TF1 checkpoint at ``prefix``.

    Also writes ``bert_config.json`` and copies ``vocab.txt`` (when the model directory has
    one) beside the prefix. An existing checkpoint at ``prefix`` is refused unless
    ``overwrite``; a ``prefix`` that is empty, or any output that is, contains or lies inside
    one of the model directory's files, is refused even then
    (:class:`~bertconvert.errors.UnsafeOutputError`), and so are a prefix naming no file
    stem and existing files a previous export did not write
    (:class:`~bertconvert.errors.OutputNotReplaceableError`). The files are published
    together at the end: an interrupt before that leaves nothing. Returns the written
    paths, spelt as ``prefix`` is (relative stays relative).
    """
    check_output_spares_inputs(prefix, [], keyword="prefix")  # "" would mean the cwd
    check_local_output(prefix, "--out", "prefix", "export")
    model_dir, prefix = os.fspath(model_dir), os.fspath(prefix)
    config_file = serialization.find_config_file(model_dir)
    weights_file = serialization.find_weights_file(model_dir)
    vocab = os.path.join(model_dir, VOCAB_NAME)
    has_vocab = os.path.isfile(vocab)
    directory = os.path.dirname(prefix)  # as given, so every printed path reads alike
    outputs = [prefix, prefix + ".index", shard_path(prefix, 0, 1),
               os.path.join(directory, GOOGLE_CONFIG_NAME), os.path.join(directory, VOCAB_NAME)]
    optimizer = os.path.join(model_dir, OPTIMIZER_NAME)
    sources = [config_file, weights_file, vocab if has_vocab else None,
               optimizer if os.path.isfile(optimizer) else None]
    roles = ("", "index file", "data file", "side file", "side file")
    for path, role in zip(outputs, roles):  # before anything is read in full or written
        what = None if not role else f"{option('--out', 'prefix')} {prefix} (its {role} {path})"
        check_output_spares_inputs(path, sources, keyword="prefix", what=what)
    check_export_prefix(prefix)  # "." would write files named "..index"
    # Only what a previous export wrote may be replaced, whatever overwrite says.
    check_replaceable_files([(outputs[1], "index"), (outputs[2], "data"), (outputs[3], "config")]
                            + ([(outputs[4], "vocab")] if has_vocab else []),
                            prefix, "--out", "prefix", "export")
    config = BertConfig.from_json_file(config_file)
    state = serialization.load_state_dict(weights_file)
    tensors = plan_export(state)
    del state
    if os.path.isfile(optimizer):
        from .optimizer_state import export_slots
        tensors.update(export_slots(optimizer, tensors))
    _warn_without_pooler(tensors, model_dir, prefix)
    if os.path.exists(prefix + ".index") and not overwrite:
        raise OutputExistsError(f"a checkpoint already exists at {prefix}; pass "
                                f"{option('--overwrite', 'overwrite=True')} to replace it")
    # Decide every side file before writing anything, so a refusal leaves nothing behind.
    side = [(None, outputs[3], config.to_json_string("google"))]
    if has_vocab:
        side.append((vocab, outputs[4], None))
    else:
        logger.warning("%s has no vocab.txt; the exported checkpoint has none beside it", model_dir)
    side = [s for s in side if _side_file_needed(s[0], s[1], overwrite, s[2], prefix)]
    try:
        os.makedirs(directory or ".", exist_ok=True)
        for path in outputs[1:]:
            remove_stale_temps(path)  # what killed exports to the same place left behind
        with published_together():  # all files or none: an interrupt leaves nothing
            written = list(save_checkpoint(prefix, tensors, progress=progress))
            written += [_write_side_file(src, dst, text) for src, dst, text in side]
    except OSError as e:
        raise write_error(e, prefix, keyword="prefix") from e
    logger.info("exported %d variables from %s to %s", len(tensors), model_dir, prefix)
    return written
