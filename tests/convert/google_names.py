"""What a converted model must hold, written out by the tests, not taken from the converter.

Two independent references:

* :func:`expected_entry` — a table of Google's TF1 variable names (``modeling.py``,
  ``run_pretraining.py``, ``run_classifier.py``, ``run_squad.py``) and of Model Garden's TF2
  object paths, each with the PyTorch key it becomes and the layout change it needs, spelled
  out here line by line. ``tf.layers.dense`` stores kernels as ``[in, out]`` (torch's Linear
  wants ``[out, in]``: transpose); ``output_weights`` of the heads are created ``[out, in]``
  already (no transpose); EinsumDense keeps heads as separate axes.
* :func:`google_forward` — Google's BERT forward pass (``modeling.py`` formulas: embeddings,
  LayerNorm eps 1e-12, scaled dot-product attention with the ``-10000`` mask, exact-erf GELU,
  tanh pooler over ``[CLS]``), in float64 numpy over the *TF1-named* raw arrays. It never looks
  at a PyTorch key, so a dropped or wrong transform in the converter moves our model's outputs
  away from it.
"""
import math
import re

import numpy as np

TF2_SUFFIX = "/.ATTRIBUTES/VARIABLE_VALUE"


def _t(a):          # tf.layers.dense kernel [in, out] -> torch Linear weight [out, in]
    return a.T


def _keep(a):
    return a


def _flat(a):       # EinsumDense bias [heads, head_dim] -> [hidden]
    return a.reshape(-1)


def _qkv_kernel(a):  # EinsumDense "abc,cde->abde" kernel [hidden, heads, head_dim] -> [hidden_out, hidden_in]
    return a.reshape(a.shape[0], -1).T


def _out_kernel(a):  # EinsumDense "abcd,cde->abe" kernel [heads, head_dim, hidden] -> [hidden_out, hidden_in]
    return a.reshape(-1, a.shape[-1]).T


_L = r"(?P<l>\d+)"
_ENC = "{T}encoder.layer.{l}."

#: (TF1 name regex, torch key template, transform). ``{T}`` is the trunk prefix ("bert." in
#: head models, "" in BertModel); ``{l}`` the layer number.
TF1_TABLE = [
    (r"bert/embeddings/word_embeddings", "{T}embeddings.word_embeddings.weight", _keep),
    (r"bert/embeddings/position_embeddings", "{T}embeddings.position_embeddings.weight", _keep),
    (r"bert/embeddings/token_type_embeddings", "{T}embeddings.token_type_embeddings.weight", _keep),
    (r"bert/embeddings/LayerNorm/gamma", "{T}embeddings.LayerNorm.weight", _keep),
    (r"bert/embeddings/LayerNorm/beta", "{T}embeddings.LayerNorm.bias", _keep),
    (rf"bert/encoder/layer_{_L}/attention/self/query/kernel", _ENC + "attention.self.query.weight", _t),
    (rf"bert/encoder/layer_{_L}/attention/self/query/bias", _ENC + "attention.self.query.bias", _keep),
    (rf"bert/encoder/layer_{_L}/attention/self/key/kernel", _ENC + "attention.self.key.weight", _t),
    (rf"bert/encoder/layer_{_L}/attention/self/key/bias", _ENC + "attention.self.key.bias", _keep),
    (rf"bert/encoder/layer_{_L}/attention/self/value/kernel", _ENC + "attention.self.value.weight", _t),
    (rf"bert/encoder/layer_{_L}/attention/self/value/bias", _ENC + "attention.self.value.bias", _keep),
    (rf"bert/encoder/layer_{_L}/attention/output/dense/kernel", _ENC + "attention.output.dense.weight", _t),
    (rf"bert/encoder/layer_{_L}/attention/output/dense/bias", _ENC + "attention.output.dense.bias", _keep),
    (rf"bert/encoder/layer_{_L}/attention/output/LayerNorm/gamma", _ENC + "attention.output.LayerNorm.weight", _keep),
    (rf"bert/encoder/layer_{_L}/attention/output/LayerNorm/beta", _ENC + "attention.output.LayerNorm.bias", _keep),
    (rf"bert/encoder/layer_{_L}/intermediate/dense/kernel", _ENC + "intermediate.dense.weight", _t),
    (rf"bert/encoder/layer_{_L}/intermediate/dense/bias", _ENC + "intermediate.dense.bias", _keep),
    (rf"bert/encoder/layer_{_L}/output/dense/kernel", _ENC + "output.dense.weight", _t),
    (rf"bert/encoder/layer_{_L}/output/dense/bias", _ENC + "output.dense.bias", _keep),
    (rf"bert/encoder/layer_{_L}/output/LayerNorm/gamma", _ENC + "output.LayerNorm.weight", _keep),
    (rf"bert/encoder/layer_{_L}/output/LayerNorm/beta", _ENC + "output.LayerNorm.bias", _keep),
    (r"bert/pooler/dense/kernel", "{T}pooler.dense.weight", _t),
    (r"bert/pooler/dense/bias", "{T}pooler.dense.bias", _keep),
    (r"cls/predictions/transform/dense/kernel", "cls.predictions.transform.dense.weight", _t),
    (r"cls/predictions/transform/dense/bias", "cls.predictions.transform.dense.bias", _keep),
    (r"cls/predictions/transform/LayerNorm/gamma", "cls.predictions.transform.LayerNorm.weight", _keep),
    (r"cls/predictions/transform/LayerNorm/beta", "cls.predictions.transform.LayerNorm.bias", _keep),
    (r"cls/predictions/output_bias", "cls.predictions.bias", _keep),
    # get_variable("output_weights", [num_labels, hidden]): already torch's [out, in].
    (r"cls/seq_relationship/output_weights", "cls.seq_relationship.weight", _keep),
    (r"cls/seq_relationship/output_bias", "cls.seq_relationship.bias", _keep),
    (r"output_weights", "classifier.weight", _keep),
    (r"output_bias", "classifier.bias", _keep),
    (r"cls/squad/output_weights", "qa_outputs.weight", _keep),
    (r"cls/squad/output_bias", "qa_outputs.bias", _keep),
]

