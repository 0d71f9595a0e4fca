"""A KerasHub BERT preset directory, read as data: which model, which head, which tokenizer.

A preset (keras-hub 0.32 ``save_to_preset``) holds ``config.json`` (the backbone's config,
registered name ``keras_hub>BertBackbone``), ``model.weights.h5`` (the backbone),
``tokenizer.json`` and ``assets/tokenizer/vocabulary.txt``, ``metadata.json``; a task preset
adds ``task.json`` (the task's config, backbone and preprocessor embedded),
``preprocessor.json`` and, when the task has weights of its own, ``task.weights.h5``.

What is not in any of these files is KerasHub's code, stated here once: the encoder's GELU is
the tanh approximation (``gelu_approximate``), LayerNorm eps is 1e-12 in the embeddings and
the encoder; the masked-LM head's own dense is followed by the *exact* (erf) GELU and a
LayerNorm with eps 1e-5; the text embedder pools the sequence output (``pooling_mode``, mean
by default, over the padding mask) and L2-normalises it (``normalize``).

:func:`read_preset` reads only JSON (bounded, regular files) and answers with a
:class:`KerasPreset`; the weights are read by :mod:`bertconvert.checkpoint.h5`.
"""
import os
from dataclasses import dataclass, field

from .. import layout
from ..errors import (ConfigError, HeadError, PresetFileMissingError, PresetFormatError,
                      UnsupportedPresetError)
from ..models.config import BertConfig
from ..safeio import parse_json, read_regular_file

BACKBONE_CONFIG = layout.CONFIG_NAME
TASK_CONFIG = "task.json"
TOKENIZER_CONFIG = "tokenizer.json"
METADATA = "metadata.json"
MODEL_WEIGHTS = "model.weights.h5"
TASK_WEIGHTS = "task.weights.h5"
VOCABULARY = os.path.join("assets", "tokenizer", "vocabulary.txt")
BERT_BACKBONE = "keras_hub>BertBackbone"
#: the same classes under KerasNLP's package name (presets saved before keras-hub took over)
_PACKAGES = ("keras_hub>", "keras_nlp>")
_JSON_LIMIT = 1 << 20

#: KerasHub's arithmetic (its code, not its files)
ENCODER_HIDDEN_ACT = layout.HIDDEN_ACT_OF_GELU["tanh"]
MLM_HEAD_ACT = layout.HIDDEN_ACT_OF_GELU["exact"]
MLM_HEAD_LAYER_NORM_EPS = 1e-5
LAYER_NORM_EPS = 1e-12
#: config keys bertconvert's BertForMaskedLM honours for its prediction transform (transformers
#: ignores them and uses hidden_act and layer_norm_eps there too)
MLM_ACT_KEY = "mlm_head_act"
MLM_EPS_KEY = "mlm_head_layer_norm_eps"

#: task class registered name -> (head, whether the task has weights of its own)
TASKS = {
    "keras_hub>BertTextClassifier": (layout.SEQUENCE_CLASSIFICATION, True),
    "keras_hub>BertMaskedLM": (layout.MASKED_LM, True),
    "keras_hub>BertTextEmbedder": (layout.BASE, False),
}
# Earlier names of the same tasks: KerasNLP's, and BertClassifier before its rename.
TASKS.update({"keras_hub>BertClassifier": TASKS["keras_hub>BertTextClassifier"],
              "keras_nlp>BertClassifier": TASKS["keras_hub>BertTextClassifier"],
              "keras_nlp>BertMaskedLM": TASKS["keras_hub>BertMaskedLM"]})


@dataclass
class KerasPreset:
    """What a preset directory says, before any weight is read."""

    directory: str
    config: BertConfig
    head: str
    num_labels: int = None
    task: str = None                   # registered name of the task class, or None
    weight_files: list = field(default_factory=list)
    vocab: str = None
    lowercase: bool = True
    strip_accents: bool = False
    #: the text embedder's pooling (``{"mode": "mean", "normalize": True}``), else None
    pooling: dict = None
    notes: list = field(default_factory=list)
    json_files: list = field(default_factory=list)

    @property
    def config_path(self):
        return os.path.join(self.directory, BACKBONE_CONFIG)

    def tokenizer_config(self):
        """tokenizer_config.json for the converted directory: KerasHub's casing and accents
        (None without a vocabulary: there is no tokenizer to configure)."""
        if self.vocab is None:
            return None
        return {"do_lower_case": self.lowercase, "strip_accents": self.strip_accents,
                "model_max_length": self.config.max_position_embeddings,
                "tokenizer_class": "BertTokenizer"}


