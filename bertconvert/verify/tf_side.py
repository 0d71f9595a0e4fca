"""TensorFlow reference forward pass for parity checks.

This module is deliberately independent of the rest of bertconvert's conversion path: it
reads the checkpoint with TensorFlow's own ``tf.train.load_checkpoint`` (not our TF-free
reader; it reads a SavedModel's ``variables/variables`` too), parses a TF2 checkpoint's
object graph with TensorFlow's own ``trackable_object_graph_pb2`` (not our decoder),
resolves variable names with its own small table (:mod:`bertconvert.verify.tf_names`, not
:mod:`bertconvert.convert.rules`), and computes the forward pass with TensorFlow ops
(:mod:`bertconvert.verify.tf_math`). A bug shared by the converter and this module would
need to be written twice, independently, which is what makes the comparison worth something.

Sources: Google's TF1 checkpoints, and TF2 Model Garden checkpoints and SavedModels of every
kind (BertEncoder V1/V2, EncoderScaffold; pretrainers, classifiers, span labelers, token
classifiers; trainer checkpoints with optimizer state; TF Hub exports). Where a Model
Garden head has its own pooler (the next-sentence head, the default sentence classifier),
the ``pooled`` stage is that pooler, as it is what the head classifies.

GELU: ``gelu="exact"`` (Google's TF1 ``"gelu"``) or ``"tanh"`` (Model Garden's ``"gelu"``,
the tanh approximation); by default exact for TF1 sources, tanh for TF2 ones.

Stages produced, in order: see :mod:`bertconvert.verify.stages`. Example::

    >>> ref = TFReference("uncased_L-12_H-768_A-12/bert_model.ckpt")
    >>> out = ref.forward(input_ids, token_type_ids, attention_mask, head="pretraining")
    >>> list(out)[-2:]
    ['mlm logits', 'nsp logits']
"""
import collections
import json
import logging

import numpy as np

from .. import layout
from ..errors import ConfigError, VerificationError
from . import tf_names
from .sources import check_gelu, find_checkpoint_config, resolve_checkpoint_prefix
from .stages import HEAD_STAGES, LAYER_SUBSTAGES, layer_name, split_stage_name, substage_name  # noqa: F401 (old import path)
from .tf_math import Forward
from .tf_runtime import (TF_INSTALL_HINT, _import_notices_filtered, import_tensorflow,  # noqa: F401
                         raised_by_tensorflow)

log = logging.getLogger(__name__)

_GRAPH_KEY = "_CHECKPOINTABLE_OBJECT_GRAPH"


def _read_config(path):
    # Which file is the config is decided where it is for every caller (find_checkpoint_config,
    # models/config.py); its JSON is read here, not via BertConfig, so that the reference
    # computes from the file as written rather than from our reading of it.
    try:
        with open(path, "r", encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, ValueError) as e:
        raise ConfigError(f"cannot read BERT config {path}: {e}") from e
    if not isinstance(data, dict):
        raise ConfigError(f"BERT config {path} is not a JSON object")
    required = ("hidden_size", "num_hidden_layers", "num_attention_heads")
    missing = [k for k in required if k not in data]
    if missing:
        raise ConfigError(f"BERT config {path} lacks {', '.join(missing)}")
    data.setdefault("hidden_act", "gelu")
    data.setdefault("layer_norm_eps", 1e-12)  # Google's layer_norm hard-codes 1e-12
    return data


def _key_endings(key):
    """The checkpoint key itself as an object path (escapes undone), for graph-less files."""
    path = key[:-len(tf_names.TF2_SUFFIX)] if key.endswith(tf_names.TF2_SUFFIX) else key
    parts = [p.replace(".S", "/").replace("..", ".") for p in path.split("/")]
    return {"/".join(parts[-6:])}


