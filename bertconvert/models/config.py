"""BertConfig: reads and writes Google's ``bert_config.json`` and transformers' ``config.json``.

Both files describe the same trunk with the same key names; transformers adds bookkeeping
(``model_type``, ``architectures``, ``id2label``...). We keep every key we do not know
about, so a config read and written again loses nothing.

Example::

    >>> cfg = BertConfig.from_json_file("uncased_L-12_H-768_A-12/bert_config.json")
    >>> cfg.hidden_size, cfg.layer_norm_eps
    (768, 1e-12)
    >>> cfg.to_json_file("out/config.json")            # transformers flavour
    >>> cfg.to_json_file("out/bert_config.json", flavour="google")

Which config a model or a conversion uses is decided in one place, :func:`resolve_config`.
"""
import copy
import inspect
import math
import os
import struct

from ..safeio import MAX_JSON_BYTES, dumps_json, parse_json, read_regular_file
from ..atomic import atomic_write
from ..errors import ConfigError, option
from ..layout import CHECKPOINT_CONFIG_NAMES, CONFIG_NAMES

#: Keys every BERT config must carry; there is no sensible default for them.
REQUIRED_KEYS = (
    "vocab_size",
    "hidden_size",
    "num_hidden_layers",
    "num_attention_heads",
    "intermediate_size",
)

#: Optional keys of Google's bert_config.json, with the defaults of google-research/bert.
DEFAULTS = {
    "hidden_act": "gelu",
    "hidden_dropout_prob": 0.1,
    "attention_probs_dropout_prob": 0.1,
    "max_position_embeddings": 512,
    "type_vocab_size": 2,
    "initializer_range": 0.02,
    # Google's modeling.py hard-codes this epsilon; HF configs spell it out.
    "layer_norm_eps": 1e-12,
}

GOOGLE_KEYS = REQUIRED_KEYS + tuple(k for k in DEFAULTS if k != "layer_norm_eps")

# transformers flags that turn the encoder into something Google's BERT is not.
_UNSUPPORTED_FLAGS = ("is_decoder", "add_cross_attention")


#: Largest label count accepted without a tensor or an ``id2label`` map of that size to back
#: it: building the label maps (and the classifier) is proportional to it, so an absurd
#: number from a config file or an argument must stop here rather than hang or exhaust
#: memory. A checkpoint whose classifier really has more rows is still converted.
MAX_NUM_LABELS = 10 ** 6

#: Constructor parameters that cannot also be config keys.
_RESERVED_KEYS = ("self", "vocab_size_or_config_json_file")


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


SUPPORTED_ACTIVATIONS = ("gelu", "gelu_new", "relu", "tanh", "swish", "silu", "gelu_python")


