"""Exactness of bertconvert's tokenizer against Google's tokenization.py (the oracle, from the
``bert-tensorflow`` package) and pytorch-pretrained-BERT 0.6.2 (where the two should agree).

The corpus: natural lines (English prose, licences, docstrings, 30-language vim tutor, CJK
texts), their NFD forms (combining marks), every BMP code point in shuffled runs (lone
surrogates included), a sample of astral code points, control characters, long words on
both sides of 100 and 200 characters, and empty/blank strings. All generated
deterministically from fixtures/tokenizer/corpus.txt and a seeded RNG.
"""
import ast
import importlib.util
import os
import random
import unicodedata

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bertconvert.tokenizer import charclass as cc
from bertconvert.tokenizer.wordpiece import NEVER_SPLIT, BertTokenizer, load_vocab

FIXTURES = os.path.join(os.path.dirname(__file__), os.pardir, os.pardir, "fixtures", "tokenizer")
VOCABS = {True: os.path.join(FIXTURES, "vocab-uncased.txt"),
          False: os.path.join(FIXTURES, "vocab-cased.txt")}
CASINGS = pytest.mark.parametrize("lower", [True, False], ids=["uncased", "cased"])


def natural_lines():
    with open(os.path.join(FIXTURES, "corpus.txt"), encoding="utf-8") as f:
        return f.read().split("\n")


def special_lines():
    """Hand-made edge cases: controls, whitespace kinds, long words, C* categories, empties."""
    controls = "".join(chr(c) for c in list(range(0x20)) + list(range(0x7F, 0xA0)))
    word = "abcdefghij"
    return [
        "", " ", "\t\n\r", "\u3000\u2028\u2029\x85", "\x00", "\ufffd",
        f"a{controls}b c{controls}", "tab\tnew\nline\rcr\x0bvt\x0cff\x1cfs\x1fus end",
        "zero\u200bwidth soft\u00adhyphen bidi\u202eover\u2066ride bom\ufeffhere",
        "private\ue000use \U000f0000plane unassigned\u0378 \U000e0001tag",
        "lone \ud800 surrogates \udfff\ud83d and a real 😀 pair",
        "İstanbul ǅemal ß ﬁ Æsop Ωmega ΣΑΣ Ǆ ﬀ Ⅻ ㎏ ½",
        "naïve café Ångström Dvořák Łódź Nguyễn Việt Thắng résumé",
        "e\u0301 a\u0308\u0323 \u0301alone \u20dd\u0336combining",
        "中文字符和English混合，还有標點。Japanese ひらがな カタカナ 한국어",
        "\uf900\ufa10\U0002f800 compatibility ideographs \U00020000\U0002a700\U0002b820",
        "emoji 👍🏽 👨‍👩‍👧 flags 🇩🇪 keycap 1️⃣",
        "[CLS] [SEP] [PAD] [MASK] [UNK] [unused1] [cls] [Sep]",
        "punct!!!???...,,,;;;:::'''\"\"\"```~~~^^^$$$ ¿¡«»„“”‘’‹›—–…·•§¶†‡",
        word * 9 + "x",           # 91 characters
        word * 10,                # exactly 100
        word * 10 + "x",          # 101: ppb says [UNK], Google splits it
        word * 15,                # 150
        word * 20,                # exactly 200: still split
        word * 20 + "x",          # 201: [UNK] for Google too
        "é" * 150, "ab" * 300, ("long" * 60 + " ") * 3,
        " ".join(["supercalifragilisticexpialidocious"] * 30),
    ]


def code_point_runs(seed=1234):
    """Every BMP code point once, shuffled, cut into runs of 1-300 characters; then a
    sample of the astral planes the same way."""
    rng = random.Random(seed)
    lines = []
    for space in (list(range(0x10000)), list(range(0x10000, 0x110000, 11))):
        rng.shuffle(space)
        i = 0
        while i < len(space):
            n = rng.randint(1, 300)
            lines.append("".join(map(chr, space[i:i + n])))
            i += n
    return lines


def full_corpus():
    natural = natural_lines()
    nfd = [unicodedata.normalize("NFD", line) for line in natural[::3]]
    return natural + nfd + special_lines() + code_point_runs()


@pytest.fixture(scope="module")
def corpus():
    return full_corpus()


@pytest.fixture(scope="module")
def google():
    """Google's tokenization module, made importable under TF2 (test-only oracle)."""
    tf = pytest.importorskip("tensorflow", reason="Google's tokenization.py imports TensorFlow")
    if not hasattr(tf, "gfile"):
        tf.gfile = tf.io.gfile
    from absl import flags
    from bert import tokenization
    if not hasattr(tokenization.tf, "gfile"):
        tokenization.tf.gfile = tf.io.gfile
    if not flags.FLAGS.is_parsed():
        flags.FLAGS.mark_as_parsed()  # it reads --preserve_unused_tokens (default False)
    return tokenization


