"""TensorFlow reference forward pass for parity checks.

This module is deliberately independent of the rest of bertconvert's conversion path: it
reads the checkpoint with TensorFlow's own ``tf.train.load_checkpoint`` (not our TF-free
reader), resolves variable names with its own small table (not :mod:`bertconvert.convert.rules`),
and computes the forward pass with TensorFlow ops following google-research/bert's
``modeling.py``. A bug shared by the converter and this module would need to be written
twice, independently, which is what makes the comparison worth something.

Stages produced, in order (the names the parity report uses)::

    embeddings, layer 0 ... layer N-1, pooled, <head outputs, see HEAD_STAGES>

With ``substages=True`` each layer's intermediate results come just before the layer's
output (see :data:`LAYER_SUBSTAGES`)::

    embeddings, layer 0 query, layer 0 key, layer 0 value, layer 0 attention output,
    layer 0 intermediate, layer 0, layer 1 query, ...

Example::

    >>> ref = TFReference("uncased_L-12_H-768_A-12/bert_model.ckpt")
    >>> out = ref.forward(input_ids, token_type_ids, attention_mask, head="pretraining")
    >>> list(out)[-2:]
    ['mlm logits', 'nsp logits']
"""
import collections
import contextlib
import glob
import json
import logging
import math
import os
import re
import sys
import tempfile

import numpy as np

from .. import layout
from ..models.config import find_checkpoint_config  # noqa: F401 (verify's import path)
from ..errors import (CheckpointNotFoundError, ConfigError, MissingDependencyError,
                     VerificationError, option)
from .stages import (TF1_NAMES as _TF1_NAMES, TF2_NAMES as _TF2_NAMES,
                                 TF2_SUFFIX as _TF2_SUFFIX, TF2_TRANSPOSED as _TF2_T,
                                 reshape_tf2 as _reshape_tf2)

log = logging.getLogger(__name__)

#: bertconvert is installed from a checkout (it is not on PyPI): its "tf" extra there, or
#: TensorFlow's CPU package directly.
TF_INSTALL_HINT = "pip install '.[tf]'"

#: Output stages each head adds after the trunk (embeddings, layers, pooled).
HEAD_STAGES = layout.HEAD_STAGES

#: Intermediate results of every encoder layer, in computation order, compared before the
#: layer's output: the query/key/value projections (a wrong query or key weight barely moves
#: a layer's output -- softmax over small scores is flat -- but moves its projection by the
#: full error), the attention block's output (after its LayerNorm) and the feed-forward
#: intermediate activation (after GELU).
LAYER_SUBSTAGES = ("query", "key", "value", "attention output", "intermediate")


def substage_name(layer, part):
    """Report name of a layer's sub-stage: ``substage_name(3, "query") == "layer 3 query"``."""
    return f"layer {layer} {part}"


def split_stage_name(name):
    """``"layer 3 query"`` -> ``("layer 3", "query")``; any other stage -> ``(name, None)``."""
    for part in LAYER_SUBSTAGES:
        suffix = " " + part
        if name.startswith("layer ") and name.endswith(suffix):
            group = name[:-len(suffix)]
            if group[len("layer "):].isdigit():
                return group, part
    return name, None


#: Notices TensorFlow's import writes to stderr whatever TF_CPP_MIN_LOG_LEVEL says (TF 2.16+
#: logs them through absl before absl's logging is initialised): they would land in the
#: middle of the verify progress bar and table, and say nothing about the comparison.
_IMPORT_NOTICES = re.compile(
    r"All log messages before absl::InitializeLog\(\) is called|oneDNN custom operations are on"
    r"|cpu_feature_guard|This TensorFlow binary is optimized|To enable the following instructions"
    r"|rebuild TensorFlow with the appropriate compiler flags")


