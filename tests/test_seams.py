"""Failure paths where modules meet: odd inputs to from_pretrained, the tokenizer, the cache,
verify and the torch.hub entry points each give a named error that says what to do, and
leave nothing behind. None of these tests needs TensorFlow or the network."""
import argparse
import json
import os
import subprocess
import sys

import pytest
import torch
from safetensors.torch import save_file

from bertconvert import BertConfig, BertModel, BertTokenizer, cached_path
from bertconvert.commands._common import non_negative_float, positive_int
from bertconvert.errors import (BertConvertError, UnsupportedURLError, VerificationError,
                                VocabError, WeightsError)
from bertconvert.verify.report import ParityReport, StageResult

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIXTURE = os.path.join(ROOT, "fixtures", "checkpoints", "base")


@pytest.fixture
def config():
    return BertConfig(40, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                      intermediate_size=24, max_position_embeddings=32)


def fixture_config(**changes):
    """The fixtures' bert_config.json with some fields changed."""
    with open(os.path.join(FIXTURE, "bert_config.json"), encoding="utf-8") as f:
        data = json.load(f)
    data.update(changes)
    return BertConfig.from_dict(data)


# --- from_pretrained on files that are not what they claim -----------------------------
def test_safetensors_with_no_bert_key_is_refused_not_loaded_random(tmp_path, config):
    config.to_json_file(tmp_path / "config.json")
    save_file({"foo.weight": torch.zeros(3), "lm_head.bias": torch.ones(2)},
              str(tmp_path / "model.safetensors"))
    with pytest.raises(WeightsError, match="none of the 2 tensor.*foo.weight, lm_head.bias"):
        BertModel.from_pretrained(tmp_path)
    with pytest.raises(WeightsError, match="none of the 0 tensor"):
        BertModel.from_pretrained(None, config=config, state_dict={})


def test_dataparallel_prefix_is_named_in_the_error(config):
    state = {f"module.{k}": v for k, v in BertModel(config).state_dict().items()}
    with pytest.raises(WeightsError, match="strip the 'module.' prefix"):
        BertModel.from_pretrained(None, config=config, state_dict=state)


def test_a_partial_state_dict_still_loads_with_a_warning(config):
    # The refusal above is for "nothing fits" only; one missing layer stays a warning.
    state = {k: v for k, v in BertModel(config).state_dict().items() if ".layer.1." not in k}
    model, info = BertModel.from_pretrained(None, config=config, state_dict=state,
                                            output_loading_info=True)
    assert info["missing_keys"] and all(".layer.1." in k for k in info["missing_keys"])


def test_bin_holding_a_whole_pickled_model_names_the_class(tmp_path, config):
    config.to_json_file(tmp_path / "config.json")
    torch.save(BertModel(config), tmp_path / "pytorch_model.bin")
    with pytest.raises(WeightsError) as err:
        BertModel.from_pretrained(tmp_path)
    message = str(err.value)
    assert "pickled bertconvert.models.trunk.BertModel object" in message
    assert "torch.save(model.state_dict())" in message and "\x1b[" not in message


def test_config_with_another_hidden_size_says_so_first(tmp_path, config):
    BertModel(config).save_pretrained(tmp_path)
    data = json.loads((tmp_path / "config.json").read_text())
    data["hidden_size"] = 32
    (tmp_path / "config.json").write_text(json.dumps(data))
    with pytest.raises(WeightsError) as err:
        BertModel.from_pretrained(tmp_path)
    before_the_list = str(err.value).split("):")[0]
    assert "hidden_size in the config is 32 but the weights' tensors have 16" in before_the_list


# --- tokenizer, cache, hub ---------------------------------------------------------------
def test_encode_takes_text_or_texts_by_keyword():
    tok = BertTokenizer.from_pretrained(FIXTURE)
    assert tok.encode(text_or_texts="the cat") == tok.encode("the cat")
    assert len(tok.encode(text_or_texts=["a", "b c"], padding=True)["input_ids"]) == 2


@pytest.mark.parametrize("url", ["http:///model.bin", "https://:8080/x", "http://exa mple.com/x",
                                 "http://host:port/x", "http://[::1/x", "s3:///key-only"])
def test_urls_without_a_usable_host_are_named_errors_and_touch_nothing(tmp_path, url):
    cache = tmp_path / "cache"
    with pytest.raises(UnsupportedURLError, match="expected"):
        cached_path(url, cache_dir=cache)
    assert not cache.exists()


def _hub_load(entry, *args, **kwargs):
    return torch.hub.load(ROOT, entry, *args, source="local", **kwargs)


def test_hub_entry_points_on_bad_paths(tmp_path, config):
    with pytest.raises(BertConvertError, match="not a known model name"):
        _hub_load("bertModel", str(tmp_path / "missing"))
    config.to_json_file(tmp_path / "config.json")
    with pytest.raises(WeightsError, match="no weights file"):
        _hub_load("bertForSequenceClassification", str(tmp_path), num_labels=3)
    with pytest.raises(VocabError, match="has no vocab.txt"):
        _hub_load("bertTokenizer", str(tmp_path), do_basic_tokenize=False)
    with pytest.raises(VocabError, match="no vocabulary at"):
        _hub_load("bertTokenizer", str(tmp_path / "missing"))


