"""hubconf.py through the real torch.hub loader (source="local"), on model dirs in tmp_path."""
import importlib.util
import os

import pytest
import torch
from .conftest import assert_fp32_close

import bertconvert
from bertconvert import HEADS, BertConfig
from bertconvert.models.heads import build_model

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

ENTRY_POINTS = {
    "bertModel": "BertModel",
    "bertForNextSentencePrediction": "BertForNextSentencePrediction",
    "bertForPreTraining": "BertForPreTraining",
    "bertForMaskedLM": "BertForMaskedLM",
    "bertForSequenceClassification": "BertForSequenceClassification",
    "bertForMultipleChoice": "BertForMultipleChoice",
    "bertForTokenClassification": "BertForTokenClassification",
    "bertForQuestionAnswering": "BertForQuestionAnswering",
}

VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "hello", "world", "un", "##aff",
         "##able", ",", "!"]


def tensors(out):
    """Every tensor in a (possibly nested) model output, in order."""
    if torch.is_tensor(out):
        return [out]
    return [t for item in out for t in tensors(item)]


@pytest.fixture
def config():
    return BertConfig(len(VOCAB), hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                      intermediate_size=24, max_position_embeddings=32)


def _hubconf():
    spec = importlib.util.spec_from_file_location("hubconf_under_test", os.path.join(REPO, "hubconf.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_entry_points_have_docstrings_and_dependencies():
    # what torch.hub.list / torch.hub.help report (they only accept GitHub repos, not paths)
    hub = _hubconf()
    names = {n for n in dir(hub) if callable(getattr(hub, n)) and not n.startswith("_")}
    assert names == set(ENTRY_POINTS) | {"bertTokenizer"}
    for name in names:
        doc = getattr(hub, name).__doc__
        assert doc and len(doc.strip()) > 80 and "{args}" not in doc
    assert "num_labels" in hub.bertForSequenceClassification.__doc__
    assert "do_basic_tokenize" in hub.bertTokenizer.__doc__
    assert "torch" in hub.dependencies
    assert all(importlib.util.find_spec(dep) for dep in hub.dependencies)


@pytest.mark.parametrize("entry", list(ENTRY_POINTS))
def test_every_model_entry_point_loads_a_saved_directory(tmp_path, config, entry):
    cls = getattr(bertconvert, ENTRY_POINTS[entry])
    torch.manual_seed(0)
    saved = build_model(cls.head_name, config, num_labels=3).eval()
    saved.save_pretrained(tmp_path)
    model = torch.hub.load(REPO, entry, str(tmp_path), source="local")
    assert type(model) is cls and not model.training
    ids = torch.tensor([[2, 5, 6, 3, 0], [2, 7, 8, 9, 3]])
    if cls.head_name == "multiple-choice":
        ids = ids[None]
    # What loading guarantees: the same weights, bit for bit. The outputs then agree within
    # fp32 rounding, not bitwise: the reloaded tensors sit at other addresses, and the CPU
    # kernels choose their path (and summation order) by alignment.
    original, loaded = saved.state_dict(), model.state_dict()
    assert original.keys() == loaded.keys()
    assert all(torch.equal(original[k], loaded[k]) for k in original)
    with torch.no_grad():
        a, b = saved(ids), model(ids)
    assert len(tensors(a)) == len(tensors(b)) > 0
    for x, y in zip(tensors(a), tensors(b)):
        assert_fp32_close(y, x)


def test_kwargs_reach_from_pretrained(tmp_path, config):
    build_model("base", config).save_pretrained(tmp_path)
    model = torch.hub.load(REPO, "bertForTokenClassification", str(tmp_path), num_labels=7,
                           source="local")
    assert model.classifier.out_features == 7
    model = torch.hub.load(REPO, "bertModel", str(tmp_path), torch_dtype="auto", source="local")
    assert HEADS["base"] is type(model)


def test_bert_tokenizer_entry_point(tmp_path):
    (tmp_path / "vocab.txt").write_text("\n".join(VOCAB) + "\n", encoding="utf-8")
    tokenizer = torch.hub.load(REPO, "bertTokenizer", str(tmp_path), do_lower_case=True,
                               source="local")
    assert tokenizer.tokenize("Hello, unaffable World!") == ["hello", ",", "un", "##aff", "##able", "world", "!"]
    raw = torch.hub.load(REPO, "bertTokenizer", str(tmp_path / "vocab.txt"),
                         do_basic_tokenize=False, source="local")
    assert raw.tokenize("hello unaffable") == ["hello", "un", "##aff", "##able"]
    # without the basic tokenizer punctuation stays glued to its word ("hello," is unknown)
    assert raw.tokenize("hello, world!") == ["[UNK]", "[UNK]"]
