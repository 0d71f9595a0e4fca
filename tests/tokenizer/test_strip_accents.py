"""``strip_accents``: None (default) strips exactly when lower-casing, as Google's tokenizer;
False keeps accents (KerasHub's BERT presets lower-case "Café" to "café"); True always strips.
The same meaning as transformers' option, checked against the tokenizers library's
BertNormalizer + BertPreTokenizer (what transformers' BertTokenizer runs)."""
import json

import pytest

from bertconvert.tokenizer.basic import BasicTokenizer
from bertconvert.tokenizer.wordpiece import BertTokenizer

TEXTS = ["Café naïve résumé", "Zürich über ÉCOLE", "Ångström façade — déjà vu!", "plain ascii",
         "Ñandú piñata", "中文 Café", "e\u0301 combining", "İstanbul"]


@pytest.mark.parametrize("lower, strip, text, want", [
    (True, None, "Café Naïve", ["cafe", "naive"]),     # Google's uncased behaviour, unchanged
    (False, None, "Café Naïve", ["Café", "Naïve"]),    # Google's cased behaviour, unchanged
    (True, False, "Café Naïve", ["café", "naïve"]),    # KerasHub's presets
    (False, True, "Café Naïve", ["Cafe", "Naive"]),
    (True, True, "Café Naïve", ["cafe", "naive"]),
])
def test_strip_accents(lower, strip, text, want):
    assert BasicTokenizer(do_lower_case=lower, strip_accents=strip).tokenize(text) == want


def test_changing_the_option_drops_cached_words():
    tok = BasicTokenizer(do_lower_case=True)
    assert tok.tokenize("Café") == ["cafe"]
    tok.strip_accents = False
    assert tok.tokenize("Café") == ["café"]


@pytest.mark.parametrize("lower", [True, False])
@pytest.mark.parametrize("strip", [None, True, False])
def test_same_meaning_as_the_tokenizers_library(lower, strip):
    normalizers = pytest.importorskip("tokenizers.normalizers")
    from tokenizers.pre_tokenizers import BertPreTokenizer
    norm = normalizers.BertNormalizer(clean_text=True, handle_chinese_chars=True,
                                      strip_accents=strip, lowercase=lower)
    pre = BertPreTokenizer()
    ours = BasicTokenizer(do_lower_case=lower, strip_accents=strip, never_split=())
    for text in TEXTS:
        theirs = [w for w, _ in pre.pre_tokenize_str(norm.normalize_str(text))]
        assert ours.tokenize(text) == theirs, text


def _vocab_dir(tmp_path, config):
    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "café", "cafe"]
    (tmp_path / "vocab.txt").write_text("\n".join(words) + "\n", encoding="utf-8")
    if config is not None:
        (tmp_path / "tokenizer_config.json").write_text(json.dumps(config))
    return str(tmp_path)


@pytest.mark.parametrize("config, ids", [
    ({"do_lower_case": True, "strip_accents": False}, [5]),
    ({"do_lower_case": True, "strip_accents": None}, [6]),   # transformers' null: the default
    ({"do_lower_case": True}, [6]),
])
def test_from_pretrained_reads_strip_accents(tmp_path, config, ids):
    tok = BertTokenizer.from_pretrained(_vocab_dir(tmp_path, config))
    assert tok.convert_tokens_to_ids(tok.tokenize("Café")) == ids


def test_an_explicit_argument_wins_over_the_file(tmp_path):
    d = _vocab_dir(tmp_path, {"do_lower_case": True, "strip_accents": False})
    assert BertTokenizer.from_pretrained(d, strip_accents=True).tokenize("Café") == ["cafe"]