class TFReference:
    """A BERT forward pass in TensorFlow ops over a checkpoint read by TensorFlow.

    ``config_file`` defaults to ``bert_config.json``/``config.json`` beside the checkpoint;
    a TF2 source without one has its configuration read off its tensors' shapes (the
    attention kernels are [hidden, heads, head_size]). ``fallback_config`` (verify passes
    the model directory's config.json) is used only for a TF1 checkpoint without a config:
    a TF2 source's own tensors are the more independent witness. ``gelu``: see the module
    docstring.
    """

    def __init__(self, checkpoint, config_file=None, gelu=None, fallback_config=None):
        self.tf = import_tensorflow()
        self.prefix = resolve_checkpoint_prefix(checkpoint)
        try:
            self.reader = self.tf.train.load_checkpoint(self.prefix)
        except Exception as e:  # TF raises its own error family (DataLossError, NotFound...)
            from ..errors import TFReferenceError
            detail = " ".join(str(e).split())  # one line: TF's messages span several
            raise TFReferenceError(f"TensorFlow cannot read checkpoint {self.prefix}: {detail}; "
                                   "copy or download the checkpoint again") from e
        self.shapes = self.reader.get_variable_to_shape_map()
        self._tf2 = {}
        self.layout = self._detect_layout()
        self.saved_model = self.prefix.replace("\\", "/").endswith("/variables/variables")
        self.gelu = check_gelu(gelu) or ("exact" if self.layout == "tf1" else "tanh")
        self._cache = {}
        self._dtype = np.float32  # compute dtype of the running forward pass
        self._rounding = ()  # dtypes every weight is rounded through first (see forward)
        config_file = config_file or find_checkpoint_config(self.prefix)
        if config_file is not None:
            self.config_file, self.config = config_file, _read_config(config_file)
        elif self.layout == "tf2":
            self.config_file, self.config = None, self._infer_config()
        elif self.saved_model and self._graph_heads() is not None:
            # A TF1 serving export: its own graph is a more independent witness of the
            # head count than the model directory's config.json (fallback_config).
            self.config_file, self.config = None, self._infer_tf1_config()
        elif fallback_config is not None:
            self.config_file, self.config = fallback_config, _read_config(fallback_config)
        else:
            raise VerificationError(
                f"no bert_config.json or config.json beside {self.prefix}; the TensorFlow "
                "reference needs the checkpoint's config (put it next to the checkpoint)")
        self._check_config()

    # --- names -------------------------------------------------------------------------
    def _detect_layout(self):
        if tf_names.TF1_NAMES["word_embeddings"] in self.shapes:
            return "tf1"
        paths = {k: _key_endings(k) for k in self.shapes if k != _GRAPH_KEY}
        if _GRAPH_KEY in self.shapes:
            from tensorflow.core.protobuf import trackable_object_graph_pb2
            graph = tf_names.object_paths(self.reader.get_tensor(_GRAPH_KEY),
                                          trackable_object_graph_pb2)
            for key, endings in graph.items():
                paths.setdefault(key, set()).update(endings)
        self._tf2 = tf_names.resolve_tf2(paths)
        if ("query_kernel", 0) in self._tf2 and ("word_embeddings", None) in self._tf2:
            return "tf2"
        sample = ", ".join(sorted(self.shapes)[:8])
        raise VerificationError(
            f"checkpoint {self.prefix} holds neither Google TF1 BERT names "
            f"({tf_names.TF1_NAMES['word_embeddings']}) nor TF2 Model-Garden names (an object "
            f"path ending in {tf_names.TF2_PATHS['query_kernel'].format(i=0, layers='_transformer_layers')}); first "
            f"variables: {sample}")

    def variable_name(self, logical, layer=None):
        """The checkpoint variable behind a logical weight name.

        When the checkpoint has none, a description of what was looked for is returned
        (for messages); None when the layout has no such weight at all.
        """
        if self.layout == "tf1":
            template = tf_names.TF1_NAMES.get(logical)
            return None if template is None else template.format(i=layer)
        if logical not in tf_names.TF2_PATHS:
            return None
        keys = self._tf2.get((logical, layer))
        if not keys:
            wanted = tf_names.TF2_PATHS[logical]
            wanted = wanted if isinstance(wanted, str) else wanted[0]
            return "an object path ending in " + wanted.format(i=layer, layers="_transformer_layers")
        if len(keys) > 1:
            raise VerificationError(
                f"checkpoint {self.prefix} holds {len(keys)} different variables for {logical}"
                f"{'' if layer is None else f' of layer {layer}'} ({', '.join(keys[:4])}): "
                "it holds more than one network; save the one to verify on its own")
        return keys[0]

    def has(self, logical, layer=None):
        name = self.variable_name(logical, layer)
        return name is not None and name in self.shapes

    def weight(self, logical, layer=None):
        """A tf constant (compute dtype) in TF1 orientation, read with TensorFlow's reader."""
        key = (logical, layer, self._dtype, self._rounding)
        if key not in self._cache:
            name = self.variable_name(logical, layer)
            if name is None or name not in self.shapes:
                raise VerificationError(
                    f"checkpoint {self.prefix} has no variable {name or logical!r}")
            array = np.asarray(self.reader.get_tensor(name))
            if array.dtype.kind == "f":  # as the converter rounds (numpy's round-to-nearest-even)
                from ..convert.tensors import storage_dtype
                for name_ in self._rounding:
                    array = array.astype(storage_dtype(name_))
            array = np.asarray(array, dtype=self._dtype)
            if self.layout == "tf2":
                array = tf_names.reshape_tf2(logical, array)
                if logical in tf_names.TF2_TRANSPOSED:
                    array = array.T
            self._cache[key] = self.tf.constant(array)
        return self._cache[key]

    def _shape(self, logical, layer=None):
        return list(self.shapes[self.variable_name(logical, layer)])

    # --- configuration -----------------------------------------------------------------
    def _num_layers(self):
        count = 0
        while self.has("query_kernel", count):
            count += 1
        return count

    def _infer_config(self):
        """A TF2 source's config from its tensors (Model Garden's defaults for the rest)."""
        rows, width = self._shape("word_embeddings")
        query = self._shape("query_kernel", 0)
        if len(query) != 3:
            raise VerificationError(
                f"checkpoint {self.prefix} has a 2-D query kernel {query}, so its head count "
                "cannot be read off; put the bert_config.json that belongs to it beside it")
        config = {"vocab_size": rows, "hidden_size": width, "num_hidden_layers": self._num_layers(),
                  "num_attention_heads": query[1], "hidden_act": "gelu", "layer_norm_eps": 1e-12}
        log.info("TF reference: no config beside %s; read off its tensors: %s", self.prefix, config)
        return config

    def _graph_heads(self):
        """The head count a TF1 SavedModel's serving graph gives (parsed with TensorFlow's
        own protobuf classes: :func:`bertconvert.verify.tf_names.graph_heads`), or None."""
        if "_heads" not in self.__dict__:
            self._heads = None
            if self.has("word_embeddings"):
                import os
                from tensorflow.core.protobuf import saved_model_pb2
                path = os.path.join(os.path.dirname(os.path.dirname(self.prefix)), "saved_model.pb")
                self._heads = tf_names.graph_heads(path, int(self._shape("word_embeddings")[1]),
                                                   saved_model_pb2, self.tf.make_ndarray)
        return self._heads

    def _infer_tf1_config(self):
        """A TF1 serving export's config: sizes from its tensors, heads from its graph."""
        rows, width = self._shape("word_embeddings")
        config = {"vocab_size": rows, "hidden_size": width, "num_hidden_layers": self._num_layers(),
                  "num_attention_heads": self._graph_heads(), "hidden_act": "gelu",
                  "layer_norm_eps": 1e-12}
        log.info("TF reference: no config beside %s; read off its tensors and graph: %s",
                 self.prefix, config)
        return config

    def _check_config(self):
        cfg = self.config
        source = self.config_file or "the configuration read off the checkpoint"
        layers = cfg["num_hidden_layers"]
        if not self.has("query_kernel", layers - 1):
            raise VerificationError(
                f"{source} says num_hidden_layers={layers} but checkpoint "
                f"{self.prefix} has no {self.variable_name('query_kernel', layers - 1)}; "
                "use the config that belongs to this checkpoint")
        if self.has("query_kernel", layers):
            raise VerificationError(
                f"{source} says num_hidden_layers={layers} but checkpoint "
                f"{self.prefix} has more layers ({self.variable_name('query_kernel', layers)}); "
                "use the config that belongs to this checkpoint")
        if not self.has("word_embeddings"):
            raise VerificationError(f"checkpoint {self.prefix} has no word embeddings "
                                    f"({self.variable_name('word_embeddings')})")
        rows, width = self._shape("word_embeddings")
        if width != cfg["hidden_size"] or rows != cfg.get("vocab_size", rows):
            raise VerificationError(
                f"{source} says vocab_size={cfg.get('vocab_size')}, hidden_size="
                f"{cfg['hidden_size']} but word_embeddings is [{rows}, {width}]")
        query = self._shape("query_kernel", 0)
        if len(query) == 3 and query[1] != cfg["num_attention_heads"]:
            raise VerificationError(
                f"{source} says num_attention_heads={cfg['num_attention_heads']} but the "
                f"checkpoint's attention kernels are {query} ({query[1]} heads); use the "
                "config that belongs to this checkpoint")

    # --- heads -------------------------------------------------------------------------
    _HEAD_WEIGHTS = {
        layout.BASE: (),
        layout.PRETRAINING: ("mlm_transform_kernel", "mlm_output_bias", "nsp_weights"),
        layout.MASKED_LM: ("mlm_transform_kernel", "mlm_output_bias"),
        layout.NEXT_SENTENCE: ("nsp_weights",),
        layout.SEQUENCE_CLASSIFICATION: ("classifier_weights",),
        layout.TOKEN_CLASSIFICATION: ("token_classifier_weights",),
        layout.MULTIPLE_CHOICE: ("classifier_weights",),
        layout.QUESTION_ANSWERING: ("squad_weights",),
    }
    #: Detection order: the most specific structure first.
    _DETECTION_ORDER = (layout.PRETRAINING, layout.MASKED_LM, layout.NEXT_SENTENCE,
                        layout.QUESTION_ANSWERING, layout.SEQUENCE_CLASSIFICATION,
                        layout.TOKEN_CLASSIFICATION)

    def detect_head(self):
        """The head this checkpoint's structure holds (TF1: Google's names; TF2: Model
        Garden's heads); ``base`` when none. Google's TF1 ``output_weights`` is read as a
        sequence classifier: the classifier layouts look alike there."""
        return next((h for h in self._DETECTION_ORDER if self.head_problem(h) is None),
                    layout.BASE)

    def head_problem(self, head):
        """Why this checkpoint cannot produce ``head``'s outputs, or None when it can."""
        if head not in self._HEAD_WEIGHTS:
            return f"unknown head {head!r}; known: {', '.join(self._HEAD_WEIGHTS)}"
        missing = [self.variable_name(w) or w for w in self._HEAD_WEIGHTS[head] if not self.has(w)]
        if missing:
            return (f"the checkpoint has no {', '.join(missing)}, so it carries no "
                    f"{head} head")
        if head == layout.MULTIPLE_CHOICE:
            outputs = self._outputs("classifier_weights")
            if outputs != 1:  # one score per choice; more rows is some other classifier
                return (f"a multiple-choice head scores each choice with one output, but "
                        f"its classifier has {outputs} outputs")
        return None

    def _outputs(self, logical):
        """Output count of a classifier weight (TF1 [out, in]; TF2 Dense [in, out])."""
        shape = self._shape(logical)
        return shape[-1] if self.layout == "tf2" else shape[0]

    def pooler_of(self, head):
        """``(kernel, bias)`` logical names of the pooler ``head`` classifies: its own
        ``pooler_dense`` where the checkpoint has one, else the encoder's."""
        own = {layout.PRETRAINING: "nsp_pooler", layout.NEXT_SENTENCE: "nsp_pooler",
               layout.SEQUENCE_CLASSIFICATION: "classifier_pooler",
               layout.MULTIPLE_CHOICE: "classifier_pooler"}.get(head)
        if own is not None and self.layout == "tf2" and self.has(own + "_kernel"):
            return own + "_kernel", own + "_bias"
        return "pooler_kernel", "pooler_bias"

    # --- forward -----------------------------------------------------------------------
    def forward(self, input_ids, token_type_ids, attention_mask, head=None, dtype="float32",
                substages=False, round_weights=()):
        """Run the reference; returns an ordered dict stage name -> numpy array.

        Inputs are integer arrays [batch, seq] ([batch, choices, seq] for multiple-choice).
        ``head`` None is :meth:`detect_head`. Head stages the checkpoint cannot produce (see
        :meth:`head_problem`) are left out. ``pooled`` is the pooler the head uses
        (:meth:`pooler_of`). ``substages`` also returns each layer's
        :data:`~bertconvert.verify.stages.LAYER_SUBSTAGES` ([batch, seq, width], before the
        layer's own output), as the parity check compares them.
        ``dtype`` "float32" is Google's computation; "float64" runs the same math in double
        precision (weights widened exactly), for an exactness check with tiny tolerances.
        ``round_weights`` (e.g. ``("float16",)``) rounds every floating weight through those
        dtypes first, as ``convert --dtype`` does, so the reference computes with the very
        numbers a reduced-precision model directory holds.
        """
        tf = self.tf
        head = self.detect_head() if head is None else head
        if dtype not in ("float32", "float64"):
            raise VerificationError(f"the TF reference computes in float32 or float64, not {dtype}")
        self._dtype = np.dtype(dtype).type
        self._rounding = tuple(round_weights)
        input_ids = np.asarray(input_ids)
        choices = None
        if input_ids.ndim != (3 if head == layout.MULTIPLE_CHOICE else 2):
            raise VerificationError(
                f"{head} inputs must be [batch, {'choices, ' if head == layout.MULTIPLE_CHOICE else ''}"
                f"seq], got shape {list(input_ids.shape)}")
        if head == layout.MULTIPLE_CHOICE:
            choices = input_ids.shape[1]
        seq = input_ids.shape[-1]
        if seq > int(self._shape("position_embeddings")[0]):
            raise VerificationError(
                f"sequence length {seq} exceeds the checkpoint's max_position_embeddings")
        # Multiple-choice flattens [B, C, T] to [B*C, T], as run_swag-style heads do.
        flat = lambda a: np.asarray(a, dtype=np.int32).reshape(-1, seq)  # noqa: E731
        ids, types, mask = flat(input_ids), flat(token_type_ids), flat(attention_mask)
        batch = ids.shape[0]
        math = Forward(tf, self.weight, self.config, self.gelu)
        out = collections.OrderedDict()
        with tf.device("/CPU:0"):
            hidden = math.embeddings(tf.constant(ids), tf.constant(types))
            out["embeddings"] = hidden
            # Google: mask [B, 1, T] broadcast over queries; adder (1 - mask) * -10000.
            mask_f = tf.cast(tf.constant(mask)[:, None, None, :], hidden.dtype)
            adder = (1.0 - mask_f) * -10000.0
            x2d = tf.reshape(hidden, [batch * seq, -1])
            for i in range(int(self.config["num_hidden_layers"])):
                x2d, parts = math.layer(x2d, adder, batch, seq, i)
                if substages:
                    out.update((substage_name(i, part), tf.reshape(t, [batch, seq, -1]))
                               for part, t in parts.items())
                out[layer_name(i)] = tf.reshape(x2d, [batch, seq, -1])
            sequence_output = out[layer_name(int(self.config["num_hidden_layers"]) - 1)]
            kernel, bias = self.pooler_of(head)
            pooled = math.pooler(sequence_output, kernel, bias) if self.has(kernel) else None
            if pooled is not None:
                out["pooled"] = pooled
            if self.head_problem(head) is None:
                out.update(self._head(math, head, sequence_output, pooled, choices))
        return collections.OrderedDict((k, np.asarray(v.numpy(), dtype=self._dtype))
                                       for k, v in out.items())

    def _head(self, math, head, sequence_output, pooled, choices):
        tf = self.tf
        batch, seq, width = sequence_output.shape
        flat_sequence = tf.reshape(sequence_output, [batch * seq, width])
        res = {}
        if head in (layout.PRETRAINING, layout.MASKED_LM):
            res["mlm logits"] = tf.reshape(math.masked_lm(flat_sequence), [batch, seq, -1])
        if head in (layout.PRETRAINING, layout.NEXT_SENTENCE):
            res["nsp logits"] = math.project(self._needs_pooled(pooled, head), "nsp_weights",
                                             "nsp_bias")
        if head in (layout.SEQUENCE_CLASSIFICATION, layout.MULTIPLE_CHOICE):
            logits = math.project(self._needs_pooled(pooled, head), "classifier_weights",
                                  "classifier_bias")
            if head == layout.MULTIPLE_CHOICE:  # [B*C, 1] -> [B, C]
                logits = tf.reshape(logits, [-1, choices])
            res["logits"] = logits
        if head == layout.TOKEN_CLASSIFICATION:
            logits = math.project(flat_sequence, "token_classifier_weights",
                                  "token_classifier_bias")
            res["logits"] = tf.reshape(logits, [batch, seq, -1])
        if head == layout.QUESTION_ANSWERING:
            logits = tf.reshape(math.project(flat_sequence, "squad_weights", "squad_bias"),
                                [batch, seq, 2])
            res["start logits"], res["end logits"] = logits[..., 0], logits[..., 1]
        return res

    def _needs_pooled(self, pooled, head):
        if pooled is None:
            raise VerificationError(
                f"the {head} head needs a pooler ({self.variable_name('pooler_kernel')}), "
                "which the checkpoint lacks")
        return pooled