def test_hub_tokenizer_takes_the_seed_arguments():
    # The pytorch-pretrained-BERT hub card's call, on a local directory instead of a name.
    tok = _hub_load("bertTokenizer", FIXTURE, do_basic_tokenize=False, do_lower_case=False,
                    max_len=16, never_split=("[CLS]", "[SEP]"))
    assert tok.do_basic_tokenize is False and tok.do_lower_case is False and tok.max_len == 16
    text = "The cat, [CLS] sat."
    assert tok.tokenize(text) == tok.wordpiece_tokenizer.tokenize(text)
    assert tok.tokenize(text) != BertTokenizer.from_pretrained(FIXTURE).tokenize(text)


# --- verify: a model directory that belongs to another checkpoint -----------------------
@pytest.mark.parametrize("changes, field", [({"hidden_size": 64}, "hidden_size 64"),
                                            ({"num_hidden_layers": 3}, "num_hidden_layers 3")])
def test_verify_refuses_a_model_dir_of_another_network(tmp_path, changes, field):
    from bertconvert.cli import main
    from bertconvert.verify import verify

    BertModel(fixture_config(**changes)).save_pretrained(tmp_path / "model")
    with pytest.raises(VerificationError, match=f"{field} \\(checkpoint: "):
        verify(FIXTURE, tmp_path / "model", progress=False)
    report = tmp_path / "report.json"
    assert main(["verify", FIXTURE, str(tmp_path / "model"), "--json", str(report), "-q"]) == 2
    data = json.loads(report.read_text())
    assert data["error_type"] == "VerificationError" and "was not converted from" in data["error"]


def test_parity_summary_counts_checks_plainly():
    def stage(name, passed, subs=()):
        return StageResult(name, (1,), 0.0 if passed else 1.0, 0.0, passed, worst_index=(0,),
                           substages=[StageResult(s, (1,), 1.0, 1.0, False) for s in subs])
    report = ParityReport("ckpt", "dir", "base", None, "cpu", "float32", 1e-4, 1e-4, "ref",
                          [stage("embeddings", False), stage("layer 0", False, ["layer 0 query"]),
                           stage("pooled", True)])
    assert "3 of 4 checks (3 stages + 1 layer sub-stages) fail" in report.summary()


# --- shared CLI argument types -----------------------------------------------------------
def test_cli_argument_types():
    assert positive_int("3") == 3 and non_negative_float("0") == 0.0
    for parse, bad in [(positive_int, "0"), (positive_int, "x"), (non_negative_float, "nan"),
                       (non_negative_float, "-1e-3"), (non_negative_float, "tiny")]:
        with pytest.raises(argparse.ArgumentTypeError, match="expected"):
            parse(bad)


def test_cache_fetch_of_a_mistyped_name_lists_the_known_names(tmp_path, capsys):
    from bertconvert.cli import main

    assert main(["cache", "fetch", "bert-base-uncasd", "--cache-dir", str(tmp_path), "-q"]) == 2
    err = capsys.readouterr().err
    assert "known model name (bert-base-uncased" in err and "not found" not in err
    assert os.listdir(tmp_path) == []


def test_missing_model_directory_is_called_missing(tmp_path):
    from bertconvert.errors import ConfigError
    from bertconvert.models.weightfiles import find_config_file, find_weights_file

    with pytest.raises(ConfigError, match="found nothing: the directory does not exist"):
        find_config_file(tmp_path / "absent")
    (tmp_path / "file").write_text("x")
    with pytest.raises(WeightsError, match="found a file, not a directory"):
        find_weights_file(tmp_path / "file")


def test_package_level_verify_is_callable_and_still_the_module(tmp_path):
    import bertconvert
    from bertconvert.verify import verify

    assert bertconvert.verify.verify is verify and bertconvert.verify.ParityReport is ParityReport
    # after a bare `import bertconvert` too, in a fresh interpreter
    fresh = subprocess.run([sys.executable, "-c", "import bertconvert; "
                            "print(callable(bertconvert.verify), bertconvert.verify.__name__)"],
                           capture_output=True, text=True, check=True)
    assert fresh.stdout.split() == ["True", "bertconvert.verify"]
    BertModel(fixture_config(hidden_size=64)).save_pretrained(tmp_path)
    with pytest.raises(VerificationError, match="hidden_size 64"):  # reached verify() itself
        bertconvert.verify(FIXTURE, tmp_path, progress=False)


def test_first_argument_by_its_issue_and_062_keywords(tmp_path, config):
    BertModel(config).save_pretrained(tmp_path)
    assert BertModel.from_pretrained(path=tmp_path).config.hidden_size == 16
    loaded = BertModel.from_pretrained(pretrained_model_name_or_path=tmp_path)
    assert loaded.config.hidden_size == 16
    with pytest.raises(BertConvertError, match="no config"):
        BertModel.from_pretrained()
    tok = BertTokenizer.from_pretrained(pretrained_model_name_or_path=FIXTURE)
    assert tok.vocab == BertTokenizer.from_pretrained(name_or_path=FIXTURE).vocab
    with pytest.raises(VocabError, match="no vocabulary given"):
        BertTokenizer.from_pretrained()
