"""The two halves of Google's tokenizer: :class:`BasicTokenizer` (text -> words) and
:class:`WordpieceTokenizer` (words -> word pieces), each with a bounded cache of finished
words. :class:`~bertconvert.tokenizer.wordpiece.BertTokenizer` joins them; see
:mod:`bertconvert.tokenizer.wordpiece` for what is reproduced and how it is kept fast.
"""
import re

from . import charclass as cc
from ..errors import TokenizerInputError

NEVER_SPLIT = ("[UNK]", "[SEP]", "[PAD]", "[CLS]", "[MASK]")
#: Google's ``_UNUSED_TOKEN_RE``: the words ``preserve_unused_tokens`` keeps whole (``search``
#: with ``^...$``, exactly as Google applies it; ``\d`` is any Unicode digit).
UNUSED_TOKEN_RE = re.compile("^\\[unused\\d+\\]$")
#: Google's cap on characters per word; longer words become the unknown token.
MAX_INPUT_CHARS_PER_WORD = 200
#: Cached words per tokenizer before the cache is dropped and refilled (bounds memory).
CACHE_SIZE = 1 << 17


def _check_text(text, what="text"):
    """Return ``text`` as a plain str, or raise TokenizerInputError for anything else."""
    if isinstance(text, str):
        return text if type(text) is str else str.__str__(text)
    hint = ""
    if isinstance(text, (bytes, bytearray)):
        hint = " (decode it first, e.g. text.decode('utf-8'))"
    raise TokenizerInputError(f"{what} must be a str, got {type(text).__name__}{hint}")


def _size(container):
    """len() of a vocabulary, or None for a container that only answers ``in``."""
    return len(container) if hasattr(container, "__len__") else None


def preserve_token(token, vocab, preserve_unused_tokens=False):
    """Google's ``preserve_token``: whether ``token`` skips lower-casing, punctuation splitting
    and WordPiece -- only with ``preserve_unused_tokens`` on (Google reads that from its absl
    flag, default off), only for ``[unusedN]`` tokens that are in ``vocab``."""
    return bool(preserve_unused_tokens and token in vocab and UNUSED_TOKEN_RE.search(token))


def whitespace_tokenize(text):
    """Split on runs of whitespace (``str.split()``); an empty or blank text gives []."""
    return text.split()


class BasicTokenizer:
    """Cleaning, CJK/punctuation/whitespace splitting and optional lower-casing.

    Identical to Google's ``BasicTokenizer`` when ``never_split`` is empty; words listed in
    ``never_split`` are neither lower-cased nor split (0.6.2 behaviour, and 0.6.2's default).

    ``strip_accents``: None (the default) strips accents exactly when lower-casing, as
    Google's tokenizer does; False never strips them (KerasHub's BERT presets lower-case
    "Café" to "café"); True always strips them. transformers' ``strip_accents`` means the same.

    ``vocab`` and ``preserve_unused_tokens`` are Google's (keyword-only here: the second
    positional argument is 0.6.2's ``never_split``): with the flag on, ``[unusedN]`` words
    that are in ``vocab`` are kept exactly as written. After editing ``vocab`` in place
    without changing its size, call :meth:`clear_cache`.
    """

    def __init__(self, do_lower_case=True, never_split=NEVER_SPLIT, strip_accents=None, *,
                 vocab=(), preserve_unused_tokens=False):
        self._do_lower_case = bool(do_lower_case)
        self._strip_accents = None if strip_accents is None else bool(strip_accents)
        self._never_split = frozenset(never_split or ())
        self._vocab = vocab
        self._preserve = bool(preserve_unused_tokens)
        self.generation = 0  # bumped on every option change so owners drop their caches
        self.clear_cache()

    @property
    def do_lower_case(self):
        return self._do_lower_case

    @do_lower_case.setter
    def do_lower_case(self, value):
        self._do_lower_case = bool(value)
        self.clear_cache()

    @property
    def strip_accents(self):
        return self._strip_accents

    @strip_accents.setter
    def strip_accents(self, value):
        self._strip_accents = None if value is None else bool(value)
        self.clear_cache()

    @property
    def never_split(self):
        return self._never_split

    @never_split.setter
    def never_split(self, value):
        self._never_split = frozenset(value or ())
        self.clear_cache()

    @property
    def vocab(self):
        return self._vocab

    @vocab.setter
    def vocab(self, value):
        self._vocab = value
        self.clear_cache()

    @property
    def preserve_unused_tokens(self):
        return self._preserve

    @preserve_unused_tokens.setter
    def preserve_unused_tokens(self, value):
        self._preserve = bool(value)
        self.clear_cache()

    def clear_cache(self):
        """Forget cached words (done automatically when an option or the vocabulary's size
        changes)."""
        self._cache = {}
        self._vocab_len = _size(self._vocab)
        self.generation += 1

    def tokenize(self, text):
        """Split ``text`` into basic tokens (words and single punctuation characters)."""
        text = cc.clean_text(_check_text(text))
        if self._preserve and _size(self._vocab) != self._vocab_len:
            self.clear_cache()  # which [unusedN] words are kept depends on the vocabulary
        out = []
        cache = self._cache
        for word in text.split():
            pieces = cache.get(word)
            if pieces is None:
                pieces = self.tokenize_word(word)
            out += pieces
        return out

    def tokenize_word(self, word):
        """Basic tokens of one cleaned, whitespace-free word (cached)."""
        pieces = self._cache.get(word)
        if pieces is None:
            pieces = tuple(self._split_word(word))
            if len(self._cache) >= CACHE_SIZE:
                self._cache = {}
            self._cache[word] = pieces
        return pieces

    def _split_word(self, word):
        never_split = self._never_split
        # Google checks preservation on each word after CJK splitting, before lower-casing.
        preserve = self._preserve
        if word.isascii():  # most words: no CJK, no accents, ASCII punctuation only
            if preserve and preserve_token(word, self._vocab, True):
                return [word]
            if word not in never_split and self._do_lower_case:
                word = word.lower()
            return [word] if word in never_split else cc.ASCII_PIECE_RE.findall(word)
        out = []
        for piece in cc.split_cjk(word):
            if piece in never_split or (preserve and preserve_token(piece, self._vocab, True)):
                out.append(piece)
                continue
            strip = self._do_lower_case if self._strip_accents is None else self._strip_accents
            if self._do_lower_case or strip:
                piece = piece.lower() if self._do_lower_case else piece
                piece = cc.strip_accents(piece) if strip else piece
                if piece in never_split:  # 0.6.2 checks again after lower-casing
                    out.append(piece)
                    continue
            if piece.isascii():
                out += cc.ASCII_PIECE_RE.findall(piece)
            else:
                # Lower-casing/NFD cannot add whitespace today, but Google re-splits on it,
                # so we do too rather than depend on that.
                for part in cc.split_on_punctuation(piece):
                    out += part.split()
        return out


