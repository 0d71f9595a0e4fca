"""The seven BERT head classes of pytorch-pretrained-bert 0.6.2, and the HEADS registry.

Forward signatures and return values are 0.6.2's: without labels a head returns its logits
(a tuple for pre-training and question answering); with labels it returns the loss only.
State-dict keys are 0.6.2's and transformers' (``bert.*``, ``cls.predictions.*``,
``cls.seq_relationship.*``, ``classifier.*``, ``qa_outputs.*``); the MLM decoder weight is
tied to the word embeddings.

Example::

    >>> model = build_model("sequence-classification", config, num_labels=3)
    >>> logits = model(input_ids, token_type_ids, attention_mask)       # [batch, 3]
    >>> loss = model(input_ids, token_type_ids, attention_mask, labels=labels)
"""
from collections import OrderedDict

import torch
from torch import nn
from torch.nn import CrossEntropyLoss

from ..errors import HeadError
from ..layout import (LABELLED_HEADS, LAYOUTS, MASKED_LM, MULTIPLE_CHOICE,  # noqa: F401
                      NEXT_SENTENCE, PRETRAINING, QUESTION_ANSWERING, SEQUENCE_CLASSIFICATION,
                      TOKEN_CLASSIFICATION, TIED_DECODER_KEY, head_for_class, label_count)
from .initialise import on_meta_device
from .trunk import BertLayerNorm, BertModel, BertPreTrainedModel, get_activation

#: 0.6.2 ignores MLM/NSP label -1; transformers uses -100. Both are treated as "ignore".
IGNORE_INDEX = -1


def _ignore_negative(labels):
    return labels.masked_fill(labels < 0, IGNORE_INDEX)


def _classifier_dropout(config):
    # transformers' classifier_dropout overrides hidden_dropout_prob when set.
    p = getattr(config, "classifier_dropout", None)
    return nn.Dropout(config.hidden_dropout_prob if p is None else p)


# --- the prediction heads (module names follow Google's cls/ scopes) ---------------------
class BertPredictionHeadTransform(nn.Module):
    """dense -> activation -> LayerNorm. The activation and eps are the trunk's unless the
    config gives the head its own (``mlm_head_act``, ``mlm_head_layer_norm_eps``: KerasHub's
    masked-LM head computes the exact GELU with eps 1e-5 over a tanh-GELU encoder;
    transformers ignores these keys)."""

    def __init__(self, config):
        super().__init__()
        act = getattr(config, "mlm_head_act", None) or config.hidden_act
        eps = getattr(config, "mlm_head_layer_norm_eps", None) or config.layer_norm_eps
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.transform_act_fn = get_activation(act)
        self.LayerNorm = BertLayerNorm(config.hidden_size, eps=eps)

    def forward(self, hidden_states):
        return self.LayerNorm(self.transform_act_fn(self.dense(hidden_states)))


class BertLMPredictionHead(nn.Module):
    """transform, then logits = h . word_embeddings^T + bias (decoder weight tied by the model).

    ``bert_model_embedding_weights`` (0.6.2's second argument, optional here): the word
    embedding matrix to tie the decoder to, and to size it by; the model classes tie it in
    ``tie_weights`` instead.
    """

    def __init__(self, config, bert_model_embedding_weights=None):
        super().__init__()
        self.transform = BertPredictionHeadTransform(config)
        vocab_size, hidden_size = config.vocab_size, config.hidden_size
        if bert_model_embedding_weights is not None:
            vocab_size, hidden_size = bert_model_embedding_weights.shape
        self.decoder = nn.Linear(hidden_size, vocab_size, bias=False)
        if bert_model_embedding_weights is not None:
            self.decoder.weight = bert_model_embedding_weights
        self.bias = nn.Parameter(torch.zeros(vocab_size))

    def forward(self, hidden_states):
        return self.decoder(self.transform(hidden_states)) + self.bias


