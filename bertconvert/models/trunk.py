"""The BERT trunk in PyTorch, with the math of google-research/bert's ``modeling.py``.

Module and parameter names follow the TensorFlow scopes (``LayerNorm``, ``query``,
``word_embeddings``...), so state-dict keys are those of pytorch-pretrained-bert 0.6.2 and
of transformers' ``BertModel``. The head classes live in :mod:`bertconvert.models.heads`; loading
and saving (shared by all of them) is in :class:`BertPreTrainedModel`.

Math, as Google wrote it: embeddings = LayerNorm(word + token_type + position); attention
scores QK^T/sqrt(d) + (1 - mask) * -10000; GELU "gelu" is the exact erf form, "gelu_new" the
tanh approximation; pooler = tanh(dense(h[:, 0])).

Attention runs through ``torch.nn.functional.scaled_dot_product_attention`` with the same
additive mask ("sdpa", the default); ``model.set_attention_implementation("eager")`` selects
the literal matmul-softmax-matmul path, e.g. to compare against it.
"""
import logging
import math

import torch
import torch.nn.functional as F
from torch import nn

from .. import layout
from .config import BertConfig
from .config_checks import check_attention_heads
from .initialise import init_, kind_of_module_tensor
from ..errors import ConfigError
from .loading import PretrainedLoadingMixin

logger = logging.getLogger(__name__)

ATTENTION_IMPLEMENTATIONS = ("sdpa", "eager")


def gelu(x):
    """Exact GELU, x * Phi(x) with the erf form of the normal CDF ("gelu")."""
    return F.gelu(x)


def gelu_new(x):
    """The tanh approximation of GELU ("gelu_new"; what OpenAI GPT used)."""
    return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * torch.pow(x, 3.0))))


def swish(x):
    """x * sigmoid(x) ("swish", also called SiLU)."""
    return F.silu(x)


ACT2FN = {
    "gelu": gelu,
    "gelu_python": gelu,
    "gelu_new": gelu_new,
    "relu": F.relu,
    "tanh": torch.tanh,
    "swish": swish,
    "silu": swish,
}


def get_activation(act):
    """The activation function named by ``config.hidden_act`` (a callable is used as is)."""
    if callable(act):
        return act
    try:
        return ACT2FN[act]
    except (KeyError, TypeError):
        raise ConfigError(f"unsupported hidden_act {act!r}; expected one of {', '.join(ACT2FN)}") from None


def extended_attention_mask(attention_mask, dtype):
    """[batch, seq] 1/0 mask -> additive [batch, 1, 1, seq] mask: 0 to attend, -10000 to not.

    -10000 (not -inf) is Google's constant: a fully padded row still gives a finite softmax.
    """
    mask = attention_mask[:, None, None, :].to(dtype=dtype)
    return (1.0 - mask) * -10000.0


class BertLayerNorm(nn.LayerNorm):
    """LayerNorm in the TF style (epsilon inside the square root, biased variance), with
    pytorch-pretrained-bert 0.6.2's signature ``BertLayerNorm(hidden_size, eps=1e-12)``.

    torch's LayerNorm computes exactly that; this subclass gives every LayerNorm of the model
    0.6.2's class, so ``isinstance(module, BertLayerNorm)`` in ported code finds them.
    """

    def __init__(self, hidden_size, eps=1e-12):
        super().__init__(hidden_size, eps=eps)

    @property
    def variance_epsilon(self):
        """0.6.2's name for :attr:`eps`."""
        return self.eps


class BertEmbeddings(nn.Module):
    """Word + token-type + position embeddings, then LayerNorm and dropout."""

    def __init__(self, config):
        super().__init__()
        self.word_embeddings = nn.Embedding(config.vocab_size, config.hidden_size, padding_idx=0)
        self.position_embeddings = nn.Embedding(config.max_position_embeddings, config.hidden_size)
        self.token_type_embeddings = nn.Embedding(config.type_vocab_size, config.hidden_size)
        self.LayerNorm = BertLayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(self, input_ids, token_type_ids=None):
        seq_length = input_ids.size(1)
        max_positions = self.position_embeddings.num_embeddings
        if seq_length > max_positions:
            raise ValueError(f"input has {seq_length} tokens but the model has only "
                             f"max_position_embeddings={max_positions} positions; truncate the input")
        if token_type_ids is None:
            token_type_ids = torch.zeros_like(input_ids)
        position_ids = torch.arange(seq_length, dtype=torch.long, device=input_ids.device)
        # Same summation order as Google's embedding_postprocessor: (word + type) + position.
        embeddings = self.word_embeddings(input_ids) + self.token_type_embeddings(token_type_ids)
        embeddings = embeddings + self.position_embeddings(position_ids)[None]
        return self.dropout(self.LayerNorm(embeddings))


