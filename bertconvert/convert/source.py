"""What a conversion source brings besides its weights: config, activation, vocabulary, casing.

* the kind of source: a TF1 checkpoint, a TF2 object-based checkpoint, or a SavedModel
  (``DIR`` with ``saved_model.pb`` and ``variables/``; read without TensorFlow, and
  ``saved_model.pb`` is never parsed);
* the naming of its variables: TF1 (``bert/...``: Google's TF1 code, also in a TF1
  SavedModel / TF Serving export) or TF2 (object-graph names: Model Garden);
* the config: the one given, else ``bert_config.json``/``config.json`` beside the checkpoint
  (for a SavedModel: in its directory), else -- for TF2 sources and SavedModels, which
  are written without one -- inferred from the tensor shapes (said in the report; a TF1
  SavedModel's head count comes from its serving graph, :mod:`~bertconvert.convert.tf1_infer`);
* the GELU form (:mod:`bertconvert.convert.gelu`), by the naming, not the container;
* a SavedModel's ``assets/vocab.txt`` and its ``do_lower_case`` variable.
"""
import logging
import os
from dataclasses import dataclass, field

import numpy as np

from .gelu import choose_activation
from .plan import resolve_config
from ..layout import CHECKPOINT_CONFIG_NAMES, GOOGLE_CONFIG_NAME, VOCAB_NAME
from .tf1_infer import infer_tf1_config
from .tf2 import infer_config, is_tf2, resolve_tf2
from ..errors import ConfigError
from ..checkpoint.paths import is_saved_model

logger = logging.getLogger(__name__)

#: The SavedModel variable Model Garden's TF Hub exporter stores the tokenizer casing in.
DO_LOWER_CASE_KEY = "do_lower_case/.ATTRIBUTES/VARIABLE_VALUE"


@dataclass
class SourceInfo:
    """What :func:`describe_source` decided."""

    kind: str                       # "tf1", "tf2" or "saved_model"
    naming: str = "tf1"             # the variables' names: "tf1" (Google's) or "tf2" (object graph)
    config_inferred: bool = False
    activation: dict = field(default_factory=dict)
    config_changed: bool = False    # hidden_act differs from the config file's
    saved_model_dir: str = None
    vocab: str = None               # default vocabulary (None: beside the checkpoint)
    do_lower_case: bool = None      # from the SavedModel, when it says
    notes: list = field(default_factory=list)


def saved_model_dir(prefix):
    """The SavedModel directory whose ``variables/variables`` is ``prefix``, or None."""
    variables = os.path.dirname(os.path.abspath(prefix))
    if os.path.basename(prefix) != "variables" or os.path.basename(variables) != "variables":
        return None
    directory = os.path.dirname(variables)
    return directory if is_saved_model(directory) else None


def source_kind(reader):
    """``"saved_model"``, ``"tf2"`` or ``"tf1"`` for an open checkpoint."""
    if saved_model_dir(reader.prefix):
        return "saved_model"
    return "tf2" if is_tf2(reader) else "tf1"


def _do_lower_case(reader):
    if not reader.has_tensor(DO_LOWER_CASE_KEY):
        return None
    value = np.asarray(reader.get_tensor(DO_LOWER_CASE_KEY))
    if value.shape != () or value.dtype != np.bool_:
        logger.warning("%s is a %s %s, not a bool scalar; casing guessed from the vocabulary",
                       DO_LOWER_CASE_KEY, value.dtype, list(value.shape))
        return None
    return bool(value)


def describe_source(config, reader, gelu=None):
    """``(BertConfig, config path or None, SourceInfo)`` for converting ``reader``'s checkpoint
    with ``config`` (path, dict, BertConfig or None) and ``gelu`` (None, exact, tanh)."""
    kind = source_kind(reader)
    naming = "tf2" if is_tf2(reader) else "tf1"
    info = SourceInfo(kind=kind, naming=naming, saved_model_dir=saved_model_dir(reader.prefix))
    info.notes.extend(getattr(reader, "resolution_notes", ()))  # a version / subdirectory taken
    if info.saved_model_dir:
        assets = os.path.join(info.saved_model_dir, "assets", VOCAB_NAME)
        info.vocab = assets if os.path.isfile(assets) else None
        info.do_lower_case = _do_lower_case(reader)
    if config is None and info.saved_model_dir:  # a config the user put into the SavedModel
        for name in CHECKPOINT_CONFIG_NAMES:
            if os.path.isfile(os.path.join(info.saved_model_dir, name)):
                config = os.path.join(info.saved_model_dir, name)
                break
    try:
        cfg, path = resolve_config(config, reader.prefix)
    except ConfigError:
        if config is not None or kind == "tf1":
            raise
        if naming == "tf1":  # a TF1 SavedModel: a TF Serving export of Google's TF1 model
            cfg, note = infer_tf1_config(reader.get_variable_to_shape_map(),
                                         info.saved_model_dir, reader.prefix)
            info.config_inferred, path = True, None
            info.notes.append(note)
            return _finish(cfg, path, info, gelu)
        resolved = resolve_tf2(reader)
        resolved.require_structure(reader.prefix)  # no BERT at all: say that, not "no config"
        cfg, path = infer_config(resolved.weights, reader.get_variable_to_shape_map(),
                                 reader.prefix), None
        info.config_inferred = True
        info.notes.append(
            f"no {GOOGLE_CONFIG_NAME} given or found: the config was inferred from the tensor "
            f"shapes (vocab {cfg.vocab_size}, hidden {cfg.hidden_size}, {cfg.num_hidden_layers} "
            f"layers, {cfg.num_attention_heads} heads, intermediate {cfg.intermediate_size}, "
            f"{cfg.max_position_embeddings} positions, type vocab {cfg.type_vocab_size}; "
            f"layer_norm_eps {cfg.layer_norm_eps} assumed, Model Garden's)")
    return _finish(cfg, path, info, gelu)


def _finish(cfg, path, info, gelu):
    """Choose the GELU form (by the variables' naming) and return describe_source's triple."""
    before = cfg.hidden_act
    info.activation = choose_activation(cfg, gelu, info.naming, path or "the config")
    info.config_changed = cfg.hidden_act != before
    return cfg, path, info