class WordpieceTokenizer:
    """Greedy longest-match-first WordPiece (Google's algorithm, 200-character cap).

    ``vocab`` is any container of tokens that supports ``in``, ``len`` and iteration
    (usually the ``{token: id}`` dict). Example: with ``un``, ``##aff`` and ``##able`` in
    the vocabulary, ``tokenize("unaffable")`` gives ``["un", "##aff", "##able"]``.
    """

    def __init__(self, vocab, unk_token="[UNK]", max_input_chars_per_word=MAX_INPUT_CHARS_PER_WORD):
        self._vocab = vocab
        self._unk_token = unk_token
        self._max_chars = max_input_chars_per_word
        self.generation = 0
        self.clear_cache()

    def _option(name):  # noqa: N805 - property factory used only in this class body
        def fget(self):
            return getattr(self, name)

        def fset(self, value):
            setattr(self, name, value)
            self.clear_cache()
        return property(fget, fset)

    vocab = _option("_vocab")
    unk_token = _option("_unk_token")
    max_input_chars_per_word = _option("_max_chars")
    del _option

    def clear_cache(self):
        """Forget cached words; call it after editing the vocabulary in place."""
        self._cache = {}
        self._vocab_len = len(self._vocab)
        # No vocabulary entry is longer than this, so no longer substring can match:
        # starting the greedy search here gives the same answer as starting at the word end.
        self._longest = max(map(len, self._vocab), default=0)
        self.generation += 1

    def tokenize(self, text):
        """WordPiece tokens of every whitespace-separated word in ``text``."""
        text = _check_text(text)
        if len(self._vocab) != self._vocab_len:
            self.clear_cache()
        out = []
        for word in text.split():
            out += self.tokenize_word(word)
        return out

    def tokenize_word(self, word):
        """WordPiece tokens of one whitespace-free word (cached)."""
        pieces = self._cache.get(word)
        if pieces is None:
            pieces = self._split_word(word)
            if len(self._cache) >= CACHE_SIZE:
                self._cache = {}
            self._cache[word] = pieces
        return pieces

    def _split_word(self, word):
        n = len(word)
        if n > self._max_chars:
            return (self._unk_token,)
        vocab, longest = self._vocab, self._longest
        pieces = []
        start = 0
        while start < n:
            end = min(n, start + longest)
            while start < end:
                piece = word[start:end] if start == 0 else "##" + word[start:end]
                if piece in vocab:
                    break
                end -= 1
            else:
                return (self._unk_token,)
            pieces.append(piece)
            start = end
        return tuple(pieces)