_TL = rf"encoder/_transformer_layers/{_L}/"
#: Model Garden (BertEncoder + BertPretrainerV2-style heads) object paths, as in
#: fixtures/checkpoints/tf2-pretraining (without the TF2 suffix).
TF2_TABLE = [
    (r"encoder/_embedding_layer/embeddings", "{T}embeddings.word_embeddings.weight", _keep),
    (r"masked_lm/embedding_table", "{T}embeddings.word_embeddings.weight", _keep),
    (r"encoder/_position_embedding_layer/embeddings", "{T}embeddings.position_embeddings.weight", _keep),
    (r"encoder/_type_embedding_layer/embeddings", "{T}embeddings.token_type_embeddings.weight", _keep),
    (r"encoder/_embedding_norm_layer/gamma", "{T}embeddings.LayerNorm.weight", _keep),
    (r"encoder/_embedding_norm_layer/beta", "{T}embeddings.LayerNorm.bias", _keep),
    (_TL + r"_attention_layer/_(?P<p>query|key|value)_dense/kernel", _ENC + "attention.self.{p}.weight", _qkv_kernel),
    (_TL + r"_attention_layer/_(?P<p>query|key|value)_dense/bias", _ENC + "attention.self.{p}.bias", _flat),
    (_TL + r"_attention_layer/_output_dense/kernel", _ENC + "attention.output.dense.weight", _out_kernel),
    (_TL + r"_attention_layer/_output_dense/bias", _ENC + "attention.output.dense.bias", _keep),
    (_TL + r"_attention_layer_norm/gamma", _ENC + "attention.output.LayerNorm.weight", _keep),
    (_TL + r"_attention_layer_norm/beta", _ENC + "attention.output.LayerNorm.bias", _keep),
    (_TL + r"_intermediate_dense/kernel", _ENC + "intermediate.dense.weight", _t),
    (_TL + r"_intermediate_dense/bias", _ENC + "intermediate.dense.bias", _keep),
    (_TL + r"_output_dense/kernel", _ENC + "output.dense.weight", _t),
    (_TL + r"_output_dense/bias", _ENC + "output.dense.bias", _keep),
    (_TL + r"_output_layer_norm/gamma", _ENC + "output.LayerNorm.weight", _keep),
    (_TL + r"_output_layer_norm/beta", _ENC + "output.LayerNorm.bias", _keep),
    (r"encoder/_pooler_layer/kernel", "{T}pooler.dense.weight", _t),
    (r"encoder/_pooler_layer/bias", "{T}pooler.dense.bias", _keep),
    (r"masked_lm/dense/kernel", "cls.predictions.transform.dense.weight", _t),
    (r"masked_lm/dense/bias", "cls.predictions.transform.dense.bias", _keep),
    (r"masked_lm/layer_norm/gamma", "cls.predictions.transform.LayerNorm.weight", _keep),
    (r"masked_lm/layer_norm/beta", "cls.predictions.transform.LayerNorm.bias", _keep),
    (r"masked_lm/bias", "cls.predictions.bias", _keep),
    # Keras Dense kernel [in, out] (unlike TF1's output_weights): transposed.
    (r"next_sentence/out_proj/kernel", "cls.seq_relationship.weight", _t),
    (r"next_sentence/out_proj/bias", "cls.seq_relationship.bias", _keep),
]