class BertConfig:
    """Hyper-parameters of a BERT trunk.

    Accepts the 0.6.2 call forms ``BertConfig(vocab_size, hidden_size=..., ...)`` and
    ``BertConfig("path/to/bert_config.json")``; extra keyword arguments are kept as
    attributes and written back out.
    """

    def __init__(self, vocab_size_or_config_json_file=None, hidden_size=768,
                 num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072,
                 hidden_act="gelu", hidden_dropout_prob=0.1,
                 attention_probs_dropout_prob=0.1, max_position_embeddings=512,
                 type_vocab_size=2, initializer_range=0.02, layer_norm_eps=1e-12, **extra):
        source = vocab_size_or_config_json_file
        if isinstance(source, (str, os.PathLike)):
            loaded = self.from_json_file(source)
            self.__dict__.update(loaded.__dict__)
            return
        if "vocab_size" in extra and source is None:
            source = extra.pop("vocab_size")
        if not isinstance(source, int) or isinstance(source, bool):
            raise ConfigError(
                "BertConfig needs vocab_size as an int or a path to a JSON config file; "
                f"got {source!r}")
        self.vocab_size = source
        self.hidden_size = hidden_size
        self.num_hidden_layers = num_hidden_layers
        self.num_attention_heads = num_attention_heads
        self.intermediate_size = intermediate_size
        self.hidden_act = hidden_act
        self.hidden_dropout_prob = hidden_dropout_prob
        self.attention_probs_dropout_prob = attention_probs_dropout_prob
        self.max_position_embeddings = max_position_embeddings
        self.type_vocab_size = type_vocab_size
        self.initializer_range = initializer_range
        self.layer_norm_eps = layer_norm_eps
        # num_labels last: its setter sizes the label maps, and an id2label given with it
        # is what may allow more than MAX_NUM_LABELS.
        for key, value in sorted(extra.items(), key=lambda kv: kv[0] == "num_labels"):
            self._check_key(key)
            setattr(self, key, value)
        self._validate()

    # --- construction ------------------------------------------------------------------
    @classmethod
    def from_dict(cls, data):
        """Build a config from a dict of either flavour; unknown keys are kept."""
        if not isinstance(data, dict):
            raise ConfigError(f"a BERT config must be a JSON object, got {type(data).__name__}")
        missing = [k for k in REQUIRED_KEYS if k not in data]
        if missing:
            raise ConfigError(
                "BERT config is missing required field(s) " + ", ".join(missing)
                + "; expected a Google bert_config.json or transformers config.json with "
                + ", ".join(REQUIRED_KEYS))
        for key in data:
            cls._check_key(key)
        data = dict(data)
        vocab_size = data.pop("vocab_size")
        if not isinstance(vocab_size, int) or isinstance(vocab_size, bool) or vocab_size <= 0:
            # checked here: a string would otherwise be taken for a path by __init__
            raise ConfigError(f"config field vocab_size must be a positive integer, got {vocab_size!r}")
        return cls(vocab_size, **data)

    @classmethod
    def from_json_file(cls, json_file):
        """Read ``bert_config.json`` or ``config.json``.

        Raises ConfigError naming the file when it is missing, not JSON, or incomplete.
        """
        try:
            # Bounded, regular files only: a FIFO or /dev/zero must not hang or exhaust memory.
            raw = read_regular_file(json_file, MAX_JSON_BYTES, ConfigError, "config file")
            text = raw.decode("utf-8")
        except FileNotFoundError as e:
            raise ConfigError(f"config file not found: {json_file}") from e
        except (OSError, UnicodeDecodeError) as e:
            raise ConfigError(f"cannot read config file {json_file}: {e}") from e
        data = parse_json(text, ConfigError, f"config file {json_file}")
        try:
            return cls.from_dict(data)
        except ConfigError as e:
            raise ConfigError(f"{json_file}: {e}") from None

    # --- checks ------------------------------------------------------------------------
    @classmethod
    def _check_key(cls, key):
        """Refuse keys that cannot be plain config fields: non-identifiers, dunder names and
        names of the class's own attributes (``to_dict``, ``__class__``...), which a config
        file must not be able to replace."""
        if not isinstance(key, str) or not key.isidentifier():
            raise ConfigError(f"config key {key!r} is not a valid field name (expected an "
                              "identifier such as hidden_size)")
        if key.startswith("__") and key.endswith("__") or key in _RESERVED_KEYS:
            raise ConfigError(f"config key {key!r} is reserved and cannot be a config field")
        if hasattr(cls, key):
            attr = inspect.getattr_static(cls, key)
            if not (isinstance(attr, property) and attr.fset is not None):
                raise ConfigError(f"config key {key!r} collides with {cls.__name__}.{key} "
                                  "(a method or attribute of the config class); remove it")

    def _validate(self):
        for key in REQUIRED_KEYS:
            value = getattr(self, key)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ConfigError(f"config field {key} must be a positive integer, got {value!r}")
        if self.hidden_size % self.num_attention_heads:
            raise ConfigError(
                f"hidden_size ({self.hidden_size}) is not a multiple of num_attention_heads "
                f"({self.num_attention_heads})")
        act = self.hidden_act
        if isinstance(act, str) and act not in SUPPORTED_ACTIVATIONS or \
                not isinstance(act, str) and not callable(act):
            raise ConfigError(
                f"unsupported hidden_act {act!r}; supported: {', '.join(SUPPORTED_ACTIVATIONS)}")
        for key in ("max_position_embeddings", "type_vocab_size"):
            value = getattr(self, key)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ConfigError(f"config field {key} must be a positive integer, got {value!r}")
        for key in ("hidden_dropout_prob", "attention_probs_dropout_prob", "classifier_dropout"):
            value = getattr(self, key, None)
            if key == "classifier_dropout" and value is None:
                continue
            if not _is_number(value) or not 0.0 <= value < 1.0:
                raise ConfigError(f"config field {key} must be a probability in [0, 1), got {value!r}")
        head_act = getattr(self, "mlm_head_act", None)
        if head_act is not None and head_act not in SUPPORTED_ACTIVATIONS:
            raise ConfigError(f"unsupported mlm_head_act {head_act!r}; supported: "
                              f"{', '.join(SUPPORTED_ACTIVATIONS)}")
        for key in ("layer_norm_eps", "initializer_range", "mlm_head_layer_norm_eps"):
            value = getattr(self, key, None)
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
        labels = self.__dict__.get("num_labels")
        if labels is not None:
            id2label = self.__dict__.get("id2label")
            backed = len(id2label) if isinstance(id2label, dict) else 0
            check_num_labels(labels, "config field num_labels", max(MAX_NUM_LABELS, backed))
        architectures = getattr(self, "architectures", None)
        if architectures is not None and (not isinstance(architectures, list) or not all(
                isinstance(a, str) for a in architectures)):
            raise ConfigError(f"config field architectures must be a list of class names, "
                              f"got {architectures!r}")
        # transformers variants whose math differs from Google's encoder: refuse rather than
        # silently compute something else.
        position_type = getattr(self, "position_embedding_type", None)
        if position_type not in (None, "absolute"):
            raise ConfigError(
                f"position_embedding_type {position_type!r} is not supported; only Google's "
                "learned absolute position embeddings (\"absolute\") are")
        model_type = getattr(self, "model_type", None)
        if model_type not in (None, "bert"):
            raise ConfigError(
                f"config has model_type {model_type!r}; only BERT (\"bert\") configs are "
                "supported (other families use different embeddings or layers)")
        for key in _UNSUPPORTED_FLAGS:
            if getattr(self, key, False):
                raise ConfigError(
                    f"config sets {key}=true (a decoder / cross-attention BERT); only the "
                    "bidirectional encoder of Google's BERT is supported")
        embedding_size = getattr(self, "embedding_size", None)
        if embedding_size not in (None, self.hidden_size):
            raise ConfigError(
                f"factorized embeddings (embedding_size={embedding_size} != hidden_size="
                f"{self.hidden_size}) are ALBERT-style and not supported")

    # --- derived values ----------------------------------------------------------------
    @property
    def num_labels(self):
        """Number of labels from ``num_labels`` or ``id2label`` when present, else None."""
        value = self.__dict__.get("num_labels")
        if value is not None:
            return value
        id2label = self.__dict__.get("id2label")
        return len(id2label) if isinstance(id2label, dict) else None

    @num_labels.setter
    def num_labels(self, value):
        self.set_num_labels(value)

    def set_num_labels(self, value, limit=None):
        """Set ``num_labels`` (None, or 1 up to ``limit``; default :data:`MAX_NUM_LABELS`, or
        the size of the config's own ``id2label`` if larger) and resize the label maps. A
        caller that has checked a real tensor of more rows passes that count as ``limit``."""
        if value is not None:
            if limit is None:
                old = self.__dict__.get("id2label")
                limit = max(MAX_NUM_LABELS, len(old) if isinstance(old, dict) else 0)
            check_num_labels(value, limit=limit)
        self.__dict__["num_labels"] = value
        if value is not None:
            old = self.__dict__.get("id2label")
            if not isinstance(old, dict) or len(old) != value:
                self.__dict__["id2label"] = {str(i): f"LABEL_{i}" for i in range(value)}
                self.__dict__["label2id"] = {f"LABEL_{i}": i for i in range(value)}

    # --- output ------------------------------------------------------------------------
    def to_dict(self):
        """Every key, known and extra, as a plain dict (a deep copy)."""
        return copy.deepcopy({k: v for k, v in self.__dict__.items() if not k.startswith("_")})

    def to_google_dict(self):
        """Only the keys of Google's bert_config.json, in Google's order."""
        data = self.to_dict()
        return {k: data[k] for k in GOOGLE_KEYS}

    def to_hf_dict(self, architectures=None):
        """transformers-style dict: ``model_type`` bert, ``architectures``, label maps."""
        data = self.to_dict()
        data["model_type"] = "bert"
        if architectures is not None:
            data["architectures"] = list(architectures)
        if data.get("num_labels") is not None and "id2label" not in data:
            n = data["num_labels"]
            data["id2label"] = {str(i): f"LABEL_{i}" for i in range(n)}
            data["label2id"] = {f"LABEL_{i}": i for i in range(n)}
        data.setdefault("pad_token_id", 0)
        return dict(sorted(data.items()))

    def to_json_string(self, flavour=None):
        """JSON text; ``flavour`` None (all keys), ``"hf"`` or ``"google"``."""
        if flavour is None:
            data = dict(sorted(self.to_dict().items()))
        elif flavour == "hf":
            data = self.to_hf_dict()
        elif flavour == "google":
            data = self.to_google_dict()
        else:
            raise ValueError(f"flavour must be None, 'hf' or 'google', got {flavour!r}")
        return dumps_json(data, ConfigError, "the config", indent=2) + "\n"

    def to_json_file(self, json_file, flavour="hf"):
        """Write the config atomically (see :meth:`to_json_string` for ``flavour``)."""
        with atomic_write(json_file, "w") as f:
            f.write(self.to_json_string(flavour))

    def __eq__(self, other):
        return isinstance(other, BertConfig) and self.to_dict() == other.to_dict()

    def __repr__(self):
        return f"{type(self).__name__} {self.to_json_string()}"


