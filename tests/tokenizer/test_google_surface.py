"""``bertconvert.tokenization`` as a stand-in for Google's ``tokenization.py`` (bert-tensorflow
1.0.4): the facts its own test file checks, reproduced here, and differential tests against
Google's module itself (the oracle, test-only; it needs TensorFlow for ``tf.gfile``).
"""
import contextlib
import inspect
import logging

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bertconvert import tokenization
from bertconvert.errors import CasingMismatchError, TextTypeError, UnknownTokenError

from .test_against_google import VOCABS, natural_lines, special_lines

# The vocabulary of Google's own tests, plus one unused token.
SMALL_VOCAB = ["[UNK]", "[CLS]", "[SEP]", "want", "##want", "##ed", "wa", "un", "runn", "##ing",
               ",", "[unused0]"]
TEXT = "UNwant\u00E9d,running [unused0] [CLS] [unused55]"


@pytest.fixture
def small_vocab(tmp_path):
    path = tmp_path / "vocab.txt"
    path.write_bytes("".join(t + "\n" for t in SMALL_VOCAB).encode("utf-8"))
    return str(path)


# ------------------------------------------------------------------ Google's own facts, no TF
def test_full_tokenizer_splits_special_tokens_like_any_word(small_vocab):
    tok = tokenization.FullTokenizer(small_vocab)
    tokens = tok.tokenize(TEXT)
    assert tokens == ["un", "##want", "##ed", ",", "runn", "##ing"] + ["[UNK]"] * 9
    assert tok.convert_tokens_to_ids(tokens) == [7, 4, 5, 10, 8, 9] + [0] * 9
    assert tok.convert_ids_to_tokens([7, 4, 5, 0]) == ["un", "##want", "##ed", "[UNK]"]


def test_full_tokenizer_preserve_unused_tokens(small_vocab):
    tok = tokenization.FullTokenizer(small_vocab, preserve_unused_tokens=True)
    tokens = tok.tokenize(TEXT)
    # [unused0] is in the vocabulary: kept whole; [unused55] is not, [CLS] is not "unused".
    assert tokens == ["un", "##want", "##ed", ",", "runn", "##ing", "[unused0]"] + ["[UNK]"] * 6
    assert tok.convert_tokens_to_ids(tokens) == [7, 4, 5, 10, 8, 9, 11] + [0] * 6
    # Checked before lower-casing, and case-sensitively, as Google does.
    assert tok.tokenize("[UNUSED0]") == ["[UNK]"] * 3
    assert tokenization.FullTokenizer(small_vocab, do_lower_case=False,
                                      preserve_unused_tokens=True).tokenize("[unused0]x") == ["[UNK]"] * 4


def test_full_tokenizer_is_not_bertokenizers_never_split(small_vocab):
    """The one intended difference between the two end-to-end tokenizers."""
    assert tokenization.FullTokenizer(small_vocab).tokenize("[CLS] want") == ["[UNK]", "[UNK]", "[UNK]", "want"]
    assert tokenization.BertTokenizer(small_vocab).tokenize("[CLS] want") == ["[CLS]", "want"]


def test_full_tokenizer_takes_utf8_bytes_as_google_does(small_vocab):
    tok = tokenization.FullTokenizer(small_vocab)
    assert tok.tokenize("UNwantéd".encode("utf-8")) == ["un", "##want", "##ed"]
    assert tok.tokenize(b"runn\xffing") == ["runn", "##ing"]   # undecodable byte dropped
    with pytest.raises(TextTypeError) as info:
        tok.tokenize(None)
    assert isinstance(info.value, ValueError)


def test_basic_tokenizer_facts():
    assert tokenization.BasicTokenizer().tokenize("ah\u535A\u63A8zz") == ["ah", "\u535A", "\u63A8", "zz"]
    text = " \tHeLLo!how  \n Are yoU?  "
    assert tokenization.BasicTokenizer(do_lower_case=True).tokenize(text) == [
        "hello", "!", "how", "are", "you", "?"]
    assert tokenization.BasicTokenizer(do_lower_case=True).tokenize("H\u00E9llo") == ["hello"]
    assert tokenization.BasicTokenizer(do_lower_case=False).tokenize(text) == [
        "HeLLo", "!", "how", "Are", "yoU", "?"]


