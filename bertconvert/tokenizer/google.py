"""The surface of Google's ``tokenization.py`` (google-research/bert, bert-tensorflow 1.0.4),
for code ported from it: ``from bertconvert import tokenization`` in place of
``from bert import tokenization``.

* :class:`FullTokenizer` is Google's: no never-split list (``[CLS]`` written in the text is
  split like any other word), bytes accepted as UTF-8, ``preserve_unused_tokens`` as a keyword
  where Google reads an absl flag. Its output equals Google's token for token.
* The module-level helpers (:func:`convert_by_vocab`, :func:`convert_tokens_to_ids`,
  :func:`convert_ids_to_tokens`, :func:`convert_to_unicode`, :func:`printable_text`,
  :func:`validate_case_matches_checkpoint`) behave as Google's.

No TensorFlow: vocabularies are read by :func:`bertconvert.tokenizer.vocab.load_vocab`, which
reproduces what Google's ``tf.gfile`` reading gives. The 0.6.2 classes (``BertTokenizer``,
``BasicTokenizer`` with its never-split default) live in :mod:`bertconvert.tokenizer.wordpiece`.

Example::

    >>> from bertconvert import tokenization
    >>> tok = tokenization.FullTokenizer("uncased_L-12_H-768_A-12/vocab.txt", do_lower_case=True)
    >>> tok.tokenize("[CLS] Hello")
    ['[', 'cl', '##s', ']', 'hello']
"""
import logging
import re

from .basic import BasicTokenizer, WordpieceTokenizer, preserve_token
from .vocab import load_vocab
from ..errors import CasingMismatchError, TextTypeError, UnknownTokenError

logger = logging.getLogger(__name__)

#: Google's list of its checkpoints trained on lower-cased text ...
LOWER_CASED_MODELS = ("uncased_L-24_H-1024_A-16", "uncased_L-12_H-768_A-12",
                      "multilingual_L-12_H-768_A-12", "chinese_L-12_H-768_A-12")
#: ... and on cased text. Other names (whole-word-masking, small BERTs...) are not checked.
CASED_MODELS = ("cased_L-12_H-768_A-12", "cased_L-24_H-1024_A-16", "multi_cased_L-12_H-768_A-12")
#: The directory name in front of ``/bert_model.ckpt``, found as Google finds it (its ``.``
#: before ``ckpt`` is unescaped, so it matches any character; kept for identical answers).
_CHECKPOINT_DIR_RE = re.compile("^.*?([A-Za-z0-9_-]+)/bert_model.ckpt")


def convert_to_unicode(text):
    """``text`` as str: str unchanged, bytes decoded as UTF-8 with undecodable bytes dropped
    (Google's rule). Anything else raises :class:`~bertconvert.errors.TextTypeError` (a
    ValueError, as Google's, and a TypeError)."""
    if isinstance(text, str):
        return text
    if isinstance(text, bytes):
        return text.decode("utf-8", "ignore")
    raise TextTypeError(f"Unsupported string type: {type(text)} (pass str, or UTF-8 bytes)")


def printable_text(text):
    """``text`` as a str fit for printing or logging (under Python 3 the same as
    :func:`convert_to_unicode`, as in Google's module)."""
    return convert_to_unicode(text)


def convert_by_vocab(vocab, items):
    """``[vocab[item] for item in items]``: tokens to ids with a ``{token: id}`` vocabulary, ids
    to tokens with its inverse. A missing item raises
    :class:`~bertconvert.errors.UnknownTokenError` (a KeyError, as Google's)."""
    out = []
    for item in items:
        try:
            out.append(vocab[item])
        except KeyError as e:
            raise UnknownTokenError(f"{item!r} is not in the vocabulary ({len(vocab)} entries); "
                                    "tokenize text first so unknown words become [UNK]") from e
    return out


def convert_tokens_to_ids(vocab, tokens):
    """Ids of ``tokens`` in ``vocab`` (``{token: id}``); see :func:`convert_by_vocab`."""
    return convert_by_vocab(vocab, tokens)