# --- which config: one precedence for loading, converting and verifying ----------------------
def describe_directory(directory):
    """What ``directory`` holds, for error messages."""
    try:
        names = sorted(os.listdir(directory))
    except FileNotFoundError:
        return "nothing: the directory does not exist"
    except NotADirectoryError:
        return "a file, not a directory"
    except OSError as e:
        return f"(unreadable: {e.strerror})"
    return ", ".join(names) if names else "(empty)"


def first_file(directory, names):
    """The first of ``names`` that is a file in ``directory``, or None (order = preference)."""
    for name in names:
        path = os.path.join(directory, name)
        if os.path.isfile(path):
            return path
    return None


def find_config_file(directory, required=True, names=CONFIG_NAMES):
    """Path of the config file in a model directory -- ``config.json``, else
    ``bert_config.json`` (``names``; :data:`~bertconvert.layout.CONFIG_NAMES`) -- or None.

    Raises ConfigError naming what the directory holds when there is none and ``required``.
    """
    path = first_file(directory, names)
    if path is None and required:
        raise ConfigError(f"no model config in {directory}: expected {' or '.join(names)}; "
                          f"found {describe_directory(directory)}")
    return path


def find_checkpoint_config(checkpoint):
    """The config file beside the TF checkpoint prefix ``checkpoint`` -- ``bert_config.json``,
    else ``config.json`` (:data:`~bertconvert.layout.CHECKPOINT_CONFIG_NAMES`) -- or None."""
    # Relative when the checkpoint is: the path names the file in messages (paths as given).
    directory = os.path.dirname(os.fspath(checkpoint))
    return first_file(directory, CHECKPOINT_CONFIG_NAMES)  # "" + name: cwd


