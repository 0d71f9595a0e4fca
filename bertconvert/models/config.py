"""BertConfig: reads and writes Google's ``bert_config.json`` and transformers' ``config.json``.

Both files describe the same trunk with the same key names; transformers adds bookkeeping
(``model_type``, ``architectures``, ``id2label``...). We keep every key we do not know
about, so a config read and written again loses nothing.

Example::

    >>> cfg = BertConfig.from_json_file("uncased_L-12_H-768_A-12/bert_config.json")
    >>> cfg.hidden_size, cfg.layer_norm_eps
    (768, 1e-12)
    >>> cfg.to_json_file("out/config.json")            # every key, as it is
    >>> cfg.to_json_file("out/config.json", flavour="hf")  # + model_type, pad_token_id...
    >>> cfg.to_json_file("out/bert_config.json", flavour="google")

Which config a model or a conversion uses is decided in one place, :func:`resolve_config`.
"""
import copy
import inspect
import os

from ..safeio import MAX_JSON_BYTES, dumps_json, parse_json, read_regular_file
from ..atomic import atomic_write
from ..errors import ConfigError, option
from ..layout import CHECKPOINT_CONFIG_NAMES, CONFIG_NAMES
from .config_checks import (FLOAT32_MAX, FLOAT32_TINY, MAX_NUM_LABELS,  # noqa: F401 (re-exported)
                            REQUIRED_KEYS, SUPPORTED_ACTIVATIONS, check_num_labels,
                            validate_config)

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

#: Constructor parameters that cannot also be config keys.
_RESERVED_KEYS = ("self", "vocab_size_or_config_json_file")


class BertConfig:
    """Hyper-parameters of a BERT trunk.

    Accepts the 0.6.2 call forms ``BertConfig(vocab_size, hidden_size=..., ...)`` and
    ``BertConfig("path/to/bert_config.json")``; extra keyword arguments are kept as
    attributes and written back out.

    As in 0.6.2, the constructor takes any numbers: the config is checked
    (:meth:`validate`) where something is built from it -- a model, a conversion, a load --
    and the fields of a config file are checked when it is read (see
    :mod:`bertconvert.models.config_checks`).
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
        # Every field is checked but the head count, which 0.6.2 checked in the attention
        # layer only: a config it wrote (hidden_size 37, 12 heads) reads back as it was.
        return cls(vocab_size, **data).validate(heads=False)

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

    def validate(self, heads=True):
        """Raise ConfigError naming the first field no model can be built from (NaN or
        infinite numbers, counts that are not positive integers, unsupported variants...).
        ``heads=False`` leaves out the check that ``num_attention_heads`` divides
        ``hidden_size``, which 0.6.2 made only in the attention layer. Returns the config."""
        validate_config(self, heads=heads)
        return self

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

    def to_json_file(self, json_file, flavour=None):
        """Write the config atomically: by default every key as it is (what
        :meth:`from_json_file` reads back into an equal :meth:`to_dict`, as in 0.6.2);
        ``flavour="hf"`` adds transformers' bookkeeping, ``"google"`` keeps Google's keys
        (see :meth:`to_json_string`)."""
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

    The config is checked whole (:meth:`BertConfig.validate`, the head count too): raises
    ConfigError, naming the file, when none of them gives a config or it is not a valid one.
    """
    config, path = _find_config(config, model_dir, checkpoint)
    try:
        config.validate()
    except ConfigError as e:
        if path is None:
            raise
        raise type(e)(f"{path}: {e}") from None
    return config, path


def _find_config(config, model_dir, checkpoint):
    """``(BertConfig, path or None)`` by :func:`resolve_config`'s precedence, unchecked."""
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
