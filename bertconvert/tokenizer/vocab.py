"""The vocabulary file (:func:`load_vocab`) and its casing: was it trained on lower-cased text?

Google ships no record of the casing inside a checkpoint: it lives in the directory name
(``uncased_L-12_H-768_A-12``) and in the user's memory. Getting it wrong is silent --
lower-casing text for a cased model turns every capitalised word into fragments and
``[UNK]`` -- so the converter records it in ``tokenizer_config.json`` (which our
``BertTokenizer.from_pretrained`` and transformers both read), and the parity check
tokenizes with it. Both decide with :func:`guess_do_lower_case`.

The functions are re-exported by :mod:`bertconvert.tokenizer.wordpiece` (and the 0.6.2 path
:mod:`bertconvert.tokenizer.wordpiece`), their public home.
"""
import collections
import logging
import os
import re

from ..errors import VocabError
from ..safeio import MAX_JSON_BYTES, MAX_VOCAB_BYTES, parse_json, read_regular_file
from ..layout import TOKENIZER_CONFIG_NAME, VOCAB_NAME  # noqa: F401  (re-exported)

logger = logging.getLogger(__name__)

#: tokenizer_config.json is written by transformers' save_pretrained (and our converter) next
#: to vocab.txt; it records the casing explicitly.

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


def read_tokenizer_config(directory):
    """The ``tokenizer_config.json`` in ``directory`` as a dict ({} when there is none, or it
    is not a JSON object). Raises VocabError when it cannot be read or parsed (bounded,
    regular files only; deep nesting and NaN are parse errors)."""
    path = os.path.join(directory, TOKENIZER_CONFIG_NAME)
    if not os.path.isfile(path):
        return {}
    try:
        text = read_regular_file(path, MAX_JSON_BYTES, VocabError, "tokenizer config").decode("utf-8")
    except (OSError, ValueError) as e:
        raise VocabError(f"cannot read {path}: {e}; fix or delete it") from e
    saved = parse_json(text, VocabError, f"{path} (fix or delete it)")
    return saved if isinstance(saved, dict) else {}


def casing_from_tokenizer_config(directory):
    """``do_lower_case`` from a ``tokenizer_config.json`` in ``directory``, or None when there
    is none, it is unreadable, or it does not say (a guess must not fail on a stray file)."""
    try:
        value = read_tokenizer_config(directory).get("do_lower_case")
    except VocabError:
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


def load_vocab(vocab_file):
    """Read a one-token-per-line vocabulary into an ordered ``{token: id}`` dict.

    Follows Google's ``load_vocab`` (read through TensorFlow's GFile) exactly: lines end at
    ``\\n`` only, every ``\\r`` is dropped, each line is ``str.strip()``-ed, and a repeated
    token keeps its first id (later tokens close up the gap; a warning is logged because ids
    then stop matching line numbers). Raises :class:`VocabError` for a missing, unreadable,
    non-UTF-8 or empty file.
    """
    path = os.fspath(vocab_file)
    try:
        # A regular file of bounded size: a FIFO would hang the read, /dev/zero never end.
        data = read_regular_file(path, MAX_VOCAB_BYTES, VocabError, "vocabulary file")
    except FileNotFoundError as e:
        raise VocabError(f"vocabulary file {path} does not exist; expected a vocab.txt with "
                         "one wordpiece per line (pass its path or the directory holding it)") from e
    except IsADirectoryError as e:
        raise VocabError(f"{path} is a directory, not a vocabulary file; pass "
                         f"{os.path.join(path, VOCAB_NAME)} or use BertTokenizer.from_pretrained") from e
    except OSError as e:
        raise VocabError(f"cannot read vocabulary file {path}: {e}") from e
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        raise VocabError(f"vocabulary file {path} is not UTF-8 (byte {e.start}, line {line}: "
                         f"{data[e.start:e.start + 4]!r}); BERT vocabularies are UTF-8 text, "
                         "re-encode the file") from e
    # TensorFlow's GFile (what Google reads vocabularies with) drops every carriage return
    # while reading lines, not only the one of a CRLF pair.
    lines = text.replace("\r", "").split("\n")
    if lines[-1] == "":
        lines.pop()  # the file's final newline ends a line, it does not start one
    vocab = collections.OrderedDict()
    duplicates = []
    for line in lines:
        token = line.strip()
        if token in vocab:
            duplicates.append(token)
        else:
            vocab[token] = len(vocab)
    if not vocab:
        raise VocabError(f"vocabulary file {path} is empty; expected one wordpiece per line")
    if duplicates:
        logger.warning("vocabulary %s repeats %d token(s) (first: %r); like Google's load_vocab "
                       "the first occurrence keeps its id and later ids close up, so ids no longer "
                       "match line numbers", path, len(duplicates), duplicates[0])
    if text.startswith("\ufeff"):
        logger.warning("vocabulary %s starts with a byte-order mark; it stays part of the first "
                       "token %r as in Google's load_vocab", path, next(iter(vocab)))
    return vocab


def check_vocab_size(vocab_file, vocab_size, config_name="the config"):
    """Raise VocabError when ``vocab_file`` holds more tokens than the model has embedding
    rows (``vocab_size``): the tokenizer would emit ids the model cannot embed (an
    IndexError at the first forward pass). Returns the token count, or None when the file
    cannot be read as a vocabulary (the caller reports that its own way)."""
    try:
        count = len(load_vocab(vocab_file))
    except VocabError:
        return None
    if count > vocab_size:
        raise VocabError(
            f"vocabulary {vocab_file} has {count} tokens but vocab_size in {config_name} is "
            f"{vocab_size}: ids {vocab_size} to {count - 1} would index past the model's "
            "embeddings. Use the vocab.txt the checkpoint was trained with (or fix vocab_size "
            "if the weights really have that many rows)")
    return count


def warn_if_vocab_exceeds_model(vocab_size_in_vocab, directory):
    """Warn when a model config beside the vocabulary has a smaller ``vocab_size``: a
    tokenizer and model loaded together from ``directory`` would not fit each other."""
    from ..layout import CONFIG_NAMES
    for name in CONFIG_NAMES:
        path = os.path.join(directory, name)
        if not os.path.isfile(path):
            continue
        try:
            text = read_regular_file(path, MAX_JSON_BYTES, ValueError, "config").decode("utf-8")
            data = parse_json(text, ValueError, path)
        except (OSError, ValueError):
            return  # the model's own loading reports a broken config
        size = data.get("vocab_size") if isinstance(data, dict) else None
        if isinstance(size, int) and not isinstance(size, bool) and 0 < size < vocab_size_in_vocab:
            logger.warning("the vocabulary in %s has %d tokens but %s says vocab_size %d: ids "
                           "from %d up cannot be embedded by that model (IndexError at the "
                           "forward pass); use the model's own vocab.txt", directory,
                           vocab_size_in_vocab, path, size, size)
        return