class BertSelfAttention(nn.Module):
    """Multi-head scaled dot-product self-attention with an additive padding mask."""

    def __init__(self, config):
        super().__init__()
        check_attention_heads(config)  # a ValueError, as 0.6.2's
        self.num_attention_heads = config.num_attention_heads
        self.attention_head_size = config.hidden_size // config.num_attention_heads
        self.all_head_size = self.num_attention_heads * self.attention_head_size
        self.query = nn.Linear(config.hidden_size, self.all_head_size)
        self.key = nn.Linear(config.hidden_size, self.all_head_size)
        self.value = nn.Linear(config.hidden_size, self.all_head_size)
        self.dropout = nn.Dropout(config.attention_probs_dropout_prob)
        self.attention_implementation = "sdpa"

    def transpose_for_scores(self, x):
        """[batch, seq, all_head] -> [batch, heads, seq, head_size]."""
        batch, seq = x.shape[:2]
        return x.view(batch, seq, self.num_attention_heads, self.attention_head_size).permute(0, 2, 1, 3)

    def forward(self, hidden_states, attention_mask=None):
        query = self.transpose_for_scores(self.query(hidden_states))
        key = self.transpose_for_scores(self.key(hidden_states))
        value = self.transpose_for_scores(self.value(hidden_states))
        if self.attention_implementation == "sdpa":
            context = F.scaled_dot_product_attention(
                query, key, value, attn_mask=attention_mask,
                dropout_p=self.dropout.p if self.training else 0.0)
        else:
            scores = torch.matmul(query, key.transpose(-1, -2)) / math.sqrt(self.attention_head_size)
            if attention_mask is not None:
                scores = scores + attention_mask
            probs = self.dropout(torch.softmax(scores, dim=-1))
            context = torch.matmul(probs, value)
        batch, _, seq, _ = context.shape
        return context.permute(0, 2, 1, 3).reshape(batch, seq, self.all_head_size)


class BertSelfOutput(nn.Module):
    """Attention output projection, dropout, residual, LayerNorm."""

    def __init__(self, config):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.LayerNorm = BertLayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(self, hidden_states, input_tensor):
        return self.LayerNorm(self.dropout(self.dense(hidden_states)) + input_tensor)


