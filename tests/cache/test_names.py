"""Model names through an organisation's mirror: from_pretrained, the tokenizer and torch.hub.

A loopback HTTP server plays the mirror (BERTCONVERT_MIRROR) and serves a tiny model archive
and vocabulary built in the test, in both the 0.6.2 layout (bert_config.json +
pytorch_model.bin, flat) and the save_pretrained layout (config.json + model.safetensors in a
single subfolder).
"""
import io
import json
import os
import tarfile

import pytest
import torch

from bertconvert.errors import UnknownModelError, WeightsError
from bertconvert.cache.names import (PRETRAINED_MODEL_ARCHIVE_MAP, PRETRAINED_VOCAB_ARCHIVE_MAP,
                                    model_archive_url, resolve_model_dir, resolve_vocab_file,
                                    vocab_url)

pytestmark = pytest.mark.usefixtures("cache_env")

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "hello", "world", "the", "##s", ",", "!"]
SEED_NAMES = ["bert-base-uncased", "bert-large-uncased", "bert-base-cased", "bert-large-cased",
              "bert-base-multilingual-uncased", "bert-base-multilingual-cased", "bert-base-chinese"]


def _tiny_model():
    from bertconvert import BertConfig, BertModel

    torch.manual_seed(0)
    config = BertConfig(len(VOCAB), hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=24, max_position_embeddings=32)
    return BertModel(config).eval()


def _tar(files):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _legacy_archive(model):
    """0.6.2's layout: bert_config.json + pytorch_model.bin at the top of the archive."""
    cfg = {k: getattr(model.config, k) for k in ("vocab_size", "hidden_size", "num_hidden_layers",
                                                  "num_attention_heads", "intermediate_size",
                                                  "max_position_embeddings", "type_vocab_size")}
    weights = io.BytesIO()
    torch.save(model.state_dict(), weights)
    return _tar({"bert_config.json": json.dumps(cfg).encode(), "pytorch_model.bin": weights.getvalue()})


def _saved_archive(model, tmp_path):
    """save_pretrained's layout, inside one top-level folder."""
    out = tmp_path / "saved"
    model.save_pretrained(out)
    return _tar({f"bert-tiny/{n}": (out / n).read_bytes() for n in os.listdir(out)})


@pytest.fixture
def mirror(http_server, monkeypatch):
    monkeypatch.setenv("BERTCONVERT_MIRROR", http_server.url("/mirror/bert"))
    http_server.add("/mirror/bert/bert-base-uncased-vocab.txt", ("\n".join(VOCAB) + "\n").encode())
    return http_server


def test_seed_names_map_to_062_urls():
    assert list(PRETRAINED_MODEL_ARCHIVE_MAP) == SEED_NAMES == list(PRETRAINED_VOCAB_ARCHIVE_MAP)
    base = "https://s3.amazonaws.com/models.huggingface.co/bert/"
    assert PRETRAINED_MODEL_ARCHIVE_MAP["bert-base-chinese"] == base + "bert-base-chinese.tar.gz"
    assert PRETRAINED_VOCAB_ARCHIVE_MAP["bert-large-cased"] == base + "bert-large-cased-vocab.txt"


def test_mirror_overrides_the_base(monkeypatch):
    monkeypatch.setenv("BERTCONVERT_MIRROR", "s3://org-models/bert/")
    assert model_archive_url("bert-base-cased") == "s3://org-models/bert/bert-base-cased.tar.gz"
    assert vocab_url("bert-base-cased") == "s3://org-models/bert/bert-base-cased-vocab.txt"
    with pytest.raises(UnknownModelError):
        model_archive_url("bert-huge")


def test_unknown_name_is_a_named_error(tmp_path):
    with pytest.raises(UnknownModelError, match="bert-base-uncased"):
        resolve_model_dir("bert-tiny-does-not-exist")
    with pytest.raises(UnknownModelError):
        resolve_vocab_file("bert-tiny-does-not-exist")