@pytest.fixture(scope="module")
def ppb():
    return pytest.importorskip("pytorch_pretrained_bert.tokenization")


def _ours(lower, **kwargs):
    return BertTokenizer(VOCABS[lower], do_lower_case=lower, **kwargs)


def _mismatches(expected, actual, lines, limit=5):
    bad = [i for i in range(len(lines)) if expected[i] != actual[i]]
    return [(lines[i][:120], expected[i][:20], actual[i][:20]) for i in bad[:limit]], len(bad)


# ------------------------------------------------------------------ Google's FullTokenizer
@pytest.mark.tf
@pytest.mark.slow
@CASINGS
def test_identical_to_google_on_corpus(google, corpus, lower):
    reference = google.FullTokenizer(VOCABS[lower], do_lower_case=lower)
    expected = [reference.tokenize(line) for line in corpus]
    ours = _ours(lower, never_split=())   # Google's exact semantics
    cold = [ours.tokenize(line) for line in corpus]
    warm = [ours.tokenize(line) for line in corpus]   # now from the word cache
    shown, count = _mismatches(expected, cold, corpus)
    assert count == 0, f"{count} lines differ from Google, e.g. {shown}"
    assert warm == cold
    ids = [ours.convert_tokens_to_ids(t) for t in cold[:500]]
    assert ids == [reference.convert_tokens_to_ids(t) for t in expected[:500]]
    # The 0.6.2 default (never_split) differs only on lines holding a special token as a word.
    default = _ours(lower)
    plain = [i for i, line in enumerate(corpus) if not set(line.split()) & set(NEVER_SPLIT)]
    assert len(plain) == len(corpus) - 1
    shown, count = _mismatches([expected[i] for i in plain], [default.tokenize(corpus[i]) for i in plain],
                               [corpus[i] for i in plain])
    assert count == 0, f"{count} lines differ from Google, e.g. {shown}"


@pytest.mark.tf
@CASINGS
def test_google_basic_and_wordpiece_stages(google, lower):
    ours = _ours(lower, never_split=())
    vocab = load_vocab(VOCABS[lower])
    basic = google.BasicTokenizer(do_lower_case=lower)
    wordpiece = google.WordpieceTokenizer(vocab=vocab)
    for line in special_lines() + natural_lines()[:300]:
        words = basic.tokenize(line)
        assert ours.basic_tokenizer.tokenize(line) == words
        assert ours.wordpiece_tokenizer.tokenize(" ".join(words)) == wordpiece.tokenize(" ".join(words))


@pytest.mark.tf
def test_character_tables_match_googles_predicates(google):
    """Every BMP code point and every 7th astral one: our precomputed classes against
    Google's own per-character functions."""
    tables = cc.unicode_tables()
    is_chinese = google.BasicTokenizer()._is_chinese_char
    for cp in list(range(0x10000)) + list(range(0x10000, 0x110000, 7)):
        ch = chr(cp)
        deleted = cp == 0 or cp == 0xFFFD or google._is_control(ch)
        assert bool(tables.delete_re.match(ch)) == deleted, hex(cp)
        if not deleted and google._is_whitespace(ch):
            assert ch.isspace(), hex(cp)   # str.split() must split where Google puts a space
        assert bool(tables.punct_re.match(ch)) == google._is_punctuation(ch), hex(cp)
        assert bool(cc.CJK_RE.match(ch)) == is_chinese(cp), hex(cp)
        assert bool(tables.mark_re.match(ch)) == (unicodedata.category(ch) == "Mn"), hex(cp)


_VOCAB = sorted(load_vocab(VOCABS[True]))
_pieces = st.one_of(
    st.sampled_from(_VOCAB).map(lambda t: t[2:] if t.startswith("##") else t),
    st.characters(exclude_categories=()),          # anything, surrogates included
    st.sampled_from([" ", "\t", "\n", "\u00a0", "\u3000", "\u2028", "\x00", "\u200b", "\u0301",
                     "[CLS]", ".", "-", "中", "é", "\ue000"]),
)


_PAIRS = {}   # (Google, ours) per casing, built once: hypothesis calls the test many times


@pytest.mark.tf
@settings(max_examples=300, deadline=None)
@given(text=st.lists(_pieces, max_size=40).map("".join), lower=st.booleans())
def test_identical_to_google_on_random_text(google, text, lower):
    if lower not in _PAIRS:
        _PAIRS[lower] = (google.FullTokenizer(VOCABS[lower], do_lower_case=lower),
                         _ours(lower, never_split=()))
    reference, ours = _PAIRS[lower]
    assert ours.tokenize(text) == reference.tokenize(text)


@pytest.mark.tf
def test_load_vocab_matches_google_on_awkward_files(google, tmp_path):
    path = tmp_path / "vocab.txt"
    # duplicates, blank lines, CRLF, inner spaces, a lone CR and U+2028 inside lines (Google
    # splits lines at \n only), trailing whitespace, no final newline.
    content = "[PAD]\r\n[UNK]\n\n  spaced  \nb\u2028c\nx\ry\nab\n[UNK]\n\n##ab \nlast"
    path.write_bytes(content.encode("utf-8"))
    assert list(load_vocab(path).items()) == list(google.load_vocab(str(path)).items())