class BertOnlyMLMHead(nn.Module):
    def __init__(self, config, bert_model_embedding_weights=None):
        super().__init__()
        self.predictions = BertLMPredictionHead(config, bert_model_embedding_weights)

    def forward(self, sequence_output):
        return self.predictions(sequence_output)


class BertOnlyNSPHead(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.seq_relationship = nn.Linear(config.hidden_size, 2)

    def forward(self, pooled_output):
        return self.seq_relationship(pooled_output)


class BertPreTrainingHeads(nn.Module):
    def __init__(self, config, bert_model_embedding_weights=None):
        super().__init__()
        self.predictions = BertLMPredictionHead(config, bert_model_embedding_weights)
        self.seq_relationship = nn.Linear(config.hidden_size, 2)

    def forward(self, sequence_output, pooled_output):
        return self.predictions(sequence_output), self.seq_relationship(pooled_output)


class _TiedMLMMixin:
    """Ties ``cls.predictions.decoder.weight`` to the word embeddings (Google's layout)."""

    def _ties(self):
        return getattr(self.config, "tie_word_embeddings", True) is not False

    def tie_weights(self):
        if self._ties():
            self.cls.predictions.decoder.weight = self.bert.embeddings.word_embeddings.weight

    def tied_weight_keys(self):
        return {TIED_DECODER_KEY} if self._ties() else set()


# --- the seven model classes -------------------------------------------------------------
class BertForPreTraining(_TiedMLMMixin, BertPreTrainedModel):
    """BERT with the masked-LM and next-sentence heads.

    Returns ``(prediction_scores [batch, seq, vocab], seq_relationship_score [batch, 2])``, or
    with both ``masked_lm_labels`` and ``next_sentence_label`` the summed loss (labels < 0
    ignored; NSP label 0 means "B follows A").
    """

    head_name = PRETRAINING
    pooler_used = True

    def __init__(self, config):
        super().__init__(config)
        self.bert = BertModel(self.config)
        self.cls = BertPreTrainingHeads(self.config)
        self.post_init()

    def forward(self, input_ids, token_type_ids=None, attention_mask=None,
                masked_lm_labels=None, next_sentence_label=None):
        sequence_output, pooled_output = self.bert(input_ids, token_type_ids, attention_mask,
                                                   output_all_encoded_layers=False)
        prediction_scores, seq_relationship_score = self.cls(sequence_output, pooled_output)
        if masked_lm_labels is not None and next_sentence_label is not None:
            loss_fct = CrossEntropyLoss(ignore_index=IGNORE_INDEX)
            masked_lm_loss = loss_fct(prediction_scores.view(-1, self.config.vocab_size),
                                      _ignore_negative(masked_lm_labels).view(-1))
            next_sentence_loss = loss_fct(seq_relationship_score.view(-1, 2),
                                          _ignore_negative(next_sentence_label).view(-1))
            return masked_lm_loss + next_sentence_loss
        return prediction_scores, seq_relationship_score


class BertForMaskedLM(_TiedMLMMixin, BertPreTrainedModel):
    """BERT with the masked-LM head: logits [batch, seq, vocab], or the loss with
    ``masked_lm_labels`` (positions labelled < 0 are ignored)."""

    head_name = MASKED_LM
    pooler_used = False

    def __init__(self, config):
        super().__init__(config)
        self.bert = BertModel(self.config)
        self.cls = BertOnlyMLMHead(self.config)
        self.post_init()

    def forward(self, input_ids, token_type_ids=None, attention_mask=None, masked_lm_labels=None):
        sequence_output, _ = self.bert(input_ids, token_type_ids, attention_mask,
                                       output_all_encoded_layers=False)
        prediction_scores = self.cls(sequence_output)
        if masked_lm_labels is not None:
            loss_fct = CrossEntropyLoss(ignore_index=IGNORE_INDEX)
            return loss_fct(prediction_scores.view(-1, self.config.vocab_size),
                            _ignore_negative(masked_lm_labels).view(-1))
        return prediction_scores


class BertForNextSentencePrediction(BertPreTrainedModel):
    """BERT with the next-sentence head: logits [batch, 2] (index 0 = "is next"), or the loss
    with ``next_sentence_label``."""

    head_name = NEXT_SENTENCE
    pooler_used = True

    def __init__(self, config):
        super().__init__(config)
        self.bert = BertModel(self.config)
        self.cls = BertOnlyNSPHead(self.config)
        self.post_init()

    def forward(self, input_ids, token_type_ids=None, attention_mask=None, next_sentence_label=None):
        _, pooled_output = self.bert(input_ids, token_type_ids, attention_mask,
                                     output_all_encoded_layers=False)
        seq_relationship_score = self.cls(pooled_output)
        if next_sentence_label is not None:
            loss_fct = CrossEntropyLoss(ignore_index=IGNORE_INDEX)
            return loss_fct(seq_relationship_score.view(-1, 2),
                            _ignore_negative(next_sentence_label).view(-1))
        return seq_relationship_score


class _BertWithClassifier(BertPreTrainedModel):
    """Shared body of run_classifier.py-style heads: trunk, dropout, ``classifier`` Linear.

    Only the constructor is shared; each head decides which trunk output it classifies.
    """

    def _build_classifier(self, outputs):
        # Attribute order fixes the state-dict order: bert.*, then classifier.*.
        self.bert = BertModel(self.config)
        self.dropout = _classifier_dropout(self.config)
        self.classifier = nn.Linear(self.config.hidden_size, outputs)
        self.post_init()


class BertForSequenceClassification(_BertWithClassifier):
    """BERT + dropout + Linear(hidden, num_labels) on the pooled output (run_classifier.py).

    ``num_labels`` defaults to the config's (``num_labels`` / ``id2label``), else 2.
    Returns logits [batch, num_labels], or the cross-entropy loss with ``labels``.
    """

    head_name = SEQUENCE_CLASSIFICATION
    label_argument = "num_labels"
    pooler_used = True

    def __init__(self, config, num_labels=None):
        super().__init__(config)
        self.num_labels = label_count(num_labels, self.config.num_labels)
        self._build_classifier(self.num_labels)

    def forward(self, input_ids, token_type_ids=None, attention_mask=None, labels=None):
        _, pooled_output = self.bert(input_ids, token_type_ids, attention_mask,
                                     output_all_encoded_layers=False)
        logits = self.classifier(self.dropout(pooled_output))
        if labels is not None:
            return CrossEntropyLoss()(logits.view(-1, self.num_labels), labels.view(-1))
        return logits


class BertForMultipleChoice(_BertWithClassifier):
    """BERT scoring each choice with Linear(hidden, 1) on its pooled output.

    Input ids are [batch, num_choices, seq] (the choice count is read from the input; a flat
    [batch * num_choices, seq] input uses ``num_choices`` as 0.6.2 did). Returns logits
    [batch, num_choices], or the cross-entropy loss with ``labels`` [batch].
    """

    head_name = MULTIPLE_CHOICE
    pooler_used = True

    def __init__(self, config, num_choices=2):
        super().__init__(config)
        self.num_choices = num_choices
        self._build_classifier(1)

    def forward(self, input_ids, token_type_ids=None, attention_mask=None, labels=None):
        num_choices = input_ids.size(1) if input_ids.dim() == 3 else self.num_choices

        def flat(t):
            return None if t is None else t.reshape(-1, t.size(-1))

        _, pooled_output = self.bert(flat(input_ids), flat(token_type_ids), flat(attention_mask),
                                     output_all_encoded_layers=False)
        logits = self.classifier(self.dropout(pooled_output)).view(-1, num_choices)
        if labels is not None:
            return CrossEntropyLoss()(logits, labels.view(-1))
        return logits


class BertForTokenClassification(_BertWithClassifier):
    """BERT + dropout + Linear(hidden, num_labels) on every token (NER).

    Returns logits [batch, seq, num_labels], or with ``labels`` the cross-entropy loss over
    the positions where ``attention_mask`` is 1 (all positions without a mask).
    """

    head_name = TOKEN_CLASSIFICATION
    label_argument = "num_labels"
    pooler_used = False

    def __init__(self, config, num_labels=None):
        super().__init__(config)
        self.num_labels = label_count(num_labels, self.config.num_labels)
        self._build_classifier(self.num_labels)

    def forward(self, input_ids, token_type_ids=None, attention_mask=None, labels=None):
        sequence_output, _ = self.bert(input_ids, token_type_ids, attention_mask,
                                       output_all_encoded_layers=False)
        logits = self.classifier(self.dropout(sequence_output))
        if labels is None:
            return logits
        flat_logits, flat_labels = logits.view(-1, self.num_labels), labels.view(-1)
        if attention_mask is not None:
            active = attention_mask.reshape(-1) == 1
            flat_logits, flat_labels = flat_logits[active], flat_labels[active]
        return CrossEntropyLoss()(flat_logits, flat_labels)


class BertForQuestionAnswering(BertPreTrainedModel):
    """BERT + Linear(hidden, 2) giving span start/end logits (run_squad.py).

    Returns ``(start_logits, end_logits)``, each [batch, seq]; with ``start_positions`` and
    ``end_positions`` the mean of the two cross-entropy losses. Positions are clamped to
    [0, seq] and a position equal to seq (outside the input) is ignored, as in 0.6.2 (the
    caller's tensors are not modified).
    """

    head_name = QUESTION_ANSWERING
    pooler_used = False

    def __init__(self, config):
        super().__init__(config)
        self.bert = BertModel(self.config)
        self.qa_outputs = nn.Linear(self.config.hidden_size, 2)
        self.post_init()

    def forward(self, input_ids, token_type_ids=None, attention_mask=None,
                start_positions=None, end_positions=None):
        sequence_output, _ = self.bert(input_ids, token_type_ids, attention_mask,
                                       output_all_encoded_layers=False)
        start_logits, end_logits = self.qa_outputs(sequence_output).unbind(dim=-1)
        if start_positions is None or end_positions is None:
            return start_logits, end_logits
        ignored_index = start_logits.size(1)
        start_positions = start_positions.reshape(-1).clamp(0, ignored_index)
        end_positions = end_positions.reshape(-1).clamp(0, ignored_index)
        loss_fct = CrossEntropyLoss(ignore_index=ignored_index)
        return (loss_fct(start_logits, start_positions) + loss_fct(end_logits, end_positions)) / 2


# --- registry ------------------------------------------------------------------------------
#: Head name -> model class, in the order the CLI lists them.
HEADS = OrderedDict((name, globals()[layout.class_name]) for name, layout in LAYOUTS.items())


def _unknown_head(head):
    return HeadError(f"unknown head {head!r}; expected one of {', '.join(HEADS)}")


def build_model(head, config, num_labels=None):
    """A freshly initialised model for ``head`` (a HEADS name).

    ``num_labels`` is used by the classification heads (default: the config's, else 2) and
    ignored by the others (multiple-choice always has one output per choice).
    """
    try:
        cls = HEADS[head]
    except (KeyError, TypeError):
        raise _unknown_head(head) from None
    if head in LABELLED_HEADS:
        return cls(config, num_labels=num_labels)
    return cls(config)


# --- the meta model ------------------------------------------------------------------------
def target_model(head, config, num_labels):
    """Build the target model on the meta device: its keys and shapes, no memory, no init."""
    with on_meta_device():
        return build_model(head, config, num_labels=num_labels)


def head_for_architecture(name):
    """Head name for a class name from a config's ``architectures`` list.

    >>> head_for_architecture("BertForSequenceClassification")
    'sequence-classification'
    """
    head = head_for_class(name)
    if head is not None:
        return head
    known = ", ".join(cls.__name__ for cls in HEADS.values())
    raise HeadError(f"unknown BERT architecture {name!r}; expected one of {known}")
