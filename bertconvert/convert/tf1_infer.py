"""The config of a TF1 SavedModel (a TF Serving export) that came without one.

``estimator.export_saved_model`` writes Google's TF1 variables and a serving graph, no
``bert_config.json``. The shapes determine every size but one: TF1 attention kernels are
2-D (``[hidden, heads * head_size]``), so the head count is read from the serving graph
(:func:`bertconvert.checkpoint.saved_model.read_attention_heads`, no TensorFlow). When the
graph does not say, :class:`~bertconvert.errors.ConfigRequiredError` names ``--config`` and
what was inferred, so the user knows which one value to supply.
"""
import os

from ..checkpoint.saved_model import SAVED_MODEL_PB, read_attention_heads
from ..errors import ConfigRequiredError, option
from ..models.config import BertConfig

#: config field -> (TF1 variable, dimension) that sizes it. Layers are counted separately.
SHAPE_FIELDS = (
    ("vocab_size", "bert/embeddings/word_embeddings", 0),
    ("hidden_size", "bert/embeddings/word_embeddings", 1),
    ("intermediate_size", "bert/encoder/layer_0/intermediate/dense/kernel", 1),
    ("max_position_embeddings", "bert/embeddings/position_embeddings", 0),
    ("type_vocab_size", "bert/embeddings/token_type_embeddings", 0),
)
#: The run_classifier head's matrix: its rows are the label count.
CLASSIFIER = "output_weights"
#: Google's modeling.py: LayerNorm epsilon 1e-12 (hard-coded), dropout 0.1, init 0.02.
GOOGLE_DEFAULTS = {"hidden_act": "gelu", "layer_norm_eps": 1e-12, "hidden_dropout_prob": 0.1,
                   "attention_probs_dropout_prob": 0.1, "initializer_range": 0.02}


def _layer_count(shapes):
    layers = set()
    for name in shapes:
        parts = name.split("/")
        if len(parts) > 3 and parts[:2] == ["bert", "encoder"] and parts[2].startswith("layer_"):
            index = parts[2][len("layer_"):]
            if index.isdigit():
                layers.add(int(index))
    return max(layers) + 1 if layers else None


def _describe(values):
    return ", ".join(f"{k} {v}" for k, v in values.items())


def infer_tf1_config(shapes, saved_model_dir, source):
    """``(BertConfig, note)`` for a TF1 SavedModel without a config: sizes from ``shapes``
    (``{name: shape}``), the head count from ``saved_model_dir``'s serving graph; else
    ConfigRequiredError naming ``--config`` and the values that were inferred."""
    values, missing = {}, []
    for field, name, dim in SHAPE_FIELDS:
        shape = shapes.get(name)
        if shape is None or len(shape) != 2:
            missing.append(name)
            continue
        values[field] = int(shape[dim])
    layers = _layer_count(shapes)
    if layers is None:
        missing.append("bert/encoder/layer_N/...")
    else:
        values["num_hidden_layers"] = layers
    classifier = shapes.get(CLASSIFIER)
    if classifier is not None and len(classifier) == 2:
        values["num_labels"] = int(classifier[0])
    need = option("--config PATH", "config=PATH")
    if missing:
        raise ConfigRequiredError(
            f"no config for {source}, and its variables do not determine one (missing "
            f"{', '.join(missing)}); pass the model's bert_config.json with {need}")
    heads = read_attention_heads(saved_model_dir, values["hidden_size"])
    if heads is None:
        raise ConfigRequiredError(
            f"no config for {source}: its tensor shapes give {_describe(values)}, but not "
            "num_attention_heads (TF1 attention kernels are 2-D, and its saved_model.pb does "
            f"not record the head count); pass the model's bert_config.json with {need}")
    # The graph's path as the user spelt the checkpoint: <export>/variables/variables.
    graph = os.path.join(os.path.dirname(os.path.dirname(source)), SAVED_MODEL_PB)
    data = dict(values, num_attention_heads=heads, **GOOGLE_DEFAULTS)
    data.pop("num_labels", None)  # the planner takes the label count from output_weights
    config = BertConfig.from_dict(data)
    note = (f"no bert_config.json given or found: the config was inferred, "
            f"{_describe(values)} from the tensor shapes and num_attention_heads {heads} from "
            f"{graph} (layer_norm_eps 1e-12, Google's); pass "
            f"{need} to use another")
    return config, note