@contextlib.contextmanager
def _import_notices_filtered():
    """Capture file descriptor 2 while TensorFlow is imported, then write back every line
    that is not one of :data:`_IMPORT_NOTICES`. ``TF_CPP_MIN_LOG_LEVEL=0`` keeps them all."""
    if os.environ.get("TF_CPP_MIN_LOG_LEVEL") == "0":
        yield
        return
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (AttributeError, OSError, ValueError):  # no real stderr (embedded, closed)
        yield
        return
    with tempfile.TemporaryFile() as captured:  # a file, not a pipe: no size limit to block on
        os.dup2(captured.fileno(), 2)
        try:
            yield
        finally:
            with contextlib.suppress(AttributeError, OSError, ValueError):
                sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            lines = captured.read().decode("utf-8", "replace").splitlines(keepends=True)
            kept = "".join(line for line in lines if not _IMPORT_NOTICES.search(line))
            if kept:
                sys.stderr.write(kept)


def import_tensorflow():
    """Import TensorFlow, or raise MissingDependencyError with the install hint."""
    # Quiets TF's C++ INFO lines around the parity table; a value the user set wins.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")
    try:
        if "tensorflow" in sys.modules:
            import tensorflow as tf  # noqa: F401
        else:
            with _import_notices_filtered():
                import tensorflow as tf  # noqa: F401 (lazy: only verification needs it)
    except ImportError as e:  # also raised when sys.modules["tensorflow"] is None
        raise MissingDependencyError(
            "verifying against TensorFlow needs TensorFlow, which is not installed; install it "
            f"with `{TF_INSTALL_HINT}` in a bertconvert checkout (or `pip install tensorflow-cpu`), "
            "or verify against a golden file recorded elsewhere "
            f"({option('--reference golden.npz', 'reference=GOLDEN_NPZ')})") from e
    return tf


def raised_by_tensorflow(exc):
    """True when ``exc`` is one of TensorFlow's errors or was raised inside TensorFlow's code
    (its checkpoint reader raises plain IndexError/ValueError too, e.g. "Read less bytes
    than requested" for a truncated shard)."""
    tf = sys.modules.get("tensorflow")
    op_error = getattr(getattr(tf, "errors", None), "OpError", None)
    if op_error is not None and isinstance(exc, op_error):
        return True
    tb = exc.__traceback__
    last = None
    while tb is not None:
        last, tb = tb, tb.tb_next
    filename = last.tb_frame.f_code.co_filename if last is not None else ""
    return f"{os.sep}tensorflow{os.sep}" in filename


def resolve_checkpoint_prefix(path):
    """Checkpoint prefix from a prefix, an ``.index``/``.data-*`` file, or a directory."""
    path = os.fspath(path)
    if os.path.isdir(path):
        indexes = sorted(glob.glob(os.path.join(glob.escape(path), "*.index")))
        if len(indexes) != 1:
            raise CheckpointNotFoundError(
                f"expected exactly one *.index checkpoint in directory {path}, found "
                f"{len(indexes)}; pass the checkpoint prefix (e.g. {path}/bert_model.ckpt)")
        return indexes[0][:-len(".index")]
    if path.endswith(".index"):
        path = path[:-len(".index")]
    path = re.sub(r"\.data-\d{5}-of-\d{5}$", "", path)
    if not os.path.isfile(path + ".index"):
        raise CheckpointNotFoundError(
            f"no TensorFlow checkpoint at {path} (expected {path}.index); pass the checkpoint "
            "prefix, its .index file, or the directory holding it")
    return path


def _read_config(path):
    # Which file is the config is decided where it is for every caller (find_checkpoint_config,
    # models/config.py); its JSON is read here, not via BertConfig, so that the reference
    # computes from the file as written rather than from our reading of it.
    try:
        with open(path, "r", encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, ValueError) as e:
        raise ConfigError(f"cannot read BERT config {path}: {e}") from e
    required = ("hidden_size", "num_hidden_layers", "num_attention_heads")
    missing = [k for k in required if k not in data]
    if missing:
        raise ConfigError(f"BERT config {path} lacks {', '.join(missing)}")
    data.setdefault("hidden_act", "gelu")
    data.setdefault("layer_norm_eps", 1e-12)  # Google's layer_norm hard-codes 1e-12
    return data