def resolve_config(config=None, *, model_dir=None, checkpoint=None):
    """The config a model or a conversion uses: ``(BertConfig, path it was read from or None)``.

    One precedence, first match wins:

    1. ``config``, when given: a BertConfig (copied), a dict, a JSON file, or a directory
       holding one (searched in the order of 3 when the call names a ``checkpoint`` and no
       ``model_dir``, else of 2).
    2. ``model_dir``'s config: ``config.json``, else ``bert_config.json``
       (:data:`~bertconvert.layout.CONFIG_NAMES`): transformers' file is the one that records
       the head and the label count, and a converted directory holds both.
    3. The config beside the TF checkpoint ``checkpoint`` (a prefix): ``bert_config.json``,
       else ``config.json`` (:data:`~bertconvert.layout.CHECKPOINT_CONFIG_NAMES`): Google
       ships ``bert_config.json`` with every checkpoint.

    Raises ConfigError when none of them gives a config (or the file is not a valid one).
    """
    if isinstance(config, BertConfig):
        return copy.deepcopy(config), None
    if isinstance(config, dict):
        return BertConfig.from_dict(config), None
    beside_checkpoint = checkpoint is not None and model_dir is None
    if isinstance(config, (str, os.PathLike)):
        path = os.fspath(config)
        if os.path.isdir(path):
            path = find_config_file(path, names=CHECKPOINT_CONFIG_NAMES if beside_checkpoint
                                    else CONFIG_NAMES)
        return BertConfig.from_json_file(path), path
    if config is not None:
        raise ConfigError(f"{option('--config', 'config=')} must be a path, a dict or a "
                          f"BertConfig, got {type(config).__name__}")
    if model_dir is not None:
        path = find_config_file(os.fspath(model_dir))
    elif checkpoint is not None:
        path = find_checkpoint_config(checkpoint)
        if path is None:  # the directory as the user gave it ("." for a bare prefix)
            directory = os.path.dirname(os.fspath(checkpoint)) or os.curdir
            raise ConfigError(
                f"no model config beside the checkpoint {checkpoint}: expected "
                f"{' or '.join(CHECKPOINT_CONFIG_NAMES)} in {directory}; pass the model's config "
                f"with {option('--config PATH', 'config=PATH')}")
    else:
        raise ConfigError(f"no config: pass a model directory, a config file, or "
                          f"{option('--config', 'config=')}")
    return BertConfig.from_json_file(path), path
