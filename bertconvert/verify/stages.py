"""Checkpoint variable names for the TensorFlow reference (:mod:`bertconvert.verify.tf_side`).

Logical weight names (``"query_kernel"``, layer ``{i}``) -> the checkpoint's variable names,
for Google's TF1 layout and TF2 Model-Garden object names, plus the reshapes that bring TF2
tensors into TF1's orientation. Written independently of :mod:`bertconvert.convert.rules` on
purpose: the reference must not share the converter's table, or a wrong rule would pass.
"""
# Logical weight name -> TF variable name template ({i} = layer index). Kernels are read in
# Google's TF1 [in, out] orientation; TF2 tensors are reshaped into it (see reshape_tf2).
TF1_NAMES = {
    "word_embeddings": "bert/embeddings/word_embeddings",
    "position_embeddings": "bert/embeddings/position_embeddings",
    "token_type_embeddings": "bert/embeddings/token_type_embeddings",
    "embeddings_ln_gamma": "bert/embeddings/LayerNorm/gamma",
    "embeddings_ln_beta": "bert/embeddings/LayerNorm/beta",
    "query_kernel": "bert/encoder/layer_{i}/attention/self/query/kernel",
    "query_bias": "bert/encoder/layer_{i}/attention/self/query/bias",
    "key_kernel": "bert/encoder/layer_{i}/attention/self/key/kernel",
    "key_bias": "bert/encoder/layer_{i}/attention/self/key/bias",
    "value_kernel": "bert/encoder/layer_{i}/attention/self/value/kernel",
    "value_bias": "bert/encoder/layer_{i}/attention/self/value/bias",
    "attn_out_kernel": "bert/encoder/layer_{i}/attention/output/dense/kernel",
    "attn_out_bias": "bert/encoder/layer_{i}/attention/output/dense/bias",
    "attn_ln_gamma": "bert/encoder/layer_{i}/attention/output/LayerNorm/gamma",
    "attn_ln_beta": "bert/encoder/layer_{i}/attention/output/LayerNorm/beta",
    "intermediate_kernel": "bert/encoder/layer_{i}/intermediate/dense/kernel",
    "intermediate_bias": "bert/encoder/layer_{i}/intermediate/dense/bias",
    "output_kernel": "bert/encoder/layer_{i}/output/dense/kernel",
    "output_bias": "bert/encoder/layer_{i}/output/dense/bias",
    "output_ln_gamma": "bert/encoder/layer_{i}/output/LayerNorm/gamma",
    "output_ln_beta": "bert/encoder/layer_{i}/output/LayerNorm/beta",
    "pooler_kernel": "bert/pooler/dense/kernel",
    "pooler_bias": "bert/pooler/dense/bias",
    "mlm_transform_kernel": "cls/predictions/transform/dense/kernel",
    "mlm_transform_bias": "cls/predictions/transform/dense/bias",
    "mlm_ln_gamma": "cls/predictions/transform/LayerNorm/gamma",
    "mlm_ln_beta": "cls/predictions/transform/LayerNorm/beta",
    "mlm_output_bias": "cls/predictions/output_bias",
    # [out, in] already: Google stores these with tf.get_variable, not tf.layers.dense.
    "nsp_weights": "cls/seq_relationship/output_weights",
    "nsp_bias": "cls/seq_relationship/output_bias",
    "classifier_weights": "output_weights",
    "classifier_bias": "output_bias",
    "squad_weights": "cls/squad/output_weights",
    "squad_bias": "cls/squad/output_bias",
}

TF2_SUFFIX = "/.ATTRIBUTES/VARIABLE_VALUE"
_L = "encoder/_transformer_layers/{i}/"
# TF2 Model-Garden (object-based) names, without the common suffix. Where one value has
# several spellings, the candidates are tried in order: a variable shared by two objects
# (the word embeddings, also the MLM head's embedding_table) is stored once, under the
# first path TensorFlow's object-graph walk reached, and attribute names moved between
# Model-Garden releases.
TF2_NAMES = {
    "word_embeddings": ("encoder/_embedding_layer/embeddings", "masked_lm/embedding_table"),
    "position_embeddings": ("encoder/_position_embedding_layer/embeddings",
                            "encoder/_position_embedding_layer/_position_embeddings"),
    "token_type_embeddings": "encoder/_type_embedding_layer/embeddings",
    "embeddings_ln_gamma": "encoder/_embedding_norm_layer/gamma",
    "embeddings_ln_beta": "encoder/_embedding_norm_layer/beta",
    "query_kernel": _L + "_attention_layer/_query_dense/kernel",
    "query_bias": _L + "_attention_layer/_query_dense/bias",
    "key_kernel": _L + "_attention_layer/_key_dense/kernel",
    "key_bias": _L + "_attention_layer/_key_dense/bias",
    "value_kernel": _L + "_attention_layer/_value_dense/kernel",
    "value_bias": _L + "_attention_layer/_value_dense/bias",
    "attn_out_kernel": _L + "_attention_layer/_output_dense/kernel",
    "attn_out_bias": _L + "_attention_layer/_output_dense/bias",
    "attn_ln_gamma": _L + "_attention_layer_norm/gamma",
    "attn_ln_beta": _L + "_attention_layer_norm/beta",
    "intermediate_kernel": _L + "_intermediate_dense/kernel",
    "intermediate_bias": _L + "_intermediate_dense/bias",
    "output_kernel": _L + "_output_dense/kernel",
    "output_bias": _L + "_output_dense/bias",
    "output_ln_gamma": _L + "_output_layer_norm/gamma",
    "output_ln_beta": _L + "_output_layer_norm/beta",
    "pooler_kernel": "encoder/_pooler_layer/kernel",
    "pooler_bias": "encoder/_pooler_layer/bias",
    "mlm_transform_kernel": "masked_lm/dense/kernel",
    "mlm_transform_bias": "masked_lm/dense/bias",
    "mlm_ln_gamma": "masked_lm/layer_norm/gamma",
    "mlm_ln_beta": "masked_lm/layer_norm/beta",
    "mlm_output_bias": "masked_lm/bias",
    # Model Garden's classification heads are Dense layers: kernel [in, out] (see TF2_TRANSPOSED).
    "nsp_weights": ("next_sentence/out_proj/kernel", "classification_heads/0/out_proj/kernel"),
    "nsp_bias": ("next_sentence/out_proj/bias", "classification_heads/0/out_proj/bias"),
}
# Logical names whose TF2 tensor is a Dense kernel [in, out] where TF1 stores [out, in].
TF2_TRANSPOSED = frozenset({"nsp_weights"})


def reshape_tf2(name, array):
    """Bring a TF2 einsum-dense tensor into TF1's 2-D/1-D orientation (pure reshapes)."""
    if name.endswith("_kernel") and array.ndim == 3:
        if name == "attn_out_kernel":          # [heads, head_dim, H] -> [H, H]
            return array.reshape(-1, array.shape[-1])
        return array.reshape(array.shape[0], -1)  # [H, heads, head_dim] -> [H, H]
    if name.endswith("_bias") and array.ndim == 2:  # [heads, head_dim] -> [H]
        return array.reshape(-1)
    return array