class TFReference:
    """A BERT forward pass in TensorFlow ops over a checkpoint read by TensorFlow.

    ``config_file`` defaults to ``bert_config.json``/``config.json`` beside the checkpoint.
    Handles Google's TF1 names and TF2 Model-Garden object names.
    """

    def __init__(self, checkpoint, config_file=None):
        self.tf = import_tensorflow()
        self.prefix = resolve_checkpoint_prefix(checkpoint)
        config_file = config_file or find_checkpoint_config(self.prefix)
        if config_file is None:
            raise VerificationError(
                f"no bert_config.json or config.json beside {self.prefix}; the TensorFlow "
                "reference needs the checkpoint's config (put it next to the checkpoint)")
        self.config_file = config_file
        self.config = _read_config(config_file)
        try:
            self.reader = self.tf.train.load_checkpoint(self.prefix)
        except Exception as e:  # TF raises its own error family (DataLossError, NotFound...)
            from ..errors import TFReferenceError
            detail = " ".join(str(e).split())  # one line: TF's messages span several
            raise TFReferenceError(f"TensorFlow cannot read checkpoint {self.prefix}: {detail}; "
                                   "copy or download the checkpoint again") from e
        self.shapes = self.reader.get_variable_to_shape_map()
        self.layout = self._detect_layout()
        self._cache = {}
        self._dtype = np.float32  # compute dtype of the running forward pass
        self._check_config()

    # --- weights -----------------------------------------------------------------------
    def _detect_layout(self):
        if _TF1_NAMES["word_embeddings"] in self.shapes:
            return "tf1"
        if _TF2_NAMES["query_kernel"].format(i=0) + _TF2_SUFFIX in self.shapes:
            return "tf2"
        sample = ", ".join(sorted(self.shapes)[:8])
        raise VerificationError(
            f"checkpoint {self.prefix} holds neither Google TF1 BERT names "
            f"({_TF1_NAMES['word_embeddings']}) nor TF2 Model-Garden names "
            f"({_TF2_NAMES['query_kernel'].format(i=0)}{_TF2_SUFFIX}); first variables: {sample}")

    def variable_name(self, logical, layer=None):
        """The checkpoint variable behind a logical weight name.

        When the checkpoint has none of the candidate spellings, the first candidate is
        returned (for messages); None when the layout has no such weight at all.
        """
        if self.layout == "tf1":
            template = _TF1_NAMES.get(logical)
            return None if template is None else template.format(i=layer)
        candidates = _TF2_NAMES.get(logical)
        if candidates is None:
            return None
        if isinstance(candidates, str):
            candidates = (candidates,)
        names = [c.format(i=layer) + _TF2_SUFFIX for c in candidates]
        return next((n for n in names if n in self.shapes), names[0])

    def has(self, logical, layer=None):
        name = self.variable_name(logical, layer)
        return name is not None and name in self.shapes

    def weight(self, logical, layer=None):
        """A tf constant (compute dtype) in TF1 orientation, read with TensorFlow's reader."""
        key = (logical, layer, self._dtype)
        if key not in self._cache:
            name = self.variable_name(logical, layer)
            if name is None or name not in self.shapes:
                raise VerificationError(
                    f"checkpoint {self.prefix} has no variable {name or logical!r}")
            array = np.asarray(self.reader.get_tensor(name), dtype=self._dtype)
            if self.layout == "tf2":
                array = _reshape_tf2(logical, array)
                if logical in _TF2_T:
                    array = array.T
            self._cache[key] = self.tf.constant(array)
        return self._cache[key]

    def _check_config(self):
        cfg = self.config
        layers = cfg["num_hidden_layers"]
        if not self.has("query_kernel", layers - 1):
            raise VerificationError(
                f"{self.config_file} says num_hidden_layers={layers} but checkpoint "
                f"{self.prefix} has no {self.variable_name('query_kernel', layers - 1)}; "
                "use the config that belongs to this checkpoint")
        if self.has("query_kernel", layers):
            raise VerificationError(
                f"{self.config_file} says num_hidden_layers={layers} but checkpoint "
                f"{self.prefix} has more layers ({self.variable_name('query_kernel', layers)}); "
                "use the config that belongs to this checkpoint")
        if not self.has("word_embeddings"):
            raise VerificationError(f"checkpoint {self.prefix} has no word embeddings "
                                    f"({self.variable_name('word_embeddings')})")
        rows, width = self.shapes[self.variable_name("word_embeddings")]
        if width != cfg["hidden_size"] or rows != cfg.get("vocab_size", rows):
            raise VerificationError(
                f"{self.config_file} says vocab_size={cfg.get('vocab_size')}, hidden_size="
                f"{cfg['hidden_size']} but word_embeddings is [{rows}, {width}]")

    # --- heads -------------------------------------------------------------------------
    _HEAD_WEIGHTS = {
        layout.BASE: (),
        layout.PRETRAINING: ("mlm_transform_kernel", "mlm_output_bias", "nsp_weights"),
        layout.MASKED_LM: ("mlm_transform_kernel", "mlm_output_bias"),
        layout.NEXT_SENTENCE: ("nsp_weights",),
        layout.SEQUENCE_CLASSIFICATION: ("classifier_weights",),
        layout.TOKEN_CLASSIFICATION: ("classifier_weights",),
        layout.MULTIPLE_CHOICE: ("classifier_weights",),
        layout.QUESTION_ANSWERING: ("squad_weights",),
    }

    def head_problem(self, head):
        """Why this checkpoint cannot produce ``head``'s outputs, or None when it can."""
        if head not in self._HEAD_WEIGHTS:
            return f"unknown head {head!r}; known: {', '.join(self._HEAD_WEIGHTS)}"
        missing = [self.variable_name(w) or w for w in self._HEAD_WEIGHTS[head] if not self.has(w)]
        if missing:
            return (f"the checkpoint has no {', '.join(missing)}, so it carries no "
                    f"{head} head")
        if head == layout.MULTIPLE_CHOICE:
            rows = self.shapes[self.variable_name("classifier_weights")][0]
            if rows != 1:  # one score per choice; more rows is some other classifier
                return (f"a multiple-choice head scores each choice with one output, but "
                        f"output_weights has {rows} rows")
        return None

    # --- math (google-research/bert modeling.py) ----------------------------------------
    def _layer_norm(self, x, prefix, layer=None):
        tf = self.tf
        mean, variance = tf.nn.moments(x, axes=[-1], keepdims=True)
        return tf.nn.batch_normalization(
            x, mean, variance, offset=self.weight(prefix + "_beta", layer),
            scale=self.weight(prefix + "_gamma", layer),
            variance_epsilon=float(self.config["layer_norm_eps"]))

    def _activation(self, x):
        tf = self.tf
        act = str(self.config["hidden_act"]).lower()
        if act in ("gelu", "gelu_python"):
            return x * 0.5 * (1.0 + tf.math.erf(x / math.sqrt(2.0)))
        if act == "gelu_new":
            return 0.5 * x * (1.0 + tf.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x ** 3)))
        if act == "relu":
            return tf.nn.relu(x)
        if act == "tanh":
            return tf.tanh(x)
        if act in ("swish", "silu"):
            return x * tf.sigmoid(x)
        if act == "linear":
            return x
        raise VerificationError(f"unsupported hidden_act {act!r} in {self.config_file}")

    def _dense(self, x2d, kernel, bias, layer=None):
        return self.tf.matmul(x2d, self.weight(kernel, layer)) + self.weight(bias, layer)

    def _embeddings(self, ids, types):
        tf = self.tf
        seq = ids.shape[1]
        words = tf.gather(self.weight("word_embeddings"), ids)
        # Google multiplies a one-hot matrix with the (tiny) token-type table.
        type_table = self.weight("token_type_embeddings")
        one_hot = tf.one_hot(tf.reshape(types, [-1]), depth=int(type_table.shape[0]),
                             dtype=type_table.dtype)
        type_emb = tf.reshape(tf.matmul(one_hot, type_table), words.shape)
        position = self.weight("position_embeddings")[:seq]
        return self._layer_norm(words + type_emb + position[None], "embeddings_ln")

    def _layer(self, x2d, mask_adder, batch, seq, i):
        tf = self.tf
        heads = int(self.config["num_attention_heads"])
        width = int(x2d.shape[-1])
        head_dim = width // heads

        def split(t):  # [B*T, H] -> [B, heads, T, head_dim]
            return tf.transpose(tf.reshape(t, [batch, seq, heads, head_dim]), [0, 2, 1, 3])

        query = self._dense(x2d, "query_kernel", "query_bias", i)
        key = self._dense(x2d, "key_kernel", "key_bias", i)
        value = self._dense(x2d, "value_kernel", "value_bias", i)
        q, k, v = split(query), split(key), split(value)
        scores = tf.matmul(q, k, transpose_b=True) * (1.0 / math.sqrt(float(head_dim)))
        probs = tf.nn.softmax(scores + mask_adder)
        context = tf.reshape(tf.transpose(tf.matmul(probs, v), [0, 2, 1, 3]), [batch * seq, width])
        attn = self._dense(context, "attn_out_kernel", "attn_out_bias", i)
        attn = self._layer_norm(attn + x2d, "attn_ln", i)
        inter = self._activation(self._dense(attn, "intermediate_kernel", "intermediate_bias", i))
        out = self._dense(inter, "output_kernel", "output_bias", i)
        # Flat [B*T, width] tensors in LAYER_SUBSTAGES order; forward() reshapes them.
        parts = (query, key, value, attn, inter)
        return self._layer_norm(out + attn, "output_ln", i), dict(zip(LAYER_SUBSTAGES, parts))

    def forward(self, input_ids, token_type_ids, attention_mask, head=layout.BASE, dtype="float32",
                substages=False):
        """Run the reference; returns an ordered dict stage name -> numpy array.

        Inputs are integer arrays [batch, seq] ([batch, choices, seq] for multiple-choice).
        Head stages the checkpoint cannot produce (see :meth:`head_problem`) are left out.
        ``substages`` also returns each layer's :data:`LAYER_SUBSTAGES` ([batch, seq, width],
        before the layer's own output), as the parity check compares them.
        ``dtype`` "float32" is Google's computation; "float64" runs the same math in double
        precision (weights widened exactly), for an exactness check with tiny tolerances.
        """
        tf = self.tf
        if dtype not in ("float32", "float64"):
            raise VerificationError(f"the TF reference computes in float32 or float64, not {dtype}")
        self._dtype = np.dtype(dtype).type
        input_ids = np.asarray(input_ids)
        choices = None
        if input_ids.ndim != (3 if head == layout.MULTIPLE_CHOICE else 2):
            raise VerificationError(
                f"{head} inputs must be [batch, {'choices, ' if head == layout.MULTIPLE_CHOICE else ''}"
                f"seq], got shape {list(input_ids.shape)}")
        if head == layout.MULTIPLE_CHOICE:
            choices = input_ids.shape[1]
        seq = input_ids.shape[-1]
        if seq > int(self.shapes[self.variable_name("position_embeddings")][0]):
            raise VerificationError(
                f"sequence length {seq} exceeds the checkpoint's max_position_embeddings")
        # Multiple-choice flattens [B, C, T] to [B*C, T], as run_swag-style heads do.
        flat = lambda a: np.asarray(a, dtype=np.int32).reshape(-1, seq)  # noqa: E731
        ids, types, mask = flat(input_ids), flat(token_type_ids), flat(attention_mask)
        batch = ids.shape[0]
        out = collections.OrderedDict()
        with tf.device("/CPU:0"):
            hidden = self._embeddings(tf.constant(ids), tf.constant(types))
            out["embeddings"] = hidden
            # Google: mask [B, 1, T] broadcast over queries; adder (1 - mask) * -10000.
            mask_f = tf.cast(tf.constant(mask)[:, None, None, :], hidden.dtype)
            adder = (1.0 - mask_f) * -10000.0
            x2d = tf.reshape(hidden, [batch * seq, -1])
            for i in range(int(self.config["num_hidden_layers"])):
                x2d, parts = self._layer(x2d, adder, batch, seq, i)
                if substages:
                    out.update((substage_name(i, part), tf.reshape(t, [batch, seq, -1]))
                               for part, t in parts.items())
                out[f"layer {i}"] = tf.reshape(x2d, [batch, seq, -1])
            sequence_output = out[f"layer {int(self.config['num_hidden_layers']) - 1}"]
            pooled = None
            if self.has("pooler_kernel"):
                pooled = tf.tanh(self._dense(sequence_output[:, 0], "pooler_kernel", "pooler_bias"))
                out["pooled"] = pooled
            if self.head_problem(head) is None:
                out.update(self._head(head, sequence_output, pooled, choices))
        return collections.OrderedDict((k, np.asarray(v.numpy(), dtype=self._dtype))
                                       for k, v in out.items())

    def _head(self, head, sequence_output, pooled, choices):
        tf = self.tf
        batch, seq, width = sequence_output.shape
        flat_sequence = tf.reshape(sequence_output, [batch * seq, width])

        def project(x, weights, bias):  # Google: matmul(x, W, transpose_b=True) + bias
            return tf.matmul(x, self.weight(weights), transpose_b=True) + self.weight(bias)

        res = {}
        if head in (layout.PRETRAINING, layout.MASKED_LM):
            x = self._dense(flat_sequence, "mlm_transform_kernel", "mlm_transform_bias")
            x = self._layer_norm(self._activation(x), "mlm_ln")
            # The decoder is the word-embedding matrix itself (tied); only the bias is new.
            logits = project(x, "word_embeddings", "mlm_output_bias")
            res["mlm logits"] = tf.reshape(logits, [batch, seq, -1])
        if head in (layout.PRETRAINING, layout.NEXT_SENTENCE):
            res["nsp logits"] = project(self._needs_pooled(pooled, head), "nsp_weights",
                                        "nsp_bias")
        if head in (layout.SEQUENCE_CLASSIFICATION, layout.MULTIPLE_CHOICE):
            logits = project(self._needs_pooled(pooled, head), "classifier_weights",
                             "classifier_bias")
            if head == layout.MULTIPLE_CHOICE:  # [B*C, 1] -> [B, C]
                logits = tf.reshape(logits, [-1, choices])
            res["logits"] = logits
        if head == layout.TOKEN_CLASSIFICATION:
            logits = project(flat_sequence, "classifier_weights", "classifier_bias")
            res["logits"] = tf.reshape(logits, [batch, seq, -1])
        if head == layout.QUESTION_ANSWERING:
            logits = tf.reshape(project(flat_sequence, "squad_weights", "squad_bias"),
                                [batch, seq, 2])
            res["start logits"], res["end logits"] = logits[..., 0], logits[..., 1]
        return res

    def _needs_pooled(self, pooled, head):
        if pooled is None:
            raise VerificationError(
                f"the {head} head needs bert/pooler, which the checkpoint lacks")
        return pooled
