"""Was a BERT vocabulary trained on lower-cased text? (``do_lower_case``)

Google ships no record of the casing inside a checkpoint: it lives in the directory name
(``uncased_L-12_H-768_A-12``) and in the user's memory. Getting it wrong is silent --
lower-casing text for a cased model turns every capitalised word into fragments and
``[UNK]`` -- so the converter records it in ``tokenizer_config.json`` (which our
``BertTokenizer.from_pretrained`` and transformers both read), and the parity check
tokenizes with it. Both decide with :func:`guess_do_lower_case`.

The functions are re-exported by :mod:`bertconvert.tokenization`, their public home.
"""
import json
import logging
import os
import re

logger = logging.getLogger(__name__)

#: Written by transformers' save_pretrained (and our converter) next to vocab.txt; records
#: the casing explicitly.
TOKENIZER_CONFIG_NAME = "tokenizer_config.json"

_CASING_WORDS = re.compile(r"[a-z0-9]+")
#: Bracketed special tokens ([CLS], [unused17], ...): never evidence of casing.
_SPECIAL_TOKEN = re.compile(r"\[[^\[\]\s]+\]")
#: A vocabulary is cased when at least this share of its case-bearing wordpieces (and at
#: least one) holds a capital: bert-base-cased has thousands, Google's uncased vocabularies
#: none -- but a huge multilingual one may keep a few strays, which must not flip it.
_CASED_SHARE = 1e-3


def casing_from_name(name):
    """Guess ``do_lower_case`` from a model name, URL or directory name, or None.

    ``*-uncased``, ``uncased_L-12_...``, ``chinese``, ``multilingual`` (Google's lower-cased
    models) give True; ``*-cased``, ``cased_L-...``, ``multi_cased_...`` give False.

    >>> casing_from_name("cased_L-12_H-768_A-12"), casing_from_name("my-model")
    (False, None)
    """
    words = _CASING_WORDS.findall(os.path.basename(os.fspath(name).rstrip("/\\")).lower())
    if "uncased" in words:
        return True
    if "cased" in words:
        return False
    if "chinese" in words or "multilingual" in words:
        return True
    return None


def casing_from_vocab(tokens):
    """True (a lower-cased vocabulary), False (cased), or None (no letters with case at all).

    >>> casing_from_vocab(["[CLS]", "the", "##s"]), casing_from_vocab(["the", "The"])
    (True, False)
    """
    with_case = upper = 0
    for token in tokens:
        if _SPECIAL_TOKEN.fullmatch(token):
            continue
        # str.lower() changes a token only when it holds a capital that has a lower-case
        # form, which also ignores symbols like U+03D2 that are "upper" without one.
        if token.lower() != token:
            upper += 1
            with_case += 1
        elif token.upper() != token:
            with_case += 1
    if with_case == 0:
        return None
    return not (upper >= 1 and upper >= _CASED_SHARE * with_case)


def casing_from_tokenizer_config(directory):
    """``do_lower_case`` from a ``tokenizer_config.json`` in ``directory``, or None when there
    is none, it is unreadable, or it does not say (a guess must not fail on a stray file)."""
    path = os.path.join(directory, TOKENIZER_CONFIG_NAME)
    from ._safeio import MAX_JSON_BYTES, read_regular_file

    try:  # bounded, regular files only; deep nesting is RecursionError
        text = read_regular_file(path, MAX_JSON_BYTES, ValueError, TOKENIZER_CONFIG_NAME)
        value = json.loads(text.decode("utf-8")).get("do_lower_case")
    except (OSError, ValueError, AttributeError, RecursionError):
        return None
    return value if isinstance(value, bool) else None


def guess_do_lower_case(vocab_file, vocab=None):
    """Whether text for the model behind ``vocab_file`` should be lower-cased.

    Order: an explicit ``do_lower_case`` in ``tokenizer_config.json`` beside the vocab; the
    vocabulary's own letters (a cased vocab has capitalised wordpieces, an uncased one has
    none -- decisive, because text cased the wrong way would tokenize to [UNK]s and
    fragments); the directory name (``uncased_L-12...``) when the vocabulary has no cased
    letters at all; Google's default, lower-case. ``vocab`` (tokens, or a token -> id dict)
    saves reading the file again when the caller has it. Raises
    :class:`~bertconvert.errors.VocabError` when the vocabulary cannot be read.

    Example::

        lower = guess_do_lower_case("cased_L-12_H-768_A-12/vocab.txt")  # False: it has capitals
    """
    directory = os.path.dirname(os.path.abspath(os.fspath(vocab_file)))
    explicit = casing_from_tokenizer_config(directory)
    if explicit is not None:
        return explicit
    if vocab is None:
        from .tokenization import load_vocab  # imports this module: load it lazily
        vocab = load_vocab(vocab_file)
    from_vocab = casing_from_vocab(vocab)
    from_name = casing_from_name(directory)
    if from_vocab is not None:
        if from_name is not None and from_name != from_vocab:
            logger.warning("directory name %s suggests do_lower_case=%s, but %s says %s; "
                           "following the vocabulary", os.path.basename(directory), from_name,
                           vocab_file, from_vocab)
        return from_vocab
    return True if from_name is None else from_name