class BertAttention(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.self = BertSelfAttention(config)
        self.output = BertSelfOutput(config)

    def forward(self, input_tensor, attention_mask=None):
        return self.output(self.self(input_tensor, attention_mask), input_tensor)


class BertIntermediate(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.intermediate_size)
        self.intermediate_act_fn = get_activation(config.hidden_act)

    def forward(self, hidden_states):
        return self.intermediate_act_fn(self.dense(hidden_states))


class BertOutput(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.dense = nn.Linear(config.intermediate_size, config.hidden_size)
        self.LayerNorm = BertLayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(self, hidden_states, input_tensor):
        return self.LayerNorm(self.dropout(self.dense(hidden_states)) + input_tensor)


class BertLayer(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.attention = BertAttention(config)
        self.intermediate = BertIntermediate(config)
        self.output = BertOutput(config)

    def forward(self, hidden_states, attention_mask=None):
        attention_output = self.attention(hidden_states, attention_mask)
        return self.output(self.intermediate(attention_output), attention_output)


class BertEncoder(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.layer = nn.ModuleList(BertLayer(config) for _ in range(config.num_hidden_layers))

    def forward(self, hidden_states, attention_mask=None, output_all_encoded_layers=True):
        """Returns the list of every layer's output (or a one-element list: the last)."""
        all_layers = []
        for layer in self.layer:
            hidden_states = layer(hidden_states, attention_mask)
            if output_all_encoded_layers:
                all_layers.append(hidden_states)
        if not output_all_encoded_layers:
            all_layers.append(hidden_states)
        return all_layers


class BertPooler(nn.Module):
    """tanh(dense(hidden state of the first token)) -- the [CLS] summary."""

    def __init__(self, config):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.activation = nn.Tanh()

    def forward(self, hidden_states):
        return self.activation(self.dense(hidden_states[:, 0]))


class BertPreTrainedModel(PretrainedLoadingMixin, nn.Module):
    """Base of every BERT model class: holds ``.config``, initialises weights, loads and saves.

    ``from_pretrained`` and ``save_pretrained`` come from
    :class:`bertconvert.models.loading.PretrainedLoadingMixin`.
    """

    #: Name of this class in :data:`bertconvert.models.heads.HEADS` (set by each concrete class).
    head_name = None
    #: False for heads whose outputs never touch the pooler (transformers saves those
    #: without ``bert.pooler.*``, so its absence is expected there, not a warning).
    pooler_used = True
    #: "num_labels" for classifiers whose label count from_pretrained may take from the config.
    label_argument = None
    # Only the base class itself picks the concrete class from config.architectures.
    _abstract_base = True

    def __init__(self, config, *inputs, **kwargs):
        super().__init__()
        if isinstance(config, dict):
            config = BertConfig.from_dict(config)
        if not isinstance(config, BertConfig):
            raise ConfigError(
                f"{type(self).__name__}(config) needs a bertconvert BertConfig, got "
                f"{type(config).__name__}; to load weights use "
                f"{type(self).__name__}.from_pretrained(path_or_name)")
        # The config took any numbers (0.6.2's); a model is built only from sane ones.
        self.config = config.validate()

    def init_bert_weights(self, module):
        """Initialise one module as Google does: normal(0, initializer_range) weights, zero
        biases, LayerNorm weight 1 / bias 0 (0.6.2 name; applied with ``self.apply``)."""
        for attr, param in module.named_parameters(recurse=False):
            init_(param.data, kind_of_module_tensor(module, attr), self.config.initializer_range)

    def post_init(self):
        """Initialise all weights, then tie the ones that are shared. (Built inside
        :func:`~bertconvert.models.initialise.on_meta_device`, the random fills are skipped.)"""
        self.apply(self.init_bert_weights)
        self.tie_weights()

    def tie_weights(self):
        """Share parameters that the architecture shares (the MLM decoder); no-op by default."""

    def tied_weight_keys(self):
        """State-dict keys that merely alias another parameter (never loaded, never missing)."""
        return set()

    def set_attention_implementation(self, name):
        """Switch every attention layer to "sdpa" (fused kernel) or "eager" (plain math)."""
        if name not in ATTENTION_IMPLEMENTATIONS:
            raise ValueError(f"attention implementation must be one of "
                             f"{', '.join(ATTENTION_IMPLEMENTATIONS)}, got {name!r}")
        for module in self.modules():
            if isinstance(module, BertSelfAttention):
                module.attention_implementation = name
        return self


class BertModel(BertPreTrainedModel):
    """The bare BERT trunk: embeddings, encoder, pooler.

    ``forward(input_ids, token_type_ids=None, attention_mask=None,
    output_all_encoded_layers=True)`` returns ``(encoded_layers, pooled_output)``:
    ``encoded_layers`` is the list of every layer's [batch, seq, hidden] output, or only the
    last layer's tensor with ``output_all_encoded_layers=False``; ``pooled_output`` is
    [batch, hidden].

    Example::

        >>> model = BertModel(BertConfig(99, hidden_size=32, num_hidden_layers=2,
        ...                              num_attention_heads=4, intermediate_size=37))
        >>> layers, pooled = model(torch.tensor([[2, 7, 3]]))
        >>> len(layers), pooled.shape
        (2, torch.Size([1, 32]))
    """

    head_name = layout.BASE

    def __init__(self, config):
        super().__init__(config)
        self.embeddings = BertEmbeddings(self.config)
        self.encoder = BertEncoder(self.config)
        self.pooler = BertPooler(self.config)
        self.post_init()

    def forward(self, input_ids, token_type_ids=None, attention_mask=None,
                output_all_encoded_layers=True):
        mask = None
        if attention_mask is not None:
            mask = extended_attention_mask(attention_mask, self.embeddings.LayerNorm.weight.dtype)
        embedding_output = self.embeddings(input_ids, token_type_ids)
        encoded_layers = self.encoder(embedding_output, mask,
                                      output_all_encoded_layers=output_all_encoded_layers)
        pooled_output = self.pooler(encoded_layers[-1])
        if not output_all_encoded_layers:
            encoded_layers = encoded_layers[-1]
        return encoded_layers, pooled_output