def _load(directory, name, required=True):
    path = os.path.join(directory, name)
    if not os.path.lexists(path):
        if required:
            raise PresetFileMissingError(f"the KerasHub preset {directory} has no {name}")
        return None
    try:
        text = read_regular_file(path, _JSON_LIMIT, PresetFormatError, f"preset file {name}")
    except OSError as e:
        raise PresetFormatError(f"cannot read {path}: {e.strerror or e}") from e
    data = parse_json(text, PresetFormatError, path)
    if not isinstance(data, dict):
        raise PresetFormatError(f"{path} is not a JSON object")
    return data


def registered_name(directory):
    """The ``registered_name`` of ``directory``'s config.json, or None when the directory is
    not a KerasHub preset (no config.json, or a config without one: a transformers or Google
    config)."""
    path = os.path.join(os.fspath(directory), BACKBONE_CONFIG)
    if not os.path.isdir(os.fspath(directory)) or not os.path.isfile(path):
        return None
    try:
        data = _load(os.fspath(directory), BACKBONE_CONFIG)
    except PresetFormatError:
        return None
    name = data.get("registered_name")
    return name if isinstance(name, str) and name.startswith(_PACKAGES) else None


def is_keras_preset(path):
    """True when ``path`` is a directory whose config.json is a KerasHub object's."""
    try:
        return registered_name(path) is not None
    except OSError:
        return False


def _bert_config(data, where):
    cfg = data.get("config")
    if not isinstance(cfg, dict):
        raise PresetFormatError(f"{where} has no 'config' object")
    fields = ("vocabulary_size", "num_layers", "num_heads", "hidden_dim", "intermediate_dim")
    missing = [k for k in fields if k not in cfg]
    if missing:
        raise PresetFormatError(f"{where} lacks {', '.join(missing)}: not a BertBackbone config")
    try:
        return BertConfig(
            cfg["vocabulary_size"], hidden_size=cfg["hidden_dim"],
            num_hidden_layers=cfg["num_layers"], num_attention_heads=cfg["num_heads"],
            intermediate_size=cfg["intermediate_dim"], hidden_act=ENCODER_HIDDEN_ACT,
            hidden_dropout_prob=cfg.get("dropout", 0.1),
            attention_probs_dropout_prob=cfg.get("dropout", 0.1),
            max_position_embeddings=cfg.get("max_sequence_length", 512),
            type_vocab_size=cfg.get("num_segments", 2), layer_norm_eps=LAYER_NORM_EPS)
    except ConfigError as e:
        raise PresetFormatError(f"{where}: {e}") from e


def _dtype_policy(data):
    policy = data.get("config", {}).get("dtype")
    if isinstance(policy, dict):
        policy = policy.get("config", {}).get("name")
    return policy if isinstance(policy, str) else None


def _tokenizer(directory, task_data):
    data = _load(directory, TOKENIZER_CONFIG, required=False)
    if data is None and task_data is not None:  # the preprocessor embedded in task.json
        pre = task_data.get("config", {}).get("preprocessor") or {}
        data = pre.get("config", {}).get("tokenizer")
    cfg = (data or {}).get("config", {}) if isinstance(data, dict) else {}
    return bool(cfg.get("lowercase", False)), bool(cfg.get("strip_accents", False))