def test_basic_tokenizer_preserves_only_vocabulary_unused_tokens():
    vocab = {"[unused3]": 0}
    google_style = tokenization.BasicTokenizer(never_split=(), vocab=vocab, preserve_unused_tokens=True)
    assert google_style.tokenize("[unused3] [Unused3] 中[unused3]中 [unused4]") == [
        "[unused3]", "[", "unused3", "]", "中", "[unused3]", "中", "[", "unused4", "]"]
    assert tokenization.BasicTokenizer(never_split=(), vocab=vocab).tokenize("[unused3]") == [
        "[", "unused3", "]"]   # flag off: Google's default
    vocab["[unused4]"] = 1     # the vocabulary grew: cached answers must follow it
    assert google_style.tokenize("[unused4]") == ["[unused4]"]
    google_style.preserve_unused_tokens = False
    assert google_style.tokenize("[unused4]") == ["[", "unused4", "]"]


def test_wordpiece_tokenizer_facts():
    vocab = {t: i for i, t in enumerate(SMALL_VOCAB[:10])}
    tok = tokenization.WordpieceTokenizer(vocab=vocab)
    assert tok.tokenize("") == []
    assert tok.tokenize("unwanted running") == ["un", "##want", "##ed", "runn", "##ing"]
    assert tok.tokenize("unwantedX running") == ["[UNK]", "runn", "##ing"]


def test_module_level_conversions():
    vocab = {t: i for i, t in enumerate(SMALL_VOCAB[:10])}
    tokens = ["un", "##want", "##ed", "runn", "##ing"]
    assert tokenization.convert_tokens_to_ids(vocab, tokens) == [7, 4, 5, 8, 9]
    inv = {i: t for t, i in vocab.items()}
    assert tokenization.convert_ids_to_tokens(inv, [7, 4, 5, 8, 9]) == tokens
    assert tokenization.convert_by_vocab(vocab, []) == []
    with pytest.raises(UnknownTokenError) as info:
        tokenization.convert_tokens_to_ids(vocab, ["un", "nope"])
    assert isinstance(info.value, KeyError) and "nope" in str(info.value)


def test_character_predicates():
    for ch in (" ", "\t", "\r", "\n", "\u00A0"):
        assert tokenization._is_whitespace(ch)
    assert not tokenization._is_whitespace("A") and not tokenization._is_whitespace("-")
    assert tokenization._is_control("\u0005") and tokenization._is_control("\u200b")
    for ch in ("A", " ", "\t", "\r", "\U0001F4A9", "\ue000"):
        assert not tokenization._is_control(ch)
    for ch in ("-", "$", "`", ".", "\u00bf"):
        assert tokenization._is_punctuation(ch)
    assert not tokenization._is_punctuation("A") and not tokenization._is_punctuation(" ")
    for predicate in (tokenization._is_whitespace, tokenization._is_control, tokenization._is_punctuation):
        with pytest.raises(TypeError):   # one character, as Google's
            predicate("ab")


def test_convert_to_unicode_and_printable_text():
    for convert in (tokenization.convert_to_unicode, tokenization.printable_text):
        assert convert("héllo") == "héllo"
        assert convert("héllo".encode("utf-8")) == "héllo"
        assert convert(b"a\xffb\xc3") == "ab"
        for bad in (None, 3, bytearray(b"x"), ["a"]):
            with pytest.raises(TextTypeError) as info:
                convert(bad)
            assert isinstance(info.value, ValueError)


CASE_CHECKS = [
    # (do_lower_case, init_checkpoint, raises)
    (True, "gs://b/uncased_L-12_H-768_A-12/bert_model.ckpt", False),
    (False, "gs://b/uncased_L-12_H-768_A-12/bert_model.ckpt", True),
    (False, "/m/chinese_L-12_H-768_A-12/bert_model.ckpt", True),
    (False, "multilingual_L-12_H-768_A-12/bert_model.ckpt-1000", True),
    (True, "/m/cased_L-24_H-1024_A-16/bert_model.ckpt", True),
    (True, "/m/multi_cased_L-12_H-768_A-12/bert_model.ckpt.index", True),
    (False, "/m/multi_cased_L-12_H-768_A-12/bert_model.ckpt", False),
    (True, "/m/wwm_cased_L-24_H-1024_A-16/bert_model.ckpt", False),   # not in Google's lists
    (True, "/m/cased_L-12_H-768_A-12/model.ckpt-20000", False),        # not bert_model.ckpt
    (True, "cased_L-12_H-768_A-12/bert_modelXckpt", True),              # Google's unescaped "."
    (False, "", False), (False, None, False),
]


@pytest.mark.parametrize("lower,checkpoint,raises", CASE_CHECKS)
def test_validate_case_matches_checkpoint(lower, checkpoint, raises):
    if raises:
        with pytest.raises(CasingMismatchError) as info:
            tokenization.validate_case_matches_checkpoint(lower, checkpoint)
        assert isinstance(info.value, ValueError) and checkpoint in str(info.value)
    else:
        assert tokenization.validate_case_matches_checkpoint(lower, checkpoint) is None


