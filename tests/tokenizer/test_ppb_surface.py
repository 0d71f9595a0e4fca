"""``bertconvert.tokenization`` as a stand-in for pytorch-pretrained-BERT 0.6.2's
``tokenization`` module: the facts 0.6.2's own test file checks, reproduced here, its names
and constants against 0.6.2 itself (installed, test-only), and the documented differences
pinned so that they stay deliberate.
"""
import unicodedata

import pytest

from bertconvert import tokenization

from .test_against_google import VOCABS, natural_lines, special_lines
from .test_google_surface import public_names

SMALL_VOCAB = ["[UNK]", "[CLS]", "[SEP]", "want", "##want", "##ed", "wa", "un", "runn", "##ing", ","]


@pytest.fixture(scope="module")
def ppb():
    return pytest.importorskip("pytorch_pretrained_bert.tokenization")


# ------------------------------------------------------------------ 0.6.2's own facts
def test_bert_tokenizer_round_trips_through_save_vocabulary(tmp_path):
    vocab_file = tmp_path / "words.txt"
    vocab_file.write_text("".join(t + "\n" for t in SMALL_VOCAB), encoding="utf-8")
    tok = tokenization.BertTokenizer(str(vocab_file))
    vocab_file.unlink()
    tokens = tok.tokenize("UNwant\u00E9d,running")
    assert tokens == ["un", "##want", "##ed", ",", "runn", "##ing"]
    assert tok.convert_tokens_to_ids(tokens) == [7, 4, 5, 10, 8, 9]
    saved_dir = tmp_path / "saved"
    saved_dir.mkdir()
    saved = tok.save_vocabulary(vocab_path=str(saved_dir))
    assert saved == str(saved_dir / tokenization.VOCAB_NAME)
    again = tok.from_pretrained(saved)
    assert again.tokenize("UNwant\u00E9d,running") == tokens
    assert again.convert_tokens_to_ids(tokens) == [7, 4, 5, 10, 8, 9]
    assert again.vocab == tok.vocab


def test_basic_and_wordpiece_facts():
    assert tokenization.BasicTokenizer().tokenize("ah\u535A\u63A8zz") == ["ah", "\u535A", "\u63A8", "zz"]
    text = " \tHeLLo!how  \n Are yoU?  "
    assert tokenization.BasicTokenizer(do_lower_case=True).tokenize(text) == [
        "hello", "!", "how", "are", "you", "?"]
    assert tokenization.BasicTokenizer(do_lower_case=True).tokenize("H\u00E9llo") == ["hello"]
    assert tokenization.BasicTokenizer(do_lower_case=False).tokenize(text) == [
        "HeLLo", "!", "how", "Are", "yoU", "?"]
    wordpiece = tokenization.WordpieceTokenizer(vocab={t: i for i, t in enumerate(SMALL_VOCAB[:10])})
    assert wordpiece.tokenize("") == []
    assert wordpiece.tokenize("unwanted running") == ["un", "##want", "##ed", "runn", "##ing"]
    assert wordpiece.tokenize("unwantedX running") == ["[UNK]", "runn", "##ing"]


def test_character_predicate_facts():
    for ch in (" ", "\t", "\r", "\n", "\u00A0"):
        assert tokenization._is_whitespace(ch)
    assert not tokenization._is_whitespace("A") and not tokenization._is_whitespace("-")
    assert tokenization._is_control("\u0005")
    for ch in ("A", " ", "\t", "\r"):
        assert not tokenization._is_control(ch)
    for ch in ("-", "$", "`", "."):
        assert tokenization._is_punctuation(ch)
    assert not tokenization._is_punctuation("A") and not tokenization._is_punctuation(" ")


def test_never_split_keeps_062_meaning():
    """BasicTokenizer's second argument is 0.6.2's never_split (Google's is vocab)."""
    assert tokenization.BasicTokenizer().tokenize("[CLS] Hi [SEP]") == ["[CLS]", "hi", "[SEP]"]
    assert tokenization.BasicTokenizer(True, ("[FOO]",)).tokenize("[FOO] [CLS]") == [
        "[FOO]", "[", "cls", "]"]
    assert tokenization.BasicTokenizer(True, ()).tokenize("[CLS]") == ["[", "cls", "]"]


# ------------------------------------------------------------------ against 0.6.2 itself
def test_every_public_name_of_062_exists(ppb):
    names = public_names(ppb)
    assert {"BertTokenizer", "PRETRAINED_VOCAB_ARCHIVE_MAP", "VOCAB_NAME", "_is_control"} <= names
    missing = sorted(n for n in names if not hasattr(tokenization, n))
    assert not missing, f"bertconvert.tokenization lacks 0.6.2's {missing}"