#: Heads whose PyTorch keys put the trunk under "bert." (BertModel itself has no prefix).
_TRUNK = {"base": ""}


def expected_entry(name, array, head):
    """``(torch key, array in torch layout)`` for the TF variable ``name`` in a ``head`` model,
    from this module's tables; None for a name the tables do not know (slots, bookkeeping)."""
    trunk = _TRUNK.get(head, "bert.")
    bare = name[: -len(TF2_SUFFIX)] if name.endswith(TF2_SUFFIX) else name
    table = TF2_TABLE if name.endswith(TF2_SUFFIX) else TF1_TABLE
    for pattern, key, move in table:
        m = re.fullmatch(pattern, bare)
        if m:
            out = np.ascontiguousarray(move(np.asarray(array)))
            return key.format(T=trunk, **m.groupdict()), out
    return None


def expected_state(arrays, head):
    """The state dict a conversion of ``arrays`` ({TF name: array}) into ``head`` must write."""
    out = {}
    for name, value in arrays.items():
        entry = expected_entry(name, value, head)
        assert entry is not None, f"the test's table does not know {name}"
        assert entry[0] not in out, f"two TF names give {entry[0]}"
        out[entry[0]] = entry[1]
    return out


# --- Google's forward pass (modeling.py), float64 numpy over TF1 names -----------------------
def _layer_norm(x, gamma, beta):
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + 1e-12) * gamma + beta


def _gelu(x):
    erf = np.vectorize(math.erf)
    return 0.5 * x * (1.0 + erf(x / math.sqrt(2.0)))


def google_forward(w, config, input_ids, token_type_ids, attention_mask):
    """modeling.BertModel + get_pooled_output: ``(sequence_output, pooled_output)`` for the
    TF1 variables ``w`` ({name: array}), all in float64."""
    w = {k: np.asarray(v, np.float64) for k, v in w.items()}
    batch, seq = input_ids.shape
    heads = config["num_attention_heads"]
    hd = config["hidden_size"] // heads
    e = "bert/embeddings/"
    x = (w[e + "word_embeddings"][input_ids] + w[e + "token_type_embeddings"][token_type_ids]
         + w[e + "position_embeddings"][:seq][None])
    x = _layer_norm(x, w[e + "LayerNorm/gamma"], w[e + "LayerNorm/beta"])
    # create_attention_mask_from_input_mask + (1 - mask) * -10000.0 added to the scores
    adder = (1.0 - attention_mask[:, None, None, :].astype(np.float64)) * -10000.0

    def dense(v, scope):  # tf.layers.dense: v @ kernel + bias, kernel [in, out]
        return v @ w[scope + "/kernel"] + w[scope + "/bias"]

    def split(v):
        return v.reshape(batch, seq, heads, hd).transpose(0, 2, 1, 3)

    for i in range(config["num_hidden_layers"]):
        s = f"bert/encoder/layer_{i}/"
        q, k, v = (split(dense(x, s + f"attention/self/{p}")) for p in ("query", "key", "value"))
        scores = q @ k.transpose(0, 1, 3, 2) / math.sqrt(hd) + adder
        scores = np.exp(scores - scores.max(-1, keepdims=True))
        probs = scores / scores.sum(-1, keepdims=True)
        ctx = (probs @ v).transpose(0, 2, 1, 3).reshape(batch, seq, heads * hd)
        att = _layer_norm(dense(ctx, s + "attention/output/dense") + x,
                          w[s + "attention/output/LayerNorm/gamma"], w[s + "attention/output/LayerNorm/beta"])
        inter = _gelu(dense(att, s + "intermediate/dense"))
        x = _layer_norm(dense(inter, s + "output/dense") + att,
                        w[s + "output/LayerNorm/gamma"], w[s + "output/LayerNorm/beta"])
    pooled = np.tanh(dense(x[:, 0], "bert/pooler/dense"))
    return x, pooled


def google_classifier_logits(w, pooled):
    """run_classifier.create_model: pooled @ output_weights^T + output_bias."""
    return pooled @ np.asarray(w["output_weights"], np.float64).T + np.asarray(w["output_bias"], np.float64)
