"""Character classes of Google's BERT tokenizer, precomputed once as regular expressions.

Google's ``tokenization.py`` asks ``unicodedata.category`` about every character of every
text, in Python loops. The classes it asks about never change while the interpreter runs,
so we scan the code space once (about 0.1 s, only when the first non-ASCII text shows up)
and turn each class into a compiled regex that the C regex engine applies to whole strings.
The classes are built from *this* interpreter's ``unicodedata``, the same tables Google's
code would consult here, so both agree on every code point whatever the Unicode version.

Google's definitions, which these tables reproduce exactly:

* deleted by ``_clean_text``: U+0000, U+FFFD, and categories Cc and Cf except ``\\t \\n \\r``
  (NOT every ``C*`` category: private-use, surrogate and unassigned code points are kept);
* whitespace: whatever ``str.split()`` splits on once the deleted characters are gone
  (Google maps Zs and ``\\t\\n\\r`` to a space first; all of those are ``str.isspace``);
* punctuation: ASCII 33-47, 58-64, 91-96, 123-126, and every category ``P*``;
* accents stripped when lower-casing: category Mn after NFD;
* "Chinese" characters (each becomes its own word): the CJK ranges in :data:`CJK_RANGES`.
"""
import re
import threading
import unicodedata

#: The CJK ideograph blocks of Google's ``_is_chinese_char`` (inclusive ranges).
CJK_RANGES = (
    (0x4E00, 0x9FFF), (0x3400, 0x4DBF), (0x20000, 0x2A6DF), (0x2A700, 0x2B73F),
    (0x2B740, 0x2B81F), (0x2B820, 0x2CEAF), (0xF900, 0xFAFF), (0x2F800, 0x2FA1F),
)
#: ASCII symbols Google counts as punctuation although Unicode files some under S*.
ASCII_PUNCT_RANGES = ((33, 47), (58, 64), (91, 96), (123, 126))
#: Control characters Google treats as whitespace rather than deleting.
CONTROL_AS_WHITESPACE = (0x09, 0x0A, 0x0D)
UNICODE_MAX = 0x10FFFF


def _char_class(ranges, negate=False):
    """A regex character class for inclusive code point ranges (escaped, so any code
    point, surrogates included, is safe inside the brackets)."""
    parts = []
    for lo, hi in ranges:
        parts.append(f"\\U{lo:08x}" if lo == hi else f"\\U{lo:08x}-\\U{hi:08x}")
    return "[" + ("^" if negate else "") + "".join(parts) + "]"


def _ranges(code_points):
    """Collapse a sorted iterable of code points into inclusive (lo, hi) runs."""
    runs = []
    for cp in code_points:
        if runs and runs[-1][1] == cp - 1:
            runs[-1][1] = cp
        else:
            runs.append([cp, cp])
    return [tuple(r) for r in runs]


# --- ASCII fast path: fixed by the definitions above, no scan needed -----------------
#: Deleted ASCII characters: Cc minus tab/newline/carriage return (NUL included).
ASCII_DELETE_RE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_ASCII_PUNCT = _char_class(ASCII_PUNCT_RANGES)
#: One punctuation character, or a run of anything else (what _run_split_on_punc yields).
ASCII_PIECE_RE = re.compile(f"{_ASCII_PUNCT}|{_char_class(ASCII_PUNCT_RANGES, negate=True)}+")

#: One CJK ideograph, or a run of anything else.
CJK_PIECE_RE = re.compile(f"{_char_class(CJK_RANGES)}|{_char_class(CJK_RANGES, negate=True)}+")
CJK_RE = re.compile(_char_class(CJK_RANGES))