def convert_ids_to_tokens(inv_vocab, ids):
    """Tokens of ``ids`` in ``inv_vocab`` (``{id: token}``); see :func:`convert_by_vocab`."""
    return convert_by_vocab(inv_vocab, ids)


def validate_case_matches_checkpoint(do_lower_case, init_checkpoint):
    """Google's check that ``do_lower_case`` fits a checkpoint path of one of its released
    models (``.../uncased_L-12_H-768_A-12/bert_model.ckpt``).

    Raises :class:`~bertconvert.errors.CasingMismatchError` (a ValueError, as Google's) when
    the directory is a known lower-cased model and ``do_lower_case`` is false, or a known cased
    model and it is true; returns None otherwise (unknown names, no checkpoint).
    """
    if not init_checkpoint:
        return
    match = _CHECKPOINT_DIR_RE.match(init_checkpoint)
    if match is None:
        return
    model_name = match.group(1)
    if model_name in LOWER_CASED_MODELS and not do_lower_case:
        given, kind, wanted = False, "lower-cased", True
    elif model_name in CASED_MODELS and do_lower_case:
        given, kind, wanted = True, "cased", False
    else:
        return
    raise CasingMismatchError(
        f"do_lower_case={given} does not fit --init_checkpoint={init_checkpoint}: {model_name} "
        f"is a {kind} model, so pass do_lower_case={wanted} to tokenize as it was pre-trained")


class FullTokenizer:
    """Google's end-to-end tokenizer: basic tokenization then WordPiece, exactly as Google's.

    Args:
        vocab_file: path of a one-wordpiece-per-line ``vocab.txt``.
        do_lower_case: lower-case and strip accents (uncased models).
        preserve_unused_tokens: keep ``[unusedN]`` words that are in the vocabulary whole
            (Google's ``--preserve_unused_tokens`` flag, default off).

    Unlike 0.6.2's ``BertTokenizer`` there is no never-split list: ``[CLS]`` in the text
    becomes ``[``, ``cls``, ``]`` (then WordPiece). Attributes as Google's: ``vocab``,
    ``inv_vocab``, ``basic_tokenizer``, ``wordpiece_tokenizer``.
    """

    def __init__(self, vocab_file, do_lower_case=True, preserve_unused_tokens=False):
        self.vocab = load_vocab(vocab_file)
        self.inv_vocab = {v: k for k, v in self.vocab.items()}
        self.preserve_unused_tokens = bool(preserve_unused_tokens)
        self.basic_tokenizer = BasicTokenizer(do_lower_case=do_lower_case, never_split=(),
                                              vocab=self.vocab,
                                              preserve_unused_tokens=self.preserve_unused_tokens)
        self.wordpiece_tokenizer = WordpieceTokenizer(vocab=self.vocab)
        if "[UNK]" not in self.vocab:
            logger.warning("vocabulary %s has no [UNK] token: words it cannot spell become "
                           "[UNK], which convert_tokens_to_ids will then refuse", vocab_file)

    def tokenize(self, text):
        """WordPiece tokens of ``text`` (str, or UTF-8 bytes as Google accepts them)."""
        preserve = self.preserve_unused_tokens
        wordpiece = self.wordpiece_tokenizer
        if wordpiece.vocab is self.vocab and len(self.vocab) != wordpiece._vocab_len:
            wordpiece.clear_cache()  # the vocabulary was edited in place
        out = []
        for token in self.basic_tokenizer.tokenize(convert_to_unicode(text)):
            if preserve and preserve_token(token, self.vocab, True):
                out.append(token)
            else:
                out += wordpiece.tokenize_word(token)
        return out

    def convert_tokens_to_ids(self, tokens):
        """Ids of ``tokens`` (an unknown token raises UnknownTokenError, a KeyError)."""
        return convert_by_vocab(self.vocab, tokens)

    def convert_ids_to_tokens(self, ids):
        """Tokens of ``ids`` (an unknown id raises UnknownTokenError, a KeyError)."""
        return convert_by_vocab(self.inv_vocab, ids)