# ------------------------------------------------------------------ pytorch-pretrained-BERT 0.6.2
@CASINGS
def test_agrees_with_ppb_where_ppb_is_right(ppb, lower):
    """On natural text (no C* characters, no 101-200 character words) 0.6.2 and we agree,
    never_split included."""
    lines = natural_lines()
    theirs = ppb.BertTokenizer(VOCABS[lower], do_lower_case=lower)
    ours = _ours(lower)
    expected = [theirs.tokenize(line) for line in lines]
    shown, count = _mismatches(expected, [ours.tokenize(line) for line in lines], lines)
    assert count == 0, f"{count} lines differ from 0.6.2, e.g. {shown}"
    special = "[CLS] who was Jim Henson ? [SEP] Jim [MASK] was a puppeteer [SEP]"
    assert ours.tokenize(special) == theirs.tokenize(special)
    assert ours.tokenize(special)[0] == "[CLS]"


DEVIATIONS = [
    # (text, what Google does differently from 0.6.2)
    ("a \ue000 b", "private-use character kept (becomes [UNK]), 0.6.2 drops it"),
    ("a \u0378 b", "unassigned code point kept, 0.6.2 drops it"),
    ("a \ud800 b", "lone surrogate kept, 0.6.2 drops it"),
    ("a \U000f0000 b", "supplementary private-use kept"),
    ("abcdefghij" * 15, "150-character word split into pieces, 0.6.2 gives [UNK]"),
    ("abcdefghij" * 10 + "x", "101-character word split, 0.6.2 gives [UNK]"),
]


@pytest.mark.tf
@pytest.mark.parametrize("text,why", DEVIATIONS, ids=[d[1][:30] for d in DEVIATIONS])
@CASINGS
def test_documented_deviations_go_googles_way(google, ppb, text, why, lower):
    expected = google.FullTokenizer(VOCABS[lower], do_lower_case=lower).tokenize(text)
    ours = _ours(lower).tokenize(text)
    assert ours == expected, why
    assert ppb.BertTokenizer(VOCABS[lower], do_lower_case=lower).tokenize(text) != expected, \
        f"0.6.2 no longer deviates here ({why}); the test input needs updating"


@CASINGS
def test_deviations_without_tensorflow(lower):
    """The same two deviations, checked from first principles so they run without TF."""
    ours = _ours(lower)
    for ch in ("\ue000", "\u0378", "\ud800", "\U000f0000"):
        assert ours.tokenize(f"a {ch} b") == ["a", "[UNK]", "b"]
    for n in (101, 150, 200):
        pieces = ours.tokenize("a" * n)
        assert "[UNK]" not in pieces and "".join(p.lstrip("#") for p in pieces) == "a" * n
    assert ours.tokenize("a" * 201) == ["[UNK]"]


# ------------------------------------------------------------------ encode's truncation rule
def _google_truncate_seq_pair():
    """Google's _truncate_seq_pair, taken from run_classifier.py's source (the module itself
    cannot be imported under TF2: it needs tf.contrib)."""
    spec = importlib.util.find_spec("bert")
    if spec is None:
        pytest.skip("bert-tensorflow is not installed")
    path = os.path.join(os.path.dirname(spec.origin), "run_classifier.py")
    with open(path, encoding="utf-8") as f:
        tree = ast.parse(f.read())
    node = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "_truncate_seq_pair")
    namespace = {}
    exec(compile(ast.Module(body=[node], type_ignores=[]), path, "exec"), namespace)
    return namespace["_truncate_seq_pair"]


def test_pair_truncation_matches_google():
    """encode() builds what Google's convert_single_example builds, truncation included
    (a second text that yields no tokens means "no pair" there too)."""
    reference = _google_truncate_seq_pair()
    ours = _ours(True)
    rng = random.Random(7)
    texts = natural_lines()[:400] + ["", " ", "\x00"]
    for _ in range(300):
        a, b = rng.choice(texts), rng.choice(texts)
        limit = rng.randint(3, 80)
        tokens_a, tokens_b = ours.tokenize(a), ours.tokenize(b) if b else None
        if tokens_b:
            reference(tokens_a, tokens_b, limit - 3)
        else:
            tokens_a = tokens_a[0:limit - 2]
        tokens = ["[CLS]"] + tokens_a + ["[SEP]"]
        segments = [0] * len(tokens)
        if tokens_b:
            tokens += tokens_b + ["[SEP]"]
            segments += [1] * (len(tokens_b) + 1)
        enc = ours.encode(a, b, max_length=limit)
        assert enc["input_ids"] == ours.convert_tokens_to_ids(tokens)
        assert enc["token_type_ids"] == segments
        assert enc["attention_mask"] == [1] * len(tokens)
