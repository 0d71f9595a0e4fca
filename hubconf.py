"""torch.hub entry points for bertconvert: the tokenizer and the eight BERT model classes.

The names are those of pytorch-pretrained-BERT's hub card. Every model entry point forwards
its arguments to ``<Class>.from_pretrained``, so the first argument is a model directory
(``config.json``/``bert_config.json`` + ``model.safetensors``/``pytorch_model.bin``), a
weights file, a model name such as ``bert-base-uncased`` or a URL (fetched through the
shared cache)::

    >>> import torch
    >>> tokenizer = torch.hub.load("/path/to/bertconvert", "bertTokenizer", "out/model",
    ...                            source="local")
    >>> model = torch.hub.load("/path/to/bertconvert", "bertModel", "out/model", source="local")

Imports happen inside the functions so that ``torch.hub`` can check ``dependencies`` first
and report a missing package by name.
"""

dependencies = ["torch", "numpy", "safetensors", "requests", "regex", "tqdm", "filelock"]

_MODEL_ARGS = """
    Args:
        pretrained_model_name_or_path: a model directory, a weights file, a model name
            (bert-base-uncased, bert-large-cased, bert-base-chinese, ...) or an http(s)/s3 URL.
        cache_dir: where fetched models are cached (default: bertconvert's cache).
        state_dict: a state dict to use instead of the weights file.
        **kwargs: passed on (num_labels / num_choices for the classifier heads, torch_dtype,
            strict, local_files_only, ...).
"""


def _from_pretrained(class_name, args, kwargs):
    import bertconvert

    return getattr(bertconvert, class_name).from_pretrained(*args, **kwargs)


def bertTokenizer(*args, **kwargs):
    """WordPiece tokenizer identical to Google's tokenization.py (``BertTokenizer``).

    Args:
        pretrained_model_name_or_path: a directory holding ``vocab.txt``, a vocab file, a model
            name (bert-base-uncased, ...) or a URL.
        cache_dir: where fetched vocabularies are cached.
        do_lower_case: lower-case and strip accents (default True; inferred from -cased /
            -uncased model names).
        do_basic_tokenize: split on whitespace and punctuation before WordPiece (default True).
        max_len: longest sequence the model accepts (warned about when exceeded).
        never_split: tokens kept whole ([UNK], [SEP], [PAD], [CLS], [MASK]).

    Example::

        >>> tokenizer = torch.hub.load(repo, "bertTokenizer", "bert-base-cased",
        ...                            do_basic_tokenize=False, source="local")
        >>> tokenizer.tokenize("Hello world")
    """
    from bertconvert.tokenization import BertTokenizer

    return BertTokenizer.from_pretrained(*args, **kwargs)


def bertModel(*args, **kwargs):
    """The bare BERT trunk (``BertModel``): returns (encoded_layers, pooled_output).
    {args}
    Example::

        >>> model = torch.hub.load(repo, "bertModel", "out/model", source="local")
        >>> encoded_layers, pooled = model(input_ids, token_type_ids, attention_mask)
    """
    return _from_pretrained("BertModel", args, kwargs)


def bertForNextSentencePrediction(*args, **kwargs):
    """BERT with the next-sentence head (``BertForNextSentencePrediction``): logits [batch, 2],
    index 0 meaning "sentence B follows A".
    {args}"""
    return _from_pretrained("BertForNextSentencePrediction", args, kwargs)


def bertForPreTraining(*args, **kwargs):
    """BERT with both pre-training heads (``BertForPreTraining``): returns
    (masked-LM logits [batch, seq, vocab], next-sentence logits [batch, 2]).
    {args}"""
    return _from_pretrained("BertForPreTraining", args, kwargs)


def bertForMaskedLM(*args, **kwargs):
    """BERT with the masked-LM head (``BertForMaskedLM``): logits [batch, seq, vocab].
    {args}
    Example::

        >>> model = torch.hub.load(repo, "bertForMaskedLM", "bert-base-cased", source="local")
        >>> predictions = model(input_ids, token_type_ids)
    """
    return _from_pretrained("BertForMaskedLM", args, kwargs)


def bertForSequenceClassification(*args, **kwargs):
    """BERT + a classifier on the pooled output (``BertForSequenceClassification``):
    logits [batch, num_labels]; ``num_labels`` defaults to the model directory's.
    {args}"""
    return _from_pretrained("BertForSequenceClassification", args, kwargs)


def bertForMultipleChoice(*args, **kwargs):
    """BERT scoring each choice (``BertForMultipleChoice``): input ids [batch, choices, seq]
    give logits [batch, choices].
    {args}"""
    return _from_pretrained("BertForMultipleChoice", args, kwargs)


def bertForTokenClassification(*args, **kwargs):
    """BERT + a per-token classifier (``BertForTokenClassification``, e.g. NER): logits
    [batch, seq, num_labels]; ``num_labels`` defaults to the model directory's.
    {args}"""
    return _from_pretrained("BertForTokenClassification", args, kwargs)


def bertForQuestionAnswering(*args, **kwargs):
    """BERT + span start/end logits (``BertForQuestionAnswering``, SQuAD): returns
    (start_logits, end_logits), each [batch, seq].
    {args}"""
    return _from_pretrained("BertForQuestionAnswering", args, kwargs)


for _entry in (bertModel, bertForNextSentencePrediction, bertForPreTraining, bertForMaskedLM,
               bertForSequenceClassification, bertForMultipleChoice,
               bertForTokenClassification, bertForQuestionAnswering):
    _entry.__doc__ = _entry.__doc__.replace("{args}", _MODEL_ARGS)
del _entry
