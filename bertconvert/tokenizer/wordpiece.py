"""WordPiece tokenization that reproduces Google's ``tokenization.py`` token for token, fast.

Three classes with the pytorch-pretrained-BERT 0.6.2 interface:

* :class:`BasicTokenizer`: clean the text, split CJK ideographs, punctuation and
  whitespace, optionally lower-case and strip accents (defined in
  :mod:`bertconvert.tokenizer.basic`, re-exported here);
* :class:`WordpieceTokenizer`: greedy longest-match-first WordPiece over a vocabulary
  (likewise);
* :class:`BertTokenizer`: both, plus ids, ``encode`` (model inputs), ``save_vocabulary``
  and ``from_pretrained``.

Output is identical to Google's ``FullTokenizer`` (both casings) on any ``str``, with
0.6.2's one intended change kept: ``never_split`` tokens such as ``[CLS]`` stay whole.
0.6.2's two unintended changes are *not* copied: only Cc/Cf characters are deleted
(private-use and unassigned code points survive and become ``[UNK]``), and words are
capped at 200 characters, not 100.

Speed comes from doing per text only what must be done per text: delete control characters
with one regex, ``str.split()``, then look every whitespace-delimited word up in a cache of
finished word pieces. A miss runs the exact slow path once (character classes are
precomputed regexes, see :mod:`bertconvert.tokenizer.charclass`). Caches are bounded and are dropped
when the vocabulary size or an option changes.

Example::

    >>> tok = BertTokenizer("fixtures/tokenizer/vocab-uncased.txt", do_lower_case=True)
    >>> tok.tokenize("Hello, world! unaffable")
    ['hello', ',', 'world', '!', 'una', '##ff', '##able']
    >>> tok.encode("Who?", "Me.", max_length=8, padding="max_length")["input_ids"]
    [101, 4161, 134, 102, 2988, 117, 102, 0]
"""
import collections
import logging
import os

from . import charclass as cc
from .basic import (CACHE_SIZE, MAX_INPUT_CHARS_PER_WORD, NEVER_SPLIT,  # noqa: F401
                    BasicTokenizer, WordpieceTokenizer, _check_text, whitespace_tokenize)
from .encode import EncodeMixin
from ..atomic import atomic_write
# The casing guess lives in its own module; this is its public home.
from .vocab import (TOKENIZER_CONFIG_NAME, VOCAB_NAME, casing_from_name,  # noqa: F401
                    casing_from_vocab, check_vocab_size, guess_do_lower_case, load_vocab,
                    read_tokenizer_config, warn_if_vocab_exceeds_model)
from ..errors import TokenizerError, UnknownTokenError, VocabError

logger = logging.getLogger(__name__)

#: Stand-in for "no limit", as in 0.6.2.
NO_MAX_LEN = int(1e12)


def _saved_options(directory):
    """``do_lower_case`` and ``max_len`` from a directory's tokenizer_config.json, if any."""
    saved = read_tokenizer_config(directory)
    options = {}
    if isinstance(saved.get("do_lower_case"), bool):
        options["do_lower_case"] = saved["do_lower_case"]
    if isinstance(saved.get("strip_accents"), bool):  # null (transformers' default) = unset
        options["strip_accents"] = saved["strip_accents"]
    limit = saved.get("model_max_length")
    if isinstance(limit, int) and not isinstance(limit, bool) and 0 < limit < NO_MAX_LEN:
        options["max_len"] = limit
    return options


