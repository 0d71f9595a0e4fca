"""What makes a BERT config one a model can be built from: the checks of :class:`BertConfig`.

A :class:`~bertconvert.models.config.BertConfig` holds what it is given, as
pytorch-pretrained-bert 0.6.2's did (``BertConfig(99, hidden_size=37)`` is a config). The
checks here run where something is built from it:

* reading a config file or dict (``from_json_file``, ``from_dict``): every field, except
  the head count dividing ``hidden_size`` -- 0.6.2 writes and reads such a config back, and
  refuses it only in the attention layer;
* building a model (``BertPreTrainedModel.__init__``) and choosing the config of a load,
  a conversion or a verification (``resolve_config``): every field, the head count too.

Hostile numbers -- NaN, infinity, zero epsilons, absurd label counts -- so never reach a
model or a converted file, and each refusal names the field.
"""
import math
import struct

from ..errors import AttentionHeadsError, ConfigError

#: Keys every BERT config must carry; there is no sensible default for them.
REQUIRED_KEYS = (
    "vocab_size",
    "hidden_size",
    "num_hidden_layers",
    "num_attention_heads",
    "intermediate_size",
)

SUPPORTED_ACTIVATIONS = ("gelu", "gelu_new", "relu", "tanh", "swish", "silu", "gelu_python")

# transformers flags that turn the encoder into something Google's BERT is not.
_UNSUPPORTED_FLAGS = ("is_decoder", "add_cross_attention")

#: Largest label count accepted without a tensor or an ``id2label`` map of that size to back
#: it: building the label maps (and the classifier) is proportional to it, so an absurd
#: number from a config file or an argument must stop here rather than hang or exhaust
#: memory. A checkpoint whose classifier really has more rows is still converted.
MAX_NUM_LABELS = 10 ** 6

#: The largest finite float32 and its smallest positive (subnormal) value.
FLOAT32_MAX = struct.unpack("<f", b"\xff\xff\x7f\x7f")[0]
FLOAT32_TINY = struct.unpack("<f", b"\x01\x00\x00\x00")[0]


def _as_float32(value):
    """``value`` rounded to float32 (to nearest, overflowing to infinity)."""
    try:
        return struct.unpack("<f", struct.pack("<f", float(value)))[0]
    except OverflowError:  # beyond float64 (an int), or a float that rounds to infinity
        return math.inf if value > 0 else -math.inf


def _is_number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _is_count(value):
    return isinstance(value, int) and not isinstance(value, bool)


def check_num_labels(value, what="num_labels", limit=MAX_NUM_LABELS):
    """Raise ConfigError unless ``value`` is an int in ``1..limit`` (see :data:`MAX_NUM_LABELS`)."""
    if not _is_count(value) or value < 1:
        raise ConfigError(f"{what} must be a positive integer, got {value!r}")
    if value > limit:
        raise ConfigError(f"{what} is {value}, more than the {limit} labels bertconvert accepts "
                          "when no classifier tensor of that size backs it; check the value")


def check_attention_heads(config):
    """Raise AttentionHeadsError (a ValueError) unless ``num_attention_heads`` divides
    ``hidden_size``; the message is pytorch-pretrained-bert 0.6.2's."""
    if not all(_is_count(getattr(config, k, None)) and getattr(config, k) > 0
               for k in ("hidden_size", "num_attention_heads")):
        _check_counts(config)  # a ConfigError naming the field (not a ZeroDivisionError)
    if config.hidden_size % config.num_attention_heads:
        raise AttentionHeadsError(
            f"The hidden size ({config.hidden_size}) is not a multiple of the number of "
            f"attention heads ({config.num_attention_heads})")


def _check_counts(config):
    for key in REQUIRED_KEYS + ("max_position_embeddings", "type_vocab_size"):
        value = getattr(config, key, None)
        if not _is_count(value) or value <= 0:
            raise ConfigError(f"config field {key} must be a positive integer, got {value!r}")