def test_archive_without_a_model_is_a_weights_error(mirror):
    mirror.add("/mirror/bert/bert-base-uncased.tar.gz", _tar({"README": b"nothing here"}))
    with pytest.raises(WeightsError, match="README"):
        resolve_model_dir("bert-base-uncased")


def _sharded_archive(model):
    """transformers' sharded layout: model.safetensors.index.json naming two shard files."""
    from safetensors.torch import save

    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    keys = sorted(state)
    shards = {"model-00001-of-00002.safetensors": keys[:len(keys) // 2],
              "model-00002-of-00002.safetensors": keys[len(keys) // 2:]}
    files = {f"bert-tiny/{name}": save({k: state[k] for k in ks}) for name, ks in shards.items()}
    index = {"metadata": {}, "weight_map": {k: name for name, ks in shards.items() for k in ks}}
    files["bert-tiny/model.safetensors.index.json"] = json.dumps(index).encode()
    files["bert-tiny/config.json"] = json.dumps(model.config.to_dict()).encode()
    return _tar(files)


def test_pretrained_and_serialization_agree_on_weight_file_names():
    from bertconvert.cache import names as pretrained
    from bertconvert.models import weightfiles as serialization

    assert set(pretrained.WEIGHTS_NAMES) == set(serialization.WEIGHTS_NAMES)
    assert set(pretrained.CONFIG_NAMES) == set(serialization.CONFIG_NAMES)


@pytest.mark.parametrize("layout", ["legacy-flat", "saved-subfolder", "sharded"])
def test_bert_model_from_pretrained_through_the_mirror(mirror, tmp_path, layout):
    from bertconvert import BertModel

    model = _tiny_model()
    archive = {"legacy-flat": lambda: _legacy_archive(model),
               "saved-subfolder": lambda: _saved_archive(model, tmp_path),
               "sharded": lambda: _sharded_archive(model)}[layout]()
    mirror.add("/mirror/bert/bert-base-uncased.tar.gz", archive)
    loaded = BertModel.from_pretrained("bert-base-uncased")
    ids = torch.tensor([[2, 5, 6, 3]])
    with torch.no_grad():
        torch.testing.assert_close(loaded(ids)[0], model(ids)[0])
    mirror.reset_log()
    BertModel.from_pretrained("bert-base-uncased")  # a hit: one HEAD, no GET, no re-extraction
    assert [r.method for r in mirror.requests] == ["HEAD"]


def test_tokenizer_from_pretrained_through_the_mirror(mirror):
    from bertconvert.tokenizer.wordpiece import BertTokenizer

    tok = BertTokenizer.from_pretrained("bert-base-uncased")
    assert tok.tokenize("Hello worlds!") == ["hello", "world", "##s", "!"]


@pytest.mark.slow
def test_torch_hub_load_through_the_mirror(mirror):
    mirror.add("/mirror/bert/bert-base-uncased.tar.gz", _legacy_archive(_tiny_model()))
    model = torch.hub.load(REPO, "bertModel", "bert-base-uncased", source="local")
    tok = torch.hub.load(REPO, "bertTokenizer", "bert-base-uncased", source="local")
    ids = torch.tensor([tok.convert_tokens_to_ids(["[CLS]", "hello", "[SEP]"])])
    with torch.no_grad():
        assert model(ids)[1].shape == (1, 16)  # pooled output


def test_offline_after_first_fetch(mirror, monkeypatch):
    mirror.add("/mirror/bert/bert-base-uncased.tar.gz", _legacy_archive(_tiny_model()))
    first = resolve_model_dir("bert-base-uncased")
    vocab = resolve_vocab_file("bert-base-uncased")
    mirror.reset_log()
    monkeypatch.setenv("BERTCONVERT_OFFLINE", "1")
    assert resolve_model_dir("bert-base-uncased") == first
    assert resolve_vocab_file("bert-base-uncased") == vocab
    assert mirror.count() == 0
