"""The reference's arithmetic in TensorFlow ops (google-research/bert ``modeling.py``).

Model Garden's TF2 encoders compute the same network -- embeddings summed then LayerNorm,
post-LayerNorm transformer blocks, a tanh pooler on [CLS] -- so one implementation serves
both layouts; what differs is the GELU form (Google's ``"gelu"`` is the exact erf form,
Model Garden's ``"gelu"`` the tanh approximation), chosen by the caller. Weights come from a
``weight(logical, layer=None)`` callable returning tf constants in TF1 orientation.
"""
import math

from ..errors import VerificationError
from .stages import LAYER_SUBSTAGES

#: hidden_act values that mean "GELU, in the form chosen for this run".
GELU_NAMES = ("gelu", "gelu_python", "gelu_new", "gelu_pytorch_tanh", "gelu_fast")


def layer_norm(tf, x, gamma, beta, eps):
    """LayerNorm over the last axis with TF's own moments/batch_normalization ops."""
    mean, variance = tf.nn.moments(x, axes=[-1], keepdims=True)
    return tf.nn.batch_normalization(x, mean, variance, offset=beta, scale=gamma,
                                     variance_epsilon=float(eps))


def activation(tf, x, hidden_act, gelu):
    """``hidden_act`` applied to ``x``; GELU-family names use the ``gelu`` form
    (``"exact"``: x * Phi(x) with erf; ``"tanh"``: the tanh approximation)."""
    act = str(hidden_act).lower()
    if act in GELU_NAMES:
        if gelu == "tanh":
            return 0.5 * x * (1.0 + tf.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x ** 3)))
        return x * 0.5 * (1.0 + tf.math.erf(x / math.sqrt(2.0)))
    if act == "relu":
        return tf.nn.relu(x)
    if act == "tanh":
        return tf.tanh(x)
    if act in ("swish", "silu"):
        return x * tf.sigmoid(x)
    if act == "linear":
        return x
    raise VerificationError(f"unsupported hidden_act {act!r}; the reference computes "
                            f"{', '.join(GELU_NAMES)}, relu, tanh, swish/silu and linear")


class Forward:
    """One forward pass: ``weight`` reads weights, ``config`` is the reference's config dict
    (``num_attention_heads``, ``hidden_act``, ``layer_norm_eps``), ``gelu`` the form."""

    def __init__(self, tf, weight, config, gelu):
        self.tf, self.weight, self.config, self.gelu = tf, weight, config, gelu

    def norm(self, x, prefix, layer=None):
        return layer_norm(self.tf, x, self.weight(prefix + "_gamma", layer),
                          self.weight(prefix + "_beta", layer), self.config["layer_norm_eps"])

    def act(self, x):
        return activation(self.tf, x, self.config["hidden_act"], self.gelu)

    def dense(self, x2d, kernel, bias, layer=None):
        return self.tf.matmul(x2d, self.weight(kernel, layer)) + self.weight(bias, layer)

    def project(self, x, weights, bias):
        """Google's output layers: ``matmul(x, W, transpose_b=True) + bias``, W [out, in]."""
        return self.tf.matmul(x, self.weight(weights), transpose_b=True) + self.weight(bias)

    def embeddings(self, ids, types):
        tf = self.tf
        seq = ids.shape[1]
        words = tf.gather(self.weight("word_embeddings"), ids)
        # Google multiplies a one-hot matrix with the (tiny) token-type table.
        type_table = self.weight("token_type_embeddings")
        one_hot = tf.one_hot(tf.reshape(types, [-1]), depth=int(type_table.shape[0]),
                             dtype=type_table.dtype)
        type_emb = tf.reshape(tf.matmul(one_hot, type_table), words.shape)
        position = self.weight("position_embeddings")[:seq]
        return self.norm(words + type_emb + position[None], "embeddings_ln")

    def layer(self, x2d, mask_adder, batch, seq, i):
        """One post-LayerNorm block: (output [B*T, H], {sub-stage: flat tensor})."""
        tf = self.tf
        heads = int(self.config["num_attention_heads"])
        width = int(x2d.shape[-1])
        head_dim = width // heads

        def split(t):  # [B*T, H] -> [B, heads, T, head_dim]
            return tf.transpose(tf.reshape(t, [batch, seq, heads, head_dim]), [0, 2, 1, 3])

        query = self.dense(x2d, "query_kernel", "query_bias", i)
        key = self.dense(x2d, "key_kernel", "key_bias", i)
        value = self.dense(x2d, "value_kernel", "value_bias", i)
        q, k, v = split(query), split(key), split(value)
        scores = tf.matmul(q, k, transpose_b=True) * (1.0 / math.sqrt(float(head_dim)))
        probs = tf.nn.softmax(scores + mask_adder)
        context = tf.reshape(tf.transpose(tf.matmul(probs, v), [0, 2, 1, 3]), [batch * seq, width])
        attn = self.dense(context, "attn_out_kernel", "attn_out_bias", i)
        attn = self.norm(attn + x2d, "attn_ln", i)
        inter = self.act(self.dense(attn, "intermediate_kernel", "intermediate_bias", i))
        out = self.dense(inter, "output_kernel", "output_bias", i)
        # Flat [B*T, width] tensors in LAYER_SUBSTAGES order; the caller reshapes them.
        parts = (query, key, value, attn, inter)
        return self.norm(out + attn, "output_ln", i), dict(zip(LAYER_SUBSTAGES, parts))

    def pooler(self, sequence_output, kernel="pooler_kernel", bias="pooler_bias"):
        """tanh(dense([CLS])): the encoder's pooler, or a head's own ``pooler_dense``."""
        return self.tf.tanh(self.dense(sequence_output[:, 0], kernel, bias))

    def masked_lm(self, flat_sequence):
        x = self.dense(flat_sequence, "mlm_transform_kernel", "mlm_transform_bias")
        x = self.norm(self.act(x), "mlm_ln")
        # The decoder is the word-embedding matrix itself (tied); only the bias is new.
        return self.project(x, "word_embeddings", "mlm_output_bias")