class UnicodeTables:
    """Compiled regexes for the Unicode-wide classes (see the module docstring).

    Attributes: ``delete_re`` (characters ``_clean_text`` drops), ``piece_re`` (one
    punctuation character or a run of non-punctuation), ``punct_re``, ``mark_re``
    (category Mn), plus the raw range lists for tests and introspection.
    """

    def __init__(self):
        categories = list(map(unicodedata.category, map(chr, range(UNICODE_MAX + 1))))
        delete = {0, 0xFFFD}
        delete.update(cp for cp, cat in enumerate(categories) if cat in ("Cc", "Cf"))
        delete.difference_update(CONTROL_AS_WHITESPACE)
        punct = {cp for lo, hi in ASCII_PUNCT_RANGES for cp in range(lo, hi + 1)}
        punct.update(cp for cp, cat in enumerate(categories) if cat[0] == "P")
        self.delete_ranges = _ranges(sorted(delete))
        self.punct_ranges = _ranges(sorted(punct))
        self.mark_ranges = _ranges(cp for cp, cat in enumerate(categories) if cat == "Mn")
        self.delete_re = re.compile(_char_class(self.delete_ranges))
        self.punct_re = re.compile(_char_class(self.punct_ranges))
        self.piece_re = re.compile(_char_class(self.punct_ranges) + "|"
                                   + _char_class(self.punct_ranges, negate=True) + "+")
        self.mark_re = re.compile(_char_class(self.mark_ranges))


_tables = None
_tables_lock = threading.Lock()


def unicode_tables():
    """The shared :class:`UnicodeTables`, built on first use (thread-safe)."""
    global _tables
    if _tables is None:
        with _tables_lock:
            if _tables is None:
                _tables = UnicodeTables()
    return _tables


# --- whole-string operations used by the tokenizer ------------------------------------
def clean_text(text):
    """Delete the characters Google's ``_clean_text`` deletes (whitespace is left for
    ``str.split`` to handle)."""
    if text.isascii():
        return ASCII_DELETE_RE.sub("", text) if ASCII_DELETE_RE.search(text) else text
    return unicode_tables().delete_re.sub("", text)


def strip_accents(text):
    """NFD, then drop every Mn character (Google's ``_run_strip_accents``)."""
    if text.isascii():
        return text  # ASCII has no decompositions and no combining marks
    return unicode_tables().mark_re.sub("", unicodedata.normalize("NFD", text))


def split_on_punctuation(text):
    """Split off every punctuation character as its own piece (``_run_split_on_punc``)."""
    if text.isascii():
        return ASCII_PIECE_RE.findall(text)
    return unicode_tables().piece_re.findall(text)


def split_cjk(text):
    """Split a whitespace-free word so that every CJK ideograph stands alone."""
    if text.isascii() or not CJK_RE.search(text):
        return [text]
    return CJK_PIECE_RE.findall(text)


# --- Google's per-character predicates, for code ported from tokenization.py ----------
#: The four characters Google counts as whitespace besides category Zs.
_WHITESPACE_CHARS = (" ", "\t", "\n", "\r")
#: Control characters Google's ``_is_control`` does not count (they are whitespace).
_NOT_CONTROL = ("\t", "\n", "\r")


def is_whitespace(char):
    """Google's ``_is_whitespace``: space, tab, newline, carriage return, or category Zs.

    ``char`` is one character (anything else raises TypeError, as Google's does).
    """
    return char in _WHITESPACE_CHARS or unicodedata.category(char) == "Zs"


def is_control(char):
    """Google's ``_is_control``: categories Cc and Cf, tab/newline/carriage return excepted.

    pytorch-pretrained-BERT 0.6.2 counted every ``C*`` category (private use, surrogates,
    unassigned code points too); we keep Google's definition, the one the tokenizer applies.
    """
    return char not in _NOT_CONTROL and unicodedata.category(char) in ("Cc", "Cf")


def is_punctuation(char):
    """Google's ``_is_punctuation``: ASCII 33-47, 58-64, 91-96, 123-126, or category ``P*``."""
    cp = ord(char)
    if any(lo <= cp <= hi for lo, hi in ASCII_PUNCT_RANGES):
        return True
    return unicodedata.category(char).startswith("P")