def test_constants_equal_062(ppb):
    assert tokenization.PRETRAINED_VOCAB_ARCHIVE_MAP == ppb.PRETRAINED_VOCAB_ARCHIVE_MAP
    assert tokenization.PRETRAINED_VOCAB_POSITIONAL_EMBEDDINGS_SIZE_MAP == \
        ppb.PRETRAINED_VOCAB_POSITIONAL_EMBEDDINGS_SIZE_MAP
    assert tokenization.VOCAB_NAME == ppb.VOCAB_NAME


@pytest.mark.parametrize("lower", [True, False], ids=["uncased", "cased"])
def test_basic_tokenizer_with_never_split_equals_062(ppb, lower):
    lines = natural_lines()[:300] + ["[CLS] a [SEP] b [MASK] [UNK] [PAD] [cls] [FOO]"]
    for never_split in (tokenization.NEVER_SPLIT, ("[FOO]", "[cls]"), ()):
        ours = tokenization.BasicTokenizer(lower, never_split)
        theirs = ppb.BasicTokenizer(lower, never_split)
        assert [ours.tokenize(line) for line in lines] == [theirs.tokenize(line) for line in lines]
    assert tokenization.whitespace_tokenize(" a\t b\n") == ppb.whitespace_tokenize(" a\t b\n")


def test_character_predicates_against_062(ppb):
    """_is_whitespace and _is_punctuation are 0.6.2's exactly. _is_control is Google's (Cc
    and Cf): 0.6.2 also counted private-use, surrogate and unassigned code points, which its
    tokenizer then deleted -- the deviation from Google our tokenizer does not copy."""
    differ = set()
    for cp in list(range(0x10000)) + list(range(0x10000, 0x110000, 13)):
        ch = chr(cp)
        assert tokenization._is_whitespace(ch) == ppb._is_whitespace(ch), hex(cp)
        assert tokenization._is_punctuation(ch) == ppb._is_punctuation(ch), hex(cp)
        if tokenization._is_control(ch) != ppb._is_control(ch):
            differ.add(unicodedata.category(ch))
            assert ppb._is_control(ch), hex(cp)   # we never count more than 0.6.2
    assert differ == {"Co", "Cs", "Cn"}


@pytest.mark.parametrize("lower", [True, False], ids=["uncased", "cased"])
def test_load_vocab_equals_062_on_real_vocabularies(ppb, lower):
    assert list(tokenization.load_vocab(VOCABS[lower]).items()) == \
        list(ppb.load_vocab(VOCABS[lower]).items())


def test_load_vocab_differs_from_062_only_on_malformed_files(ppb, tmp_path):
    """A repeated token keeps its first id and later ids close up (Google's load_vocab);
    0.6.2 gave the last line's id and left a hole. A lone carriage return does not end a
    line (Google's tf.gfile); 0.6.2 read it as a line end."""
    path = tmp_path / "vocab.txt"
    path.write_bytes(b"[UNK]\na\nb\na\nc\n")
    assert list(tokenization.load_vocab(path).items()) == [("[UNK]", 0), ("a", 1), ("b", 2), ("c", 3)]
    assert list(ppb.load_vocab(str(path)).items()) == [("[UNK]", 0), ("a", 3), ("b", 2), ("c", 4)]
    path.write_bytes(b"[UNK]\nx\ry\n")
    assert list(tokenization.load_vocab(path)) == ["[UNK]", "xy"]
    assert list(ppb.load_vocab(str(path))) == ["[UNK]", "x", "y"]


@pytest.mark.parametrize("lower", [True, False], ids=["uncased", "cased"])
def test_bert_tokenizer_equals_062_off_its_deviations(ppb, lower):
    """On text without private-use/unassigned characters or 101-200 character words (where
    0.6.2 deviated from Google, see test_against_google.py) the two BertTokenizers agree,
    never_split included."""
    lines = natural_lines()[:500] + [line for line in special_lines()
                                     if len(line) < 60 and "unassigned" not in line and "private" not in line
                                     and "lone" not in line]
    ours = tokenization.BertTokenizer(VOCABS[lower], do_lower_case=lower)
    theirs = ppb.BertTokenizer(VOCABS[lower], do_lower_case=lower)
    assert [ours.tokenize(line) for line in lines] == [theirs.tokenize(line) for line in lines]