def test_vocabulary_without_unk_tokenizes_as_google(tmp_path, caplog):
    path = tmp_path / "vocab.txt"
    path.write_text("want\n##ed\n", encoding="utf-8")
    with caplog.at_level(logging.WARNING):
        tok = tokenization.FullTokenizer(str(path))
    assert "[UNK]" in caplog.text
    assert tok.tokenize("wanted xyz") == ["want", "##ed", "[UNK]"]
    with pytest.raises(UnknownTokenError):
        tok.convert_tokens_to_ids(["[UNK]"])


# ------------------------------------------------------------------ against Google's module
@pytest.fixture(scope="module")
def google():
    """Google's tokenization module, importable under TF2 (test-only oracle)."""
    tf = pytest.importorskip("tensorflow", reason="Google's tokenization.py imports TensorFlow")
    if not hasattr(tf, "gfile"):
        tf.gfile = tf.io.gfile
    from absl import flags
    from bert import tokenization as google_tokenization
    if not hasattr(google_tokenization.tf, "gfile"):
        google_tokenization.tf.gfile = tf.io.gfile
    if not flags.FLAGS.is_parsed():
        flags.FLAGS.mark_as_parsed()
    return google_tokenization


@contextlib.contextmanager
def google_flag(preserve):
    """Google reads preserve_unused_tokens from its absl flag; set it for the block."""
    from absl.testing import flagsaver
    with flagsaver.flagsaver(preserve_unused_tokens=preserve):
        yield


def public_names(module):
    """Names a module offers its users: what it defines (functions, classes) and its data
    constants, plus the private character predicates the upstream tests import."""
    names = set()
    for name, value in vars(module).items():
        if name.startswith("_"):
            continue
        if isinstance(value, (dict, str, int, float, tuple, list, frozenset)):
            names.add(name)
        elif (inspect.isfunction(value) or inspect.isclass(value)) and \
                getattr(value, "__module__", None) == module.__name__:
            names.add(name)
        # Anything else is imported machinery (modules, six, absl's FLAGS, a logger).
    return names | {n for n in vars(module) if n.startswith("_is_")}


@pytest.mark.tf
def test_every_public_name_of_googles_module_exists(google):
    names = public_names(google)
    assert {"FullTokenizer", "convert_tokens_to_ids", "preserve_token", "_is_control"} <= names
    missing = sorted(n for n in names if not hasattr(tokenization, n))
    assert not missing, f"bertconvert.tokenization lacks Google's {missing}"


HOSTILE = [
    "[CLS]", "[SEP] [PAD] [MASK] [UNK]", "[CLS]hello[SEP]", "[unused3]", "[unused3] [unused99]",
    "[UNUSED3]", "[Unused3]", "x[unused3]", "[unused3]x", "([unused3])", "中[unused3]中",
    "[unused٣]", "[unused3]\u200b", "\u200b[unused3]", "[unused3]\t[unused4]\n[unused5]",
    "[unused0001]", "[unused]", "[unused-1]", "[[unused3]]", "[unused3 ]", "[unused99999]",
    "Héllo [unused7] wörld [CLS]", "",
]


@pytest.mark.tf
@pytest.mark.parametrize("preserve", [False, True], ids=["default", "preserve"])
@pytest.mark.parametrize("lower", [True, False], ids=["uncased", "cased"])
def test_full_tokenizer_identical_to_google(google, lower, preserve):
    ours = tokenization.FullTokenizer(VOCABS[lower], do_lower_case=lower, preserve_unused_tokens=preserve)
    lines = HOSTILE + special_lines() + natural_lines()[:400]
    with google_flag(preserve):
        reference = google.FullTokenizer(VOCABS[lower], do_lower_case=lower)
        expected = [reference.tokenize(line) for line in lines]
        google_basic = google.BasicTokenizer(do_lower_case=lower, vocab=reference.vocab)
        expected_basic = [google_basic.tokenize(line) for line in lines]
        expected_bytes = [reference.tokenize(line.encode("utf-8", "surrogatepass"))
                          for line in lines[:60]]
    bad = [(line, e, o) for line, e, o in zip(lines, expected, map(ours.tokenize, lines)) if e != o]
    assert not bad, f"{len(bad)} lines differ from Google, e.g. {bad[:3]}"
    basic = tokenization.BasicTokenizer(do_lower_case=lower, never_split=(), vocab=ours.vocab,
                                        preserve_unused_tokens=preserve)
    assert [basic.tokenize(line) for line in lines] == expected_basic
    assert [ours.tokenize(line.encode("utf-8", "surrogatepass")) for line in lines[:60]] == expected_bytes
    ids = [ours.convert_tokens_to_ids(t) for t in expected]
    assert ids == [reference.convert_tokens_to_ids(t) for t in expected]
    assert [ours.convert_ids_to_tokens(i) for i in ids] == [reference.convert_ids_to_tokens(i) for i in ids]
    if preserve:   # the flag changed something on these inputs, or the test would prove nothing
        assert "[unused3]" in ours.tokenize("[unused3]")


