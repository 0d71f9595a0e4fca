"""BertTokenizer / BasicTokenizer / WordpieceTokenizer: API, bad input, caches, encode().

Exactness against Google's tokenization.py lives in test_tokenization_google.py.
"""
import http.server
import logging
import os
import threading

import numpy as np
import pytest
import torch

import bertconvert
from bertconvert import (BasicTokenizer, BertTokenizer, TokenizerError, VocabError,
                         WordpieceTokenizer)
from bertconvert.errors import TokenizerArgumentError, TokenizerInputError, UnknownTokenError
from bertconvert.tokenizer.wordpiece import casing_from_name, load_vocab

FIXTURES = os.path.join(os.path.dirname(__file__), os.pardir, os.pardir, "fixtures", "tokenizer")
UNCASED = os.path.join(FIXTURES, "vocab-uncased.txt")
CASED = os.path.join(FIXTURES, "vocab-cased.txt")

SMALL_VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "un", "##aff", "##able", "runn",
               "##ing", "want", "##want", "##ed", "wa", ",", "!", "?", ".", "hello", "world",
               "a", "b", "c", "##a", "##b", "##c", "中", "国"]


@pytest.fixture
def small_vocab(tmp_path):
    path = tmp_path / "vocab.txt"
    path.write_text("\n".join(SMALL_VOCAB) + "\n", encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def uncased():
    return BertTokenizer(UNCASED, do_lower_case=True)


# ------------------------------------------------------------------ the three stages
def test_public_names_are_exported():
    for name in ("BertTokenizer", "BasicTokenizer", "WordpieceTokenizer"):
        assert getattr(bertconvert, name) is getattr(bertconvert.tokenizer.wordpiece, name)


def test_basic_tokenizer_lower_and_cased():
    text = " \tHeLLo!how  \n Are yoU?  Ünïcödé\u00a0naïve 中国人 x"
    assert BasicTokenizer(do_lower_case=True).tokenize(text) == [
        "hello", "!", "how", "are", "you", "?", "unicode", "naive", "中", "国", "人", "x"]
    assert BasicTokenizer(do_lower_case=False).tokenize(text) == [
        "HeLLo", "!", "how", "Are", "yoU", "?", "Ünïcödé", "naïve", "中", "国", "人", "x"]


def test_basic_tokenizer_never_split_and_option_changes():
    basic = BasicTokenizer(do_lower_case=True)
    assert basic.tokenize("[CLS] Hi [cls]") == ["[CLS]", "hi", "[", "cls", "]"]
    basic.do_lower_case = False   # cached words must not leak the old casing
    assert basic.tokenize("[CLS] Hi [cls]") == ["[CLS]", "Hi", "[", "cls", "]"]
    basic.never_split = ()
    assert basic.tokenize("[CLS]") == ["[", "CLS", "]"]


def test_wordpiece_greedy_longest_match_and_200_cap():
    vocab = {t: i for i, t in enumerate(SMALL_VOCAB)}
    wp = WordpieceTokenizer(vocab)
    assert wp.tokenize("unwanted running") == ["un", "##want", "##ed", "runn", "##ing"]
    assert wp.tokenize("unaffable") == ["un", "##aff", "##able"]
    assert wp.tokenize("unwantedX") == ["[UNK]"]
    assert wp.tokenize("") == [] and wp.tokenize("  \n ") == []
    assert wp.tokenize("a" * 200) == ["a"] + ["##a"] * 199
    assert wp.tokenize("a" * 201) == ["[UNK]"]
    wp.max_input_chars_per_word = 100  # changing an option drops the cache
    assert wp.tokenize("a" * 101) == ["[UNK]"]


def test_wordpiece_follows_vocab_edits(small_vocab):
    tok = BertTokenizer(small_vocab)
    assert tok.tokenize("bertconvert") == ["[UNK]"]
    tok.vocab["bertconvert"] = len(tok.vocab)   # grows: caches are dropped automatically
    tok.ids_to_tokens[len(tok.vocab) - 1] = "bertconvert"
    assert tok.tokenize("bertconvert") == ["bertconvert"]


def test_bert_tokenizer_end_to_end(small_vocab):
    tok = BertTokenizer(small_vocab)
    assert tok.tokenize("UNwant\u00e9d,running [CLS] 中国") == [
        "un", "##want", "##ed", ",", "runn", "##ing", "[CLS]", "中", "国"]
    assert BertTokenizer(small_vocab, do_lower_case=False).tokenize("UNwanted") == ["[UNK]"]
    # WordPiece only: "unwanted," keeps its comma and "##," is not a piece, so [UNK]
    assert BertTokenizer(small_vocab, do_basic_tokenize=False).tokenize("unwanted, running") == [
        "[UNK]", "runn", "##ing"]
    assert len(tok) == tok.vocab_size == len(SMALL_VOCAB)


def test_any_str_tokenizes(uncased):
    weird = ["", " ", "\x00\x01\x7f", "\ud800\udc00\udfff", "\U0010ffff", "\ufeff" * 3,
             "".join(map(chr, range(0xD700, 0xE100))), "a\u0301" * 500, "x" * 10000]
    for text in weird:
        assert isinstance(uncased.tokenize(text), list)
    assert uncased.tokenize("") == [] and uncased.tokenize("\x00\u200b \t") == []
    # every BMP code point in one string
    assert uncased.tokenize("".join(map(chr, range(0x10000))))

    class Text(str):
        pass
    assert uncased.tokenize(Text("Hello world")) == uncased.tokenize("Hello world")


@pytest.mark.parametrize("bad", [b"bytes", None, 42, ["a list"], bytearray(b"x")])
def test_non_str_input_is_a_named_type_error(uncased, bad):
    with pytest.raises(TokenizerInputError) as info:
        uncased.tokenize(bad)
    assert isinstance(info.value, TypeError) and isinstance(info.value, TokenizerError)
    assert type(bad).__name__ in str(info.value)
    with pytest.raises(TypeError):
        BasicTokenizer().tokenize(bad)
    if not isinstance(bad, list):   # a list is a batch for encode()
        with pytest.raises(TypeError):
            uncased.encode(bad)


def test_cache_is_bounded(small_vocab, monkeypatch):
    from bertconvert.tokenizer import wordpiece as tokenization
    monkeypatch.setattr(tokenization, "CACHE_SIZE", 50)
    tok = BertTokenizer(small_vocab)
    for i in range(500):
        assert tok.tokenize(f"a{i}") == ["[UNK]"]   # one failing piece makes the word [UNK]
    assert len(tok._cache) <= 50
    assert tok.tokenize("a b") == ["a", "b"]


# ------------------------------------------------------------------ vocabulary files
def test_load_vocab_google_rules(tmp_path):
    path = tmp_path / "v.txt"
    path.write_bytes(b"[PAD]\r\n [UNK] \nx\r\ny\n\nx\nz")
    assert list(load_vocab(path).items()) == [("[PAD]", 0), ("[UNK]", 1), ("x", 2), ("y", 3),
                                              ("", 4), ("z", 5)]


@pytest.mark.parametrize("content,needle", [
    (None, "does not exist"),
    (b"", "empty"),
    (b"[PAD]\n[CLS]\n[SEP]\n", "[UNK]"),
    (b"[PAD]\n[UNK]\nabc\xff\xfe\n", "not UTF-8"),
    (b"[PAD]\n[UNK]\n\xc3\n", "line 3"),
])
def test_bad_vocab_files_raise_vocab_error(tmp_path, content, needle):
    path = tmp_path / "vocab.txt"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(VocabError, match=needle.replace("[", r"\[").replace("]", r"\]")):
        BertTokenizer(path)


def test_vocab_path_is_a_directory(tmp_path):
    with pytest.raises(VocabError, match="directory"):
        BertTokenizer(tmp_path)


def test_custom_unk_token(tmp_path):
    path = tmp_path / "v.txt"
    path.write_text("<pad>\n<unk>\nhi\n", encoding="utf-8")
    with pytest.raises(VocabError, match="unk_token"):
        BertTokenizer(path)
    assert BertTokenizer(path, unk_token="<unk>").tokenize("hi ho") == ["hi", "<unk>"]


def test_ids_round_trip_and_errors(uncased, caplog):
    tokens = uncased.tokenize("The quick brown fox jumps over the lazy dog.")
    ids = uncased.convert_tokens_to_ids(tokens)
    assert uncased.convert_ids_to_tokens(ids) == tokens
    assert uncased.convert_ids_to_tokens(np.array(ids)) == tokens
    assert uncased.convert_ids_to_tokens(torch.tensor(ids)) == tokens
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    assert uncased.convert_tokens_to_ids(specials) == [0, 100, 101, 102, 103]   # Google's layout
    with pytest.raises(UnknownTokenError, match="not in the vocabulary") as info:
        uncased.convert_tokens_to_ids(["definitely-not-a-token"])
    assert isinstance(info.value, KeyError)
    with pytest.raises(KeyError):
        uncased.convert_ids_to_tokens([10 ** 9])


def test_convert_tokens_to_ids_warns_past_max_len(small_vocab, caplog):
    tok = BertTokenizer(small_vocab, max_len=4)
    with caplog.at_level(logging.WARNING, logger="bertconvert.tokenizer.wordpiece"):
        tok.convert_tokens_to_ids(["a"] * 4)
        assert not caplog.records
        tok.convert_tokens_to_ids(["a"] * 5)
    assert "5 > 4" in caplog.text


def test_save_vocabulary_round_trip(uncased, tmp_path):
    written = uncased.save_vocabulary(tmp_path)
    assert written == os.path.join(tmp_path, "vocab.txt")
    with open(UNCASED, "rb") as f:
        assert open(written, "rb").read() == f.read()
    other = uncased.save_vocabulary(tmp_path / "sub" / "my-vocab.txt")
    assert BertTokenizer(other).vocab == uncased.vocab
    assert sorted(os.listdir(tmp_path)) == ["sub", "vocab.txt"]  # no temp files left


def test_save_vocabulary_refuses_tokens_that_would_not_read_back(small_vocab, tmp_path):
    tok = BertTokenizer(small_vocab)
    tok.vocab["two\nlines"] = len(tok.vocab)
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(VocabError, match="read back"):
        tok.save_vocabulary(out)
    assert not os.listdir(out)


# ------------------------------------------------------------------ from_pretrained
def test_from_pretrained_directory_and_file(tmp_path):
    model_dir = tmp_path / "cased_L-2_H-32_A-4"
    model_dir.mkdir()
    vocab = model_dir / "vocab.txt"
    vocab.write_bytes(open(CASED, "rb").read())
    tok = BertTokenizer.from_pretrained(model_dir)
    assert tok.do_lower_case is False          # inferred from Google's directory name
    assert tok.tokenize("Hello") == BertTokenizer(CASED, do_lower_case=False).tokenize("Hello")
    assert BertTokenizer.from_pretrained(str(vocab), max_len=16).max_len == 16
    plain = tmp_path / "plain"
    plain.mkdir()
    (plain / "vocab.txt").write_bytes(vocab.read_bytes())
    assert BertTokenizer.from_pretrained(plain).do_lower_case is True   # the 0.6.2 default


def test_from_pretrained_reads_tokenizer_config(tmp_path):
    model_dir = tmp_path / "uncased-looking-name"
    model_dir.mkdir()
    (model_dir / "vocab.txt").write_bytes(open(CASED, "rb").read())
    (model_dir / "tokenizer_config.json").write_text(
        '{"do_lower_case": false, "model_max_length": 512, "tokenizer_class": "BertTokenizer"}')
    tok = BertTokenizer.from_pretrained(model_dir)
    assert (tok.do_lower_case, tok.max_len) == (False, 512)
    assert BertTokenizer.from_pretrained(model_dir, do_lower_case=True, max_len=64).max_len == 64
    (model_dir / "tokenizer_config.json").write_text("{not json")
    with pytest.raises(VocabError, match="tokenizer_config.json"):
        BertTokenizer.from_pretrained(model_dir)


def test_from_pretrained_warns_on_contradicting_casing(tmp_path, caplog):
    model_dir = tmp_path / "uncased_L-12_H-768_A-12"
    model_dir.mkdir()
    (model_dir / "vocab.txt").write_bytes(open(UNCASED, "rb").read())
    with caplog.at_level(logging.WARNING, logger="bertconvert.tokenizer.wordpiece"):
        tok = BertTokenizer.from_pretrained(model_dir, do_lower_case=False)
    assert tok.do_lower_case is False          # a local path: the caller's word stands
    assert "uncased" in caplog.text


def test_from_pretrained_missing(tmp_path):
    with pytest.raises(VocabError, match="vocab.txt"):
        BertTokenizer.from_pretrained(tmp_path)                 # directory without vocab.txt
    with pytest.raises(VocabError, match="not a known model name"):
        BertTokenizer.from_pretrained(tmp_path / "nope" / "vocab.txt")


@pytest.mark.parametrize("name,expected", [
    ("bert-base-uncased", True), ("bert-large-cased", False), ("bert-base-chinese", True),
    ("bert-base-multilingual-cased", False), ("bert-base-multilingual-uncased", True),
    ("/models/cased_L-12_H-768_A-12/", False), ("multi_cased_L-12_H-768_A-12", False),
    ("https://host/x/uncased_L-24_H-1024_A-16.zip", True), ("my-model", None),
])
def test_casing_from_name(name, expected):
    assert casing_from_name(name) is expected


class _VocabHandler(http.server.BaseHTTPRequestHandler):
    body = b""

    def do_GET(self):  # noqa: N802 - http.server's naming
        self.send_response(200)
        self.send_header("Content-Length", str(len(self.body)))
        self.send_header("ETag", '"v1"')
        self.end_headers()
        self.wfile.write(self.body)

    do_HEAD = do_GET

    def log_message(self, *args):
        pass


@pytest.fixture
def vocab_server():
    """A loopback HTTP server that serves the cased fixture vocabulary at any path."""
    handler = type("Handler", (_VocabHandler,), {"body": open(CASED, "rb").read()})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    server.server_close()


def test_from_pretrained_url_through_the_cache(tmp_path, caplog, vocab_server):
    url = f"{vocab_server}/models/bert-base-cased-vocab.txt"
    with caplog.at_level(logging.WARNING, logger="bertconvert.tokenizer.wordpiece"):
        tok = BertTokenizer.from_pretrained(url, cache_dir=tmp_path / "cache", do_lower_case=True)
    assert tok.do_lower_case is False and "cased" in caplog.text   # the name wins, with a warning
    assert tok.vocab == load_vocab(CASED)
    assert tok.max_len == int(1e12)


def test_from_pretrained_seed_name(tmp_path, caplog, vocab_server, monkeypatch):
    from bertconvert.cache import names as pretrained
    monkeypatch.setenv(pretrained.ENV_MIRROR, vocab_server)   # names resolve under a mirror
    cache = tmp_path / "cache"
    tok = BertTokenizer.from_pretrained("bert-base-cased", cache_dir=cache)
    assert (tok.do_lower_case, tok.max_len) == (False, 512)
    assert tok.vocab == load_vocab(CASED)
    with caplog.at_level(logging.WARNING, logger="bertconvert.tokenizer.wordpiece"):
        tok = BertTokenizer.from_pretrained("bert-base-uncased", cache_dir=cache, do_lower_case=False,
                                            max_len=128)
    assert (tok.do_lower_case, tok.max_len) == (True, 128)
    assert "uncased" in caplog.text
    assert tok.encode("word " * 300)["input_ids"][-1] == tok.vocab["[SEP]"]
    assert len(tok.encode("word " * 300)["input_ids"]) == 128


# ------------------------------------------------------------------ encode
def test_encode_single_pair_and_specials(small_vocab):
    tok = BertTokenizer(small_vocab)
    enc = tok.encode("hello world", "unaffable!")
    assert enc == {"input_ids": [2, 18, 19, 3, 5, 6, 7, 15, 3],
                   "token_type_ids": [0, 0, 0, 0, 1, 1, 1, 1, 1],
                   "attention_mask": [1] * 9}
    assert tok.encode("")["input_ids"] == [2, 3]
    assert tok.encode("hello", "")["input_ids"] == [2, 18, 3]     # Google: empty b = no pair
    assert tok.encode("[CLS] hello")["input_ids"] == [2, 2, 18, 3]


def test_encode_truncation_longest_first(small_vocab):
    tok = BertTokenizer(small_vocab)
    a, b = "a b c a b c a", "c b a"       # 7 and 3 word pieces
    # 6 slots for text: a (the longer) shrinks 7 -> 3, then the pair fits
    enc = tok.encode(a, b, max_length=9)
    assert enc["input_ids"] == [2, 20, 21, 22, 3, 22, 21, 20, 3]
    assert enc["token_type_ids"] == [0] * 5 + [1] * 4
    # 4 slots, 4 vs 3: a -> 3, then a tie takes from b (3 -> 2), then a -> 2
    assert tok.encode("a b c a", b, max_length=7)["input_ids"] == [2, 20, 21, 3, 22, 21, 3]
    assert tok.encode(a, max_length=4)["input_ids"] == [2, 20, 21, 3]
    assert len(tok.encode(a, b, truncation=False, max_length=5)["input_ids"]) == 13
    with pytest.raises(TokenizerArgumentError, match="at least 3"):
        tok.encode(a, b, max_length=2)
    with pytest.raises(TokenizerArgumentError, match="at least 2"):
        tok.encode(a, max_length=1)


def test_encode_defaults_to_max_len(small_vocab):
    tok = BertTokenizer(small_vocab, max_len=5)
    assert tok.encode("a b c a b c")["input_ids"] == [2, 20, 21, 22, 3]
    assert len(tok.encode("a b c a b c", max_length=7)["input_ids"]) == 7


def test_encode_batches_padding_and_tensors(small_vocab):
    tok = BertTokenizer(small_vocab)
    batch = ["hello", ("hello", "world !"), "a b c"]
    enc = tok.encode(batch, padding=True)
    assert [len(r) for r in enc["input_ids"]] == [6, 6, 6]
    assert enc["input_ids"][0] == [2, 18, 3, 0, 0, 0]
    assert enc["attention_mask"][0] == [1, 1, 1, 0, 0, 0]
    assert enc["token_type_ids"][1] == [0, 0, 0, 1, 1, 1]
    assert enc["token_type_ids"][2] == [0] * 6
    same = tok.encode(["hello", "hello", "a b c"], [None, "world !", None], padding="longest")
    assert same == enc
    pt = tok.encode(batch, padding="max_length", max_length=10, return_tensors="pt")
    assert pt["input_ids"].shape == (3, 10) and pt["input_ids"].dtype == torch.long
    assert pt["attention_mask"].sum().item() == 3 + 6 + 5
    single = tok.encode("hello world", return_tensors="np")
    assert single["input_ids"].shape == (1, 4) and single["input_ids"].dtype == np.int64
    unpadded = tok.encode(batch)
    assert [len(r) for r in unpadded["input_ids"]] == [3, 6, 5]
    with pytest.raises(TokenizerArgumentError, match="padding=True"):
        tok.encode(batch, return_tensors="pt")
    assert tok.encode([], return_tensors="np")["input_ids"].shape == (0, 0)


@pytest.mark.parametrize("kwargs,needle", [
    ({"padding": "sideways"}, "padding"),
    ({"return_tensors": "tf"}, "return_tensors"),
    ({"max_length": 0}, "max_length"),
    ({"max_length": "10"}, "max_length"),
    ({"padding": "max_length"}, "max_length"),
])
def test_encode_rejects_bad_options(small_vocab, kwargs, needle):
    with pytest.raises(TokenizerArgumentError, match=needle) as info:
        BertTokenizer(small_vocab).encode("hello", **kwargs)
    assert isinstance(info.value, ValueError)


def test_encode_rejects_bad_batches(small_vocab):
    tok = BertTokenizer(small_vocab)
    with pytest.raises(TokenizerInputError, match="3 texts"):
        tok.encode([("a", "b", "c")])
    with pytest.raises(TokenizerInputError, match="list of 2"):
        tok.encode(["a", "b"], ["c"])
    with pytest.raises(TokenizerInputError, match="text_pair"):
        tok.encode("a", 5)


def test_encode_needs_pad_cls_sep(tmp_path):
    path = tmp_path / "v.txt"
    path.write_text("[UNK]\n[CLS]\n[SEP]\nhi\n", encoding="utf-8")
    tok = BertTokenizer(path)
    assert tok.encode("hi")["input_ids"] == [1, 3, 2]
    with pytest.raises(VocabError, match=r"\[PAD\]"):
        tok.encode(["hi", "hi hi"], padding=True)
    path.write_text("[UNK]\nhi\n", encoding="utf-8")
    with pytest.raises(VocabError, match=r"\[CLS\]"):
        BertTokenizer(path).encode("hi")