def read_preset(directory, head=None):
    """The :class:`KerasPreset` in ``directory``; ``head`` ("auto"/None or a head name) must
    agree with the preset's task. Named errors: another architecture
    (:class:`UnsupportedPresetError`), missing files (:class:`PresetFileMissingError`),
    broken JSON (:class:`PresetFormatError`)."""
    directory = os.fspath(directory)
    data = _load(directory, BACKBONE_CONFIG)
    name = data.get("registered_name")
    if name not in (BERT_BACKBONE, "keras_nlp>BertBackbone"):
        raise UnsupportedPresetError(
            f"{directory} is a KerasHub preset of {name or data.get('class_name')!r}, not "
            f"{BERT_BACKBONE!r}: bertconvert converts BERT presets only")
    config = _bert_config(data, os.path.join(directory, BACKBONE_CONFIG))
    preset = KerasPreset(directory, config, layout.BASE, json_files=[BACKBONE_CONFIG])
    policy = _dtype_policy(data)
    if policy and policy != "float32":
        preset.notes.append(f"the preset's dtype policy is {policy}")
    task = _load(directory, TASK_CONFIG, required=False)
    weights = [MODEL_WEIGHTS]
    if task is not None:
        preset.json_files.append(TASK_CONFIG)
        preset.task = task.get("registered_name")
        if preset.task not in TASKS:
            raise UnsupportedPresetError(
                f"{os.path.join(directory, TASK_CONFIG)} is a {preset.task!r} task; bertconvert "
                f"converts {', '.join(sorted(TASKS))} (or a backbone preset)")
        preset.head, has_weights = TASKS[preset.task]
        if has_weights:
            weights.append(TASK_WEIGHTS)
        _task_settings(preset, task.get("config") or {})
    if head not in (None, "auto") and head != preset.head:
        raise HeadError(f"the preset {directory} is a {preset.task or 'BertBackbone'} "
                        f"(head {preset.head}); --head {head} contradicts it")
    for name in weights:
        path = os.path.join(directory, name)
        if not os.path.isfile(path):
            what = (f"{preset.task}'s own weights (task.json names the task)" if name == TASK_WEIGHTS
                    else "the backbone's weights")
            raise PresetFileMissingError(f"the KerasHub preset {directory} has no {name}, "
                                         f"which holds {what}")
        preset.weight_files.append(path)
    vocab = os.path.join(directory, VOCABULARY)
    preset.vocab = vocab if os.path.isfile(vocab) else None
    if preset.vocab is None:
        preset.notes.append(f"the preset has no {VOCABULARY}; the model directory has no vocabulary")
    preset.lowercase, preset.strip_accents = _tokenizer(directory, task)
    return preset


def _task_settings(preset, cfg):
    """The head's settings from the task config: label count, MLM arithmetic, pooling."""
    if preset.head == layout.SEQUENCE_CLASSIFICATION:
        n = cfg.get("num_classes")
        if not isinstance(n, int) or isinstance(n, bool) or n <= 0:
            raise PresetFormatError(f"task.json's num_classes is {n!r}, not a positive count")
        preset.num_labels = n
        preset.config.num_labels = n
        act = cfg.get("activation")
        if act not in (None, "linear"):
            preset.notes.append(f"the classifier applies activation {act!r} to its logits; "
                                "the converted model outputs the logits before it")
    elif preset.head == layout.MASKED_LM:
        setattr(preset.config, MLM_ACT_KEY, MLM_HEAD_ACT)
        setattr(preset.config, MLM_EPS_KEY, MLM_HEAD_LAYER_NORM_EPS)
        preset.notes.append(
            f"the masked-LM head computes the exact GELU and LayerNorm eps "
            f"{MLM_HEAD_LAYER_NORM_EPS:g} ({MLM_ACT_KEY}, {MLM_EPS_KEY} in config.json, honoured "
            f"by bertconvert's BertForMaskedLM); transformers' BertForMaskedLM uses hidden_act "
            f"{ENCODER_HIDDEN_ACT} and eps {LAYER_NORM_EPS:g} there instead")
    else:
        mode, normalize = cfg.get("pooling_mode", "mean"), cfg.get("normalize", True)
        preset.pooling = {"mode": mode, "normalize": bool(normalize),
                          "description": _pooling_text(mode, normalize)}
        preset.notes.append(f"text embedder: the embedding is {preset.pooling['description']}; "
                            "the model directory holds the encoder (head base), which outputs "
                            "the sequence before pooling")


def _pooling_text(mode, normalize):
    how = {"mean": "the mean of the sequence output over the unpadded tokens",
           "cls": "the sequence output at the first ([CLS]) token",
           "max": "the maximum of the sequence output over the unpadded tokens"}.get(
        mode, f"pooled with mode {mode!r}")
    return how + (", L2-normalised" if normalize else "")