_pieces = st.one_of(
    st.sampled_from(["[unused3]", "[unused42]", "[UNUSED3]", "[CLS]", "[unused", "3]", "[", "]",
                     " ", "\t", "\u00a0", "\u200b", "中", "é", "\u0301", "x", "Want", "ed"]),
    st.characters(exclude_categories=()),
)
_ORACLES = {}


@pytest.mark.tf
@settings(max_examples=200, deadline=None)
@given(text=st.lists(_pieces, max_size=30).map("".join), lower=st.booleans(), preserve=st.booleans())
def test_full_tokenizer_identical_to_google_on_random_text(google, text, lower, preserve):
    key = (lower, preserve)
    if key not in _ORACLES:
        _ORACLES[key] = (google.FullTokenizer(VOCABS[lower], do_lower_case=lower),
                         tokenization.FullTokenizer(VOCABS[lower], do_lower_case=lower,
                                                    preserve_unused_tokens=preserve))
    reference, ours = _ORACLES[key]
    with google_flag(preserve):
        expected = reference.tokenize(text)
    assert ours.tokenize(text) == expected


@pytest.mark.tf
def test_helpers_identical_to_google(google):
    for value in ("plain", "ünï", b"bytes \xc3\xa9", b"\xff\xfe broken", b"", ""):
        assert tokenization.convert_to_unicode(value) == google.convert_to_unicode(value)
        assert tokenization.printable_text(value) == google.printable_text(value)
    for bad in (None, 1.5, bytearray(b"x")):
        for ours, theirs in ((tokenization.convert_to_unicode, google.convert_to_unicode),
                             (tokenization.printable_text, google.printable_text)):
            with pytest.raises(ValueError):
                theirs(bad)
            with pytest.raises(ValueError):
                ours(bad)
    for text in ("", "  ", " a  b\tc\n", "\u3000x\u3000"):
        assert tokenization.whitespace_tokenize(text) == google.whitespace_tokenize(text)
    vocab = google.load_vocab(VOCABS[True])
    assert list(tokenization.load_vocab(VOCABS[True]).items()) == list(vocab.items())
    tokens = ["[CLS]", "the", "##s", "[unused3]"]
    assert tokenization.convert_tokens_to_ids(vocab, tokens) == google.convert_tokens_to_ids(vocab, tokens)
    for token in ("[unused3]", "[unused3]x", "[UNUSED3]", "[unused99999]", "the"):
        for flag in (False, True):
            with google_flag(flag):
                expected = google.preserve_token(token, vocab)
            assert tokenization.preserve_token(token, vocab, flag) == expected
    assert tokenization.preserve_token("[unused3]", vocab) is False   # Google's flag default


@pytest.mark.tf
def test_validate_case_matches_checkpoint_identical_to_google(google):
    names = ["uncased_L-24_H-1024_A-16", "uncased_L-12_H-768_A-12", "multilingual_L-12_H-768_A-12",
             "chinese_L-12_H-768_A-12", "cased_L-12_H-768_A-12", "cased_L-24_H-1024_A-16",
             "multi_cased_L-12_H-768_A-12", "wwm_uncased_L-24_H-1024_A-16", "my_model"]
    paths = [None, "", "bert_model.ckpt"]
    for name in names:
        paths += [f"{name}/bert_model.ckpt", f"gs://bucket/x/{name}/bert_model.ckpt-123",
                  f"/a b/{name}/bert_model.ckpt.index", f"{name}/model.ckpt", f"{name}/bert_modelXckpt",
                  f"{name}.v2/bert_model.ckpt", f"{name}/sub/bert_model.ckpt"]
    for path in paths:
        for lower in (True, False, 0, 1):
            try:
                google.validate_case_matches_checkpoint(lower, path)
                expected = None
            except ValueError:
                expected = ValueError
            if expected is None:
                assert tokenization.validate_case_matches_checkpoint(lower, path) is None, path
            else:
                with pytest.raises(ValueError):
                    tokenization.validate_case_matches_checkpoint(lower, path)


@pytest.mark.tf
def test_character_predicates_identical_to_google(google):
    for cp in list(range(0x10000)) + list(range(0x10000, 0x110000, 13)):
        ch = chr(cp)
        assert tokenization._is_whitespace(ch) == google._is_whitespace(ch), hex(cp)
        assert tokenization._is_control(ch) == google._is_control(ch), hex(cp)
        assert tokenization._is_punctuation(ch) == google._is_punctuation(ch), hex(cp)