class BertTokenizer(EncodeMixin):
    """End-to-end BERT tokenizer: basic tokenization, WordPiece, ids, model inputs.

    Args:
        vocab_file: path of a one-wordpiece-per-line ``vocab.txt``.
        do_lower_case: lower-case and strip accents (uncased models).
        strip_accents: None (default: strip when lower-casing, Google's behaviour), False
            (keep accents: KerasHub's presets) or True (always strip); a directory's
            ``tokenizer_config.json`` supplies it in :meth:`from_pretrained`.
        max_len: longest id sequence the model accepts; ``convert_tokens_to_ids`` warns
            beyond it and ``encode`` truncates to it by default. None means no limit.
        do_basic_tokenize: run :class:`BasicTokenizer` first (else WordPiece only on
            whitespace-split words).
        never_split: words kept whole by the basic tokenizer.
        unk_token, cls_token, sep_token, pad_token: special tokens; ``unk_token`` must be
            in the vocabulary, the others only when ``encode`` needs them.
    """

    def __init__(self, vocab_file, do_lower_case=True, max_len=None, do_basic_tokenize=True,
                 never_split=NEVER_SPLIT, *, unk_token="[UNK]", cls_token="[CLS]",
                 sep_token="[SEP]", pad_token="[PAD]", strip_accents=None):
        self.vocab = load_vocab(vocab_file)
        self.vocab_file = os.fspath(vocab_file)
        if unk_token not in self.vocab:
            raise VocabError(f"vocabulary {self.vocab_file} has no {unk_token!r} token (unk_token), "
                             "which words it cannot spell become; BERT vocabularies list [PAD], "
                             "[UNK], [CLS], [SEP], [MASK] near the top. Pass unk_token= if yours "
                             "spells it differently")
        self.ids_to_tokens = collections.OrderedDict((i, t) for t, i in self.vocab.items())
        self.do_basic_tokenize = do_basic_tokenize
        self.basic_tokenizer = BasicTokenizer(do_lower_case=do_lower_case, never_split=never_split,
                                              strip_accents=strip_accents)
        self.wordpiece_tokenizer = WordpieceTokenizer(self.vocab, unk_token=unk_token)
        self.max_len = max_len if max_len is not None else NO_MAX_LEN
        self.unk_token, self.cls_token, self.sep_token, self.pad_token = (
            unk_token, cls_token, sep_token, pad_token)
        self._cache = {}
        self._cache_key = None

    # ---------------------------------------------------------------- tokens
    @property
    def do_lower_case(self):
        return self.basic_tokenizer.do_lower_case

    @property
    def strip_accents(self):
        return self.basic_tokenizer.strip_accents

    @property
    def vocab_size(self):
        return len(self.vocab)

    def __len__(self):
        return len(self.vocab)

    def tokenize(self, text):
        """WordPiece tokens of ``text`` (any str; empty or blank text gives []).

        Raises :class:`~bertconvert.errors.TokenizerInputError` (a TypeError) for non-str input.
        """
        if type(text) is not str:
            text = _check_text(text)
        wordpiece = self.wordpiece_tokenizer
        if wordpiece.vocab is not self.vocab:
            wordpiece.vocab = self.vocab  # someone replaced .vocab: follow it
        if len(self.vocab) != wordpiece._vocab_len:
            wordpiece.clear_cache()
        if not self.do_basic_tokenize:
            return wordpiece.tokenize(text)
        basic = self.basic_tokenizer
        key = (id(basic), basic.generation, id(wordpiece), wordpiece.generation)
        if key != self._cache_key:
            self._cache, self._cache_key = {}, key
        if text.isascii():
            if cc.ASCII_DELETE_RE.search(text):
                text = cc.ASCII_DELETE_RE.sub("", text)
        else:
            text = cc.unicode_tables().delete_re.sub("", text)
        cache = self._cache
        out = []
        for word in text.split():
            pieces = cache.get(word)
            if pieces is None:
                pieces = self._tokenize_word(word)
            out += pieces
        return out

    def _tokenize_word(self, word):
        pieces = []
        wordpiece_word = self.wordpiece_tokenizer.tokenize_word
        for token in self.basic_tokenizer.tokenize_word(word):
            pieces += wordpiece_word(token)
        pieces = tuple(pieces)
        if len(self._cache) >= CACHE_SIZE:
            self._cache = {}
        self._cache[word] = pieces
        return pieces

    def clear_cache(self):
        """Forget cached words in all stages; call it after editing ``vocab`` in place."""
        self._cache = {}
        self.basic_tokenizer.clear_cache()
        self.wordpiece_tokenizer.clear_cache()

    # ---------------------------------------------------------------- ids
    def convert_tokens_to_ids(self, tokens):
        """Ids of ``tokens``; warns (like 0.6.2) when there are more than ``max_len``.

        An unknown token raises :class:`~bertconvert.errors.UnknownTokenError` (a KeyError).
        """
        vocab = self.vocab
        try:
            ids = [vocab[t] for t in tokens]
        except KeyError as e:
            raise UnknownTokenError(f"token {e.args[0]!r} is not in the vocabulary "
                                    f"({len(vocab)} tokens); tokenize text with tokenize() so "
                                    f"unknown words become {self.unk_token!r}") from e
        if len(ids) > self.max_len:
            logger.warning("Token indices sequence length is longer than the specified maximum "
                           "sequence length for this BERT model (%d > %d). Running this sequence "
                           "through BERT will result in indexing errors", len(ids), self.max_len)
        return ids

    def convert_ids_to_tokens(self, ids):
        """Tokens of ``ids`` (ints, numpy integers or 0-d tensors)."""
        table = self.ids_to_tokens
        tokens = []
        for i in ids:
            try:
                tokens.append(table[int(i)])
            except (KeyError, TypeError, ValueError) as e:
                raise UnknownTokenError(f"id {i!r} is not in the vocabulary "
                                        f"(ids 0..{len(table) - 1})") from e
        return tokens

    def save_vocabulary(self, vocab_path):
        """Write the vocabulary (one token per line, in id order) atomically.

        ``vocab_path`` is a directory (``vocab.txt`` is written inside) or a file path.
        Returns the path written.
        """
        vocab_path = os.fspath(vocab_path)
        vocab_file = os.path.join(vocab_path, VOCAB_NAME) if os.path.isdir(vocab_path) else vocab_path
        lines = []
        expected = 0
        for token, index in sorted(self.vocab.items(), key=lambda kv: kv[1]):
            if index != expected:
                logger.warning("saving vocabulary to %s: ids are not consecutive (%d after %d); "
                               "check that the vocabulary is not corrupted", vocab_file, index,
                               expected - 1)
                expected = index
            if token != token.strip() or "\n" in token or "\r" in token:
                raise VocabError(f"token {token!r} (id {index}) has surrounding whitespace or a "
                                 "newline and would not read back the same; fix the vocabulary")
            lines.append(token)
            expected += 1
        try:
            payload = ("\n".join(lines) + "\n").encode("utf-8")
        except UnicodeEncodeError as e:
            raise VocabError(f"a vocabulary token cannot be written as UTF-8 ({e.reason}); "
                             "remove tokens with lone surrogates") from e
        with atomic_write(vocab_file, "wb") as f:
            f.write(payload)
        return vocab_file

    # ---------------------------------------------------------------- loading
    @classmethod
    def from_pretrained(cls, name_or_path=None, cache_dir=None, *inputs, **kwargs):
        """Build a tokenizer from a directory holding ``vocab.txt``, a vocab file, one of
        the seven seed model names (e.g. ``bert-base-uncased``) or a URL.

        A directory's ``tokenizer_config.json`` (written by transformers) supplies
        ``do_lower_case``, ``strip_accents`` and ``max_len`` (``model_max_length``) unless
        passed explicitly.
        Names and URLs are fetched through :mod:`bertconvert.cache.names` (``cache_dir``,
        ``force_download=`` and ``local_files_only=`` are passed on). For seed names
        ``max_len`` is capped at 512 and ``do_lower_case`` follows the name (``-cased`` is
        cased, anything else lower-cased), with a warning if the caller asked otherwise; a URL
        whose file or folder name says ``cased``/``uncased`` is treated the same way. For a
        local path whose name says so (Google's ``cased_L-12_H-768_A-12``...), a missing
        ``do_lower_case`` is inferred and a contradicting one is kept, with a warning.
        0.6.2's keyword ``pretrained_model_name_or_path=`` is accepted for ``name_or_path``.

        Example::

            >>> tok = BertTokenizer.from_pretrained("converted/bert-base-cased")   # a directory
            >>> tok = BertTokenizer.from_pretrained("bert-base-uncased", cache_dir="/nfs/bert")
        """
        if "pretrained_model_name_or_path" in kwargs:  # 0.6.2's name for the argument
            if name_or_path is not None:
                raise TypeError("from_pretrained() got the vocabulary twice (name_or_path and "
                                "pretrained_model_name_or_path=)")
            name_or_path = kwargs.pop("pretrained_model_name_or_path")
        if name_or_path is None:
            raise VocabError("no vocabulary given: pass a directory holding vocab.txt, a vocab "
                             "file, a model name or a URL")
        fetch_options = {k: kwargs.pop(k) for k in ("force_download", "local_files_only") if k in kwargs}
        source = os.fspath(name_or_path)
        if os.path.isdir(source):
            vocab_file = os.path.join(source, VOCAB_NAME)
            if not os.path.isfile(vocab_file):
                raise VocabError(f"directory {source} has no {VOCAB_NAME}; pass the vocabulary "
                                 "file itself or a directory that holds vocab.txt")
            saved = _saved_options(source)
            for key, value in saved.items():
                kwargs.setdefault(key, value)
            if "do_lower_case" not in saved:
                cls._apply_casing(kwargs, casing_from_name(source), source, name_wins=False)
        elif os.path.isfile(source):
            vocab_file = source
            casing = casing_from_name(source)
            if casing is None:
                casing = casing_from_name(os.path.dirname(os.path.abspath(source)))
            cls._apply_casing(kwargs, casing, source, name_wins=False)
        else:
            from ..cache.names import (PRETRAINED_VOCAB_ARCHIVE_MAP,
                                       PRETRAINED_VOCAB_POSITIONAL_EMBEDDINGS_SIZE_MAP,
                                       resolve_vocab_file)
            is_name = source in PRETRAINED_VOCAB_ARCHIVE_MAP
            if not is_name and "://" not in source:
                raise VocabError(f"no vocabulary at {source!r}: it is not a file, not a directory "
                                 f"holding {VOCAB_NAME}, not a URL and not a known model name "
                                 f"({', '.join(PRETRAINED_VOCAB_ARCHIVE_MAP)})")
            vocab_file = resolve_vocab_file(source, cache_dir=cache_dir, **fetch_options)
            if os.path.isdir(vocab_file):
                vocab_file = os.path.join(vocab_file, VOCAB_NAME)
            logger.info("loading vocabulary %s from %s", source, vocab_file)
            if is_name:
                cls._apply_casing(kwargs, "-cased" not in source, source, name_wins=True)
                limit = kwargs.get("max_len")
                kwargs["max_len"] = min(PRETRAINED_VOCAB_POSITIONAL_EMBEDDINGS_SIZE_MAP[source],
                                        NO_MAX_LEN if limit is None else limit)
            elif os.path.isfile(os.path.join(os.path.dirname(vocab_file), TOKENIZER_CONFIG_NAME)):
                # A model directory fetched from a bucket or server: its tokenizer_config.json
                # says how it was trained, as for a local directory.
                saved = _saved_options(os.path.dirname(vocab_file))
                for key, value in saved.items():
                    kwargs.setdefault(key, value)
            else:
                path = source.split("?")[0].rstrip("/")
                casing = casing_from_name(path)
                if casing is None:  # .../bert-base-cased/vocab.txt
                    casing = casing_from_name(path.rsplit("/", 1)[0])
                cls._apply_casing(kwargs, casing, source, name_wins=True)
        defaulted = "do_lower_case" not in kwargs
        tokenizer = cls(vocab_file, *inputs, **kwargs)
        warn_if_vocab_exceeds_model(len(tokenizer.vocab), os.path.dirname(os.path.abspath(vocab_file)))
        if defaulted and tokenizer.basic_tokenizer.do_lower_case and \
                casing_from_vocab(tokenizer.vocab) is False:
            # 0.6.2's default stays (scripts rely on it), but lower-casing text for a cased
            # vocabulary turns every capitalised word into [UNK] or fragments.
            logger.warning("%s has cased wordpieces but nothing says how the model was trained, "
                           "so do_lower_case=True (0.6.2's default) is used; pass "
                           "do_lower_case=False for a cased model", source)
        return tokenizer

    @staticmethod
    def _apply_casing(kwargs, lower_case, source, name_wins):
        if lower_case is None:
            return
        given = kwargs.get("do_lower_case")
        if given is None:
            kwargs["do_lower_case"] = lower_case
            logger.info("%s looks %s: using do_lower_case=%s", source,
                        "uncased" if lower_case else "cased", lower_case)
        elif bool(given) != lower_case:
            kind = "an uncased" if lower_case else "a cased"
            if name_wins:
                logger.warning("%s is %s model but do_lower_case=%s was passed; using "
                               "do_lower_case=%s to match how it was trained", source, kind,
                               given, lower_case)
                kwargs["do_lower_case"] = lower_case
            else:
                logger.warning("%s looks like %s model but do_lower_case=%s was passed; keeping "
                               "it, check that it matches how the model was trained", source,
                               kind, given)


__all__ = ["BasicTokenizer", "BertTokenizer", "WordpieceTokenizer", "load_vocab", "check_vocab_size",
           "whitespace_tokenize", "casing_from_name", "guess_do_lower_case", "TokenizerError"]