def _check_numbers(config):
    act = config.hidden_act
    if isinstance(act, str) and act not in SUPPORTED_ACTIVATIONS or \
            not isinstance(act, str) and not callable(act):
        raise ConfigError(
            f"unsupported hidden_act {act!r}; supported: {', '.join(SUPPORTED_ACTIVATIONS)}")
    head_act = getattr(config, "mlm_head_act", None)  # KerasHub's MLM head has its own
    if head_act is not None and head_act not in SUPPORTED_ACTIVATIONS:
        raise ConfigError(f"unsupported mlm_head_act {head_act!r}; supported: "
                          f"{', '.join(SUPPORTED_ACTIVATIONS)}")
    for key in ("hidden_dropout_prob", "attention_probs_dropout_prob", "classifier_dropout"):
        value = getattr(config, key, None)
        if key == "classifier_dropout" and value is None:
            continue
        if not _is_number(value) or not 0.0 <= value < 1.0:
            raise ConfigError(f"config field {key} must be a probability in [0, 1), got {value!r}")
    for key in ("layer_norm_eps", "initializer_range", "mlm_head_layer_norm_eps"):
        value = getattr(config, key, None)
        if key == "mlm_head_layer_norm_eps" and value is None:
            continue
        # NaN or infinity here converts "fine" and then gives non-finite outputs or
        # weights; eps 0 divides by zero on constant inputs.
        if not _is_number(value) or isinstance(value, float) and not math.isfinite(value) \
                or value <= 0:
            raise ConfigError(f"config field {key} must be a positive number (finite: not "
                              f"NaN or infinity), got {value!r}")
        # The model computes in float32: 1e39 there is infinity, 1e-46 is zero.
        single = _as_float32(value)
        if not math.isfinite(single) or single == 0.0:
            raise ConfigError(
                f"config field {key} is {value!r}, which float32 (the model's precision) "
                f"holds as {single!r}: it must lie between {FLOAT32_TINY:.4g} and "
                f"{FLOAT32_MAX:.6g}")


def _check_bookkeeping(config):
    fields = vars(config)
    labels = fields.get("num_labels")
    if labels is not None:
        id2label = fields.get("id2label")
        backed = len(id2label) if isinstance(id2label, dict) else 0
        check_num_labels(labels, "config field num_labels", max(MAX_NUM_LABELS, backed))
    architectures = fields.get("architectures")
    if architectures is not None and (not isinstance(architectures, list) or not all(
            isinstance(a, str) for a in architectures)):
        raise ConfigError(f"config field architectures must be a list of class names, "
                          f"got {architectures!r}")


def _check_variant(config):
    """Refuse transformers variants whose math differs from Google's encoder, rather than
    silently compute something else."""
    position_type = getattr(config, "position_embedding_type", None)
    if position_type not in (None, "absolute"):
        raise ConfigError(
            f"position_embedding_type {position_type!r} is not supported; only Google's "
            "learned absolute position embeddings (\"absolute\") are")
    model_type = getattr(config, "model_type", None)
    if model_type not in (None, "bert"):
        raise ConfigError(
            f"config has model_type {model_type!r}; only BERT (\"bert\") configs are "
            "supported (other families use different embeddings or layers)")
    for key in _UNSUPPORTED_FLAGS:
        if getattr(config, key, False):
            raise ConfigError(
                f"config sets {key}=true (a decoder / cross-attention BERT); only the "
                "bidirectional encoder of Google's BERT is supported")
    embedding_size = getattr(config, "embedding_size", None)
    if embedding_size not in (None, config.hidden_size):
        raise ConfigError(
            f"factorized embeddings (embedding_size={embedding_size} != hidden_size="
            f"{config.hidden_size}) are ALBERT-style and not supported")


def validate_config(config, heads=True):
    """Raise ConfigError naming the first field of ``config`` no model can be built from.

    ``heads=False`` leaves out the one check pytorch-pretrained-bert 0.6.2 made only in the
    attention layer (:func:`check_attention_heads`), for reading config files.
    """
    _check_counts(config)
    if heads:
        check_attention_heads(config)
    _check_numbers(config)
    _check_bookkeeping(config)
    _check_variant(config)
