"""Weights files and model directories: save_state_dict / load_state_dict, from_pretrained,
save_pretrained, old (0.6.2-era) state dicts, and every kind of bad input."""
import json
import logging
import os
import pickle

import pytest
import torch
from safetensors import safe_open

from bertconvert import (BertConfig, BertForMaskedLM, BertForPreTraining,
                         BertForQuestionAnswering, BertForSequenceClassification,
                         BertForTokenClassification, BertModel, BertPreTrainedModel, HEADS)
from bertconvert.errors import BertConvertError, ConfigError, OutputExistsError, WeightsError
from bertconvert.models.heads import build_model
from bertconvert.models.weightfiles import (find_config_file, find_weights_file, load_state_dict,
                                       save_state_dict)

LOADER_LOG = "bertconvert.models.loading"


def outputs(model, batch):
    with torch.no_grad():
        out = model(batch["input_ids"], batch["token_type_ids"], batch["attention_mask"])
    if isinstance(out, tuple) and isinstance(out[0], list):  # BertModel
        out = tuple(out[0]) + (out[1],)
    return out if isinstance(out, tuple) else (out,)


def assert_same_outputs(a, b, batch):
    for x, y in zip(outputs(a, batch), outputs(b, batch)):
        assert torch.equal(x, y)


def no_temp_files(directory):
    return [n for n in os.listdir(directory) if ".tmp-" in n] == []


# --- serialization.py ----------------------------------------------------------------------
def test_save_both_formats_and_load_back(tmp_path, tiny_config):
    model = BertForPreTraining(tiny_config)
    state = model.state_dict()
    paths = save_state_dict(state, tmp_path, format="both")
    assert [os.path.basename(p) for p in paths] == ["model.safetensors", "pytorch_model.bin"]
    with safe_open(paths[0], "pt") as f:
        keys = set(f.keys())
        assert f.metadata() == {"format": "pt"}
    # the tied decoder is an alias of the word embeddings: dropped from safetensors only
    assert keys == set(state) - {"cls.predictions.decoder.weight"}
    assert set(load_state_dict(paths[1])) == set(state)
    for path in paths:
        loaded = load_state_dict(path)
        assert all(torch.equal(loaded[k], state[k]) for k in loaded)
    assert no_temp_files(tmp_path)


def test_untied_copies_and_views_are_saved_safely(tmp_path):
    base = torch.arange(12.0).reshape(3, 4)
    state = {"a": base, "view": base[1], "bert.embeddings.word_embeddings.weight": base.clone(),
             "cls.predictions.decoder.weight": base.clone(), "other": torch.ones(2)}
    (path,) = save_state_dict(state, tmp_path)
    loaded = load_state_dict(path)
    assert set(loaded) == {"a", "view", "bert.embeddings.word_embeddings.weight", "other"}
    assert torch.equal(loaded["view"], base[1])


def test_format_is_sniffed_not_taken_from_the_name(tmp_path, tiny_config):
    state = BertModel(tiny_config).state_dict()
    torch.save(state, tmp_path / "weights.safetensors")  # misnamed zip pickle
    legacy = tmp_path / "old.bin"
    torch.save(state, legacy, _use_new_zipfile_serialization=False)  # torch < 1.6 format
    for path in (tmp_path / "weights.safetensors", legacy):
        assert set(load_state_dict(path)) == set(state)


@pytest.mark.parametrize("content", [b"", b"hello world, not weights", b"{\"a\": 1}",
                                     b"\x10\x00\x00\x00\x00\x00\x00\x00{bad json here!!"])
def test_garbage_is_a_weights_error(tmp_path, content):
    path = tmp_path / "pytorch_model.bin"
    path.write_bytes(content)
    with pytest.raises(WeightsError, match="pytorch_model.bin"):
        load_state_dict(path)


def test_pickles_that_are_not_state_dicts(tmp_path, tiny_config):
    whole_model = tmp_path / "model.pt"
    torch.save(BertModel(tiny_config), whole_model)  # needs code to unpickle: refused
    with pytest.raises(WeightsError, match="weights_only=True"):
        load_state_dict(whole_model)
    a_list = tmp_path / "list.pt"
    torch.save([torch.ones(2)], a_list)
    with pytest.raises(WeightsError, match="not a state dict"):
        load_state_dict(a_list)
    nested = tmp_path / "checkpoint.pt"
    torch.save({"model": {"w": torch.ones(2)}, "step": 3}, nested)
    with pytest.raises(WeightsError, match="nested under 'model'"):
        load_state_dict(nested)
    plain_pickle = tmp_path / "evil.bin"
    plain_pickle.write_bytes(pickle.dumps({"w": [1, 2]}, protocol=2))
    with pytest.raises(WeightsError):
        load_state_dict(plain_pickle)


def test_find_files_prefers_transformers_names(tmp_path):
    with pytest.raises(WeightsError, match="model.safetensors"):
        find_weights_file(tmp_path)
    with pytest.raises(ConfigError, match="bert_config.json"):
        find_config_file(tmp_path)
    assert find_weights_file(tmp_path, required=False) is None
    (tmp_path / "bert_config.json").write_text("{}")
    (tmp_path / "pytorch_model.bin").write_bytes(b"x")
    assert find_config_file(tmp_path).endswith("bert_config.json")
    assert find_weights_file(tmp_path).endswith("pytorch_model.bin")
    (tmp_path / "config.json").write_text("{}")
    (tmp_path / "model.safetensors").write_bytes(b"x")
    assert find_config_file(tmp_path).endswith(os.sep + "config.json")
    assert find_weights_file(tmp_path).endswith("model.safetensors")


def test_sharded_index_loads_all_shards(tmp_path):
    from safetensors.torch import save_file

    save_file({"a": torch.ones(2)}, str(tmp_path / "model-00001-of-00002.safetensors"))
    save_file({"b": torch.zeros(3)}, str(tmp_path / "model-00002-of-00002.safetensors"))
    index = {"metadata": {}, "weight_map": {"a": "model-00001-of-00002.safetensors",
                                            "b": "model-00002-of-00002.safetensors"}}
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps(index))
    state = load_state_dict(tmp_path)
    assert set(state) == {"a", "b"}
    index["weight_map"]["c"] = "../elsewhere.safetensors"
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps(index))
    with pytest.raises(WeightsError, match="elsewhere"):
        load_state_dict(tmp_path)


# --- save_pretrained / from_pretrained -------------------------------------------------------
@pytest.mark.parametrize("head", list(HEADS))
def test_round_trip_every_head(tmp_path, tiny_config, tiny_batch, head, caplog):
    torch.manual_seed(3)
    model = build_model(head, tiny_config, num_labels=4).eval()
    written = model.save_pretrained(tmp_path)
    assert sorted(os.path.basename(p) for p in written) == ["config.json", "model.safetensors"]
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["architectures"] == [type(model).__name__] and config["model_type"] == "bert"
    if head in ("sequence-classification", "token-classification"):
        assert config["num_labels"] == 4 and len(config["id2label"]) == 4
    caplog.set_level(logging.WARNING, logger=LOADER_LOG)
    loaded = type(model).from_pretrained(tmp_path)
    assert not loaded.training and caplog.records == []
    if head == "multiple-choice":
        batch = {k: v[:12].reshape(4, 3, -1) for k, v in tiny_batch.items()}
    else:
        batch = tiny_batch
    assert_same_outputs(model, loaded, batch)
    # the abstract base picks the class named in config.json
    assert type(BertPreTrainedModel.from_pretrained(tmp_path)) is type(model)
    assert no_temp_files(tmp_path)


def test_loaded_mlm_head_is_tied_and_trainable(tmp_path, tiny_config):
    BertForMaskedLM(tiny_config).save_pretrained(tmp_path)
    model = BertForMaskedLM.from_pretrained(tmp_path)
    assert model.cls.predictions.decoder.weight is model.bert.embeddings.word_embeddings.weight
    params = list(model.parameters())
    assert all(p.requires_grad and not p.is_meta and p.dtype == torch.float32 for p in params)


def _ppb_style_checkpoint(directory, model):
    """What pytorch-pretrained-bert 0.4-0.6 shipped: bert_config.json + an old-format
    pytorch_model.bin whose LayerNorm parameters are called gamma/beta."""
    os.makedirs(directory)
    state = {}
    for key, value in model.state_dict().items():
        key = key.replace("LayerNorm.weight", "LayerNorm.gamma").replace("LayerNorm.bias", "LayerNorm.beta")
        state[key] = value
    torch.save(state, os.path.join(directory, "pytorch_model.bin"),
               _use_new_zipfile_serialization=False)
    model.config.to_json_file(os.path.join(directory, "bert_config.json"), flavour="google")


def test_062_checkpoint_with_gamma_beta_loads(tmp_path, tiny_config, tiny_batch, caplog):
    torch.manual_seed(5)
    original = BertForPreTraining(tiny_config).eval()
    _ppb_style_checkpoint(tmp_path / "ppb", original)
    caplog.set_level(logging.WARNING, logger=LOADER_LOG)
    loaded = BertForPreTraining.from_pretrained(tmp_path / "ppb")
    assert caplog.records == []
    assert_same_outputs(original, loaded, tiny_batch)
    # ... and its trunk alone into BertModel: the cls.* keys are reported as unused
    bare = BertModel.from_pretrained(tmp_path / "ppb")
    assert_same_outputs(original.bert, bare, tiny_batch)
    assert "cls.predictions.bias" in caplog.text and "not used by BertModel" in caplog.text


def test_bare_trunk_dict_loads_into_a_head(tmp_path, tiny_config, tiny_batch, caplog):
    torch.manual_seed(6)
    trunk = BertModel(tiny_config).eval()
    trunk.save_pretrained(tmp_path)
    caplog.set_level(logging.WARNING, logger=LOADER_LOG)
    model = BertForQuestionAnswering.from_pretrained(tmp_path)
    assert_same_outputs(trunk, model.bert, tiny_batch)
    warning = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warning) == 1 and warning[0].getMessage().endswith("qa_outputs.bias, qa_outputs.weight")
    assert not model.qa_outputs.bias.any() and 0.01 < float(model.qa_outputs.weight.detach().std()) < 0.03


def test_weights_file_state_dict_and_config_arguments(tmp_path, tiny_config, tiny_batch):
    torch.manual_seed(8)
    model = BertModel(tiny_config).eval()
    (weights,) = save_state_dict(model.state_dict(), tmp_path, format="pytorch")
    tiny_config.to_json_file(tmp_path / "bert_config.json", flavour="google")
    assert_same_outputs(model, BertModel.from_pretrained(weights), tiny_batch)
    assert_same_outputs(model, BertModel.from_pretrained(tmp_path / "bert_config.json"), tiny_batch)
    state = model.state_dict()
    given = BertModel.from_pretrained(tmp_path, state_dict=state)
    assert_same_outputs(model, given, tiny_batch)
    with torch.no_grad():  # the caller's tensors are copied, not shared
        given.pooler.dense.bias.add_(1.0)
    assert not state["pooler.dense.bias"].any()
    from_config = BertModel.from_pretrained(None, config=tiny_config, state_dict=state)
    assert_same_outputs(model, from_config, tiny_batch)
    with pytest.raises(WeightsError, match="not a state dict"):
        BertModel.from_pretrained(None, config=tiny_config, state_dict=[state])


def test_num_labels_from_kwargs_config_or_weights(tmp_path, tiny_config):
    BertForSequenceClassification(tiny_config, 3).save_pretrained(tmp_path / "sc")
    assert BertForSequenceClassification.from_pretrained(tmp_path / "sc").num_labels == 3
    # without labels in the config, the classifier's shape decides
    config_path = tmp_path / "sc" / "config.json"
    data = json.loads(config_path.read_text())
    for key in ("num_labels", "id2label", "label2id"):
        data.pop(key)
    config_path.write_text(json.dumps(data))
    assert BertForSequenceClassification.from_pretrained(tmp_path / "sc").num_labels == 3
    with pytest.raises(WeightsError, match="pass num_labels=3"):
        BertForSequenceClassification.from_pretrained(tmp_path / "sc", num_labels=5)
    # a new head on a trunk: kwargs decide, positional (0.6.2 style) too
    BertModel(tiny_config).save_pretrained(tmp_path / "base")
    assert BertForTokenClassification.from_pretrained(tmp_path / "base", num_labels=7).num_labels == 7
    model = BertForTokenClassification.from_pretrained(tmp_path / "base", 6)
    assert model.num_labels == 6 and model.config.num_labels == 6


def test_missing_keys_are_initialised_and_warned_with_full_list(tmp_path, tiny_config, caplog):
    model = BertForPreTraining(tiny_config)
    state = {k: v for k, v in model.state_dict().items()
             if not k.startswith(("bert.encoder.layer.4.", "cls.predictions.transform"))}
    state["unused.thing"] = torch.ones(3)
    caplog.set_level(logging.WARNING, logger=LOADER_LOG)
    loaded, info = BertForPreTraining.from_pretrained(
        None, config=tiny_config, state_dict=state, output_loading_info=True)
    expected_missing = sorted(k for k in model.state_dict() if k not in state
                              and k != "cls.predictions.decoder.weight")
    assert info["missing_keys"] == expected_missing and info["unexpected_keys"] == ["unused.thing"]
    assert ", ".join(expected_missing) in caplog.text and "unused.thing" in caplog.text
    assert "decoder.weight" not in caplog.text  # the tied alias is never "missing"
    layer = loaded.bert.encoder.layer[4]
    assert bool((layer.output.LayerNorm.weight == 1).all()) and not layer.output.dense.bias.any()
    assert 0.01 < float(layer.intermediate.dense.weight.detach().std()) < 0.03
    assert all(torch.isfinite(p).all() and not p.is_meta for p in loaded.parameters())
    with pytest.raises(WeightsError, match="bert.encoder.layer.4"):
        BertForPreTraining.from_pretrained(None, config=tiny_config, state_dict=state, strict=True)


def test_transformers_style_duplicates_are_accepted(tiny_config, tiny_batch, caplog):
    model = BertForMaskedLM(tiny_config).eval()
    state = {k: v for k, v in model.state_dict().items() if k != "cls.predictions.decoder.weight"}
    state["cls.predictions.decoder.bias"] = state["cls.predictions.bias"]
    state["bert.embeddings.position_ids"] = torch.arange(64)[None]
    caplog.set_level(logging.WARNING, logger=LOADER_LOG)
    loaded = BertForMaskedLM.from_pretrained(None, config=tiny_config, state_dict=state)
    assert caplog.records == []
    assert_same_outputs(model, loaded, tiny_batch)


def test_dtype_option(tmp_path, tiny_config, tiny_batch):
    model = BertModel(tiny_config).half()
    model.save_pretrained(tmp_path)
    assert json.loads((tmp_path / "config.json").read_text())["dtype"] == "float16"
    assert BertModel.from_pretrained(tmp_path).embeddings.LayerNorm.weight.dtype == torch.float32
    kept = BertModel.from_pretrained(tmp_path, torch_dtype="auto")
    assert {p.dtype for p in kept.parameters()} == {torch.float16}
    assert BertModel.from_pretrained(tmp_path, dtype=torch.bfloat16).pooler.dense.weight.dtype == torch.bfloat16


def test_bad_directories_and_configs(tmp_path, tiny_config):
    (tmp_path / "empty").mkdir()
    tiny_config.to_json_file(tmp_path / "empty" / "config.json")
    with pytest.raises(WeightsError, match="no weights file"):
        BertModel.from_pretrained(tmp_path / "empty")
    (tmp_path / "noconfig").mkdir()
    save_state_dict(BertModel(tiny_config).state_dict(), tmp_path / "noconfig")
    with pytest.raises(ConfigError, match="config.json or bert_config.json"):
        BertModel.from_pretrained(tmp_path / "noconfig")
    (tmp_path / "noconfig" / "config.json").write_text(json.dumps({"vocab_size": 99, "hidden_size": 32}))
    with pytest.raises(ConfigError, match="num_hidden_layers"):
        BertModel.from_pretrained(tmp_path / "noconfig")
    (tmp_path / "noconfig" / "config.json").write_text(json.dumps(dict(tiny_config.to_dict(), vocab_size=50)))
    with pytest.raises(WeightsError, match="vocab_size in the config is 50 but the weights' word_embeddings has 99 rows"):
        BertModel.from_pretrained(tmp_path / "noconfig")
    (tmp_path / "noconfig" / "model.safetensors").write_bytes(b"not a state dict")
    with pytest.raises(WeightsError, match="neither a safetensors file nor"):
        BertModel.from_pretrained(tmp_path / "noconfig")


def test_save_pretrained_refuses_a_file_and_overwrites_a_directory(tmp_path, tiny_config):
    (tmp_path / "file").write_text("x")
    with pytest.raises(OutputExistsError):
        BertModel(tiny_config).save_pretrained(tmp_path / "file")
    target = tmp_path / "model"
    target.mkdir()
    (target / "vocab.txt").write_text("[PAD]\n")
    BertModel(tiny_config).save_pretrained(target)
    written = BertModel(tiny_config).save_pretrained(target, format="both")
    assert sorted(os.listdir(target)) == ["config.json", "model.safetensors", "pytorch_model.bin", "vocab.txt"]
    assert len(written) == 3


@pytest.mark.parametrize("format", ["safetensors", "pytorch"])
def test_interrupted_save_leaves_old_files_intact(tmp_path, tiny_config, format):
    """A real write failure: RLIMIT_FSIZE makes the kernel refuse writes past 64 KiB (EFBIG), as
    a full disk would, in a process saving a new model over the old one (both formats)."""
    import subprocess
    import sys
    import textwrap

    model = BertModel(tiny_config)
    model.save_pretrained(tmp_path, format=format)
    name = "model.safetensors" if format == "safetensors" else "pytorch_model.bin"
    before = (tmp_path / name).read_bytes()
    assert len(before) > 64 << 10
    code = textwrap.dedent("""
        import json, resource, sys
        import torch
        from bertconvert import BertConfig, BertModel
        from bertconvert.errors import OutputWriteError
        config = BertConfig.from_dict(json.loads(sys.argv[2]))
        torch.manual_seed(1)
        model = BertModel(config)
        resource.setrlimit(resource.RLIMIT_FSIZE, (64 << 10, 64 << 10))
        try:
            model.save_pretrained(sys.argv[1], format=sys.argv[3])
        except OutputWriteError as e:
            print("OutputWriteError", sys.argv[1] in str(e))
        else:
            print("saved")
        """)
    proc = subprocess.run([sys.executable, "-c", code, str(tmp_path), json.dumps(tiny_config.to_dict()), format],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    # A named error (safetensors' own SafetensorError is neither an OSError nor ours).
    assert proc.stdout.strip() == "OutputWriteError True"
    assert (tmp_path / name).read_bytes() == before and no_temp_files(tmp_path)


def test_a_path_that_does_not_exist_is_a_named_error(tmp_path):
    with pytest.raises(BertConvertError):
        BertModel.from_pretrained(str(tmp_path / "no-such-model"))


def test_from_tf_converts_a_google_checkpoint_in_memory():
    fixture = os.path.join(os.path.dirname(__file__), os.pardir, os.pardir, "fixtures", "checkpoints",
                           "sequence-classification")
    from bertconvert.checkpoint import load_variable

    model = BertForSequenceClassification.from_pretrained(fixture, from_tf=True)
    assert type(model) is BertForSequenceClassification and not model.training
    assert model.num_labels == 3
    prefix = os.path.join(fixture, "bert_model.ckpt")
    expected = torch.from_numpy(load_variable(prefix, "output_weights"))  # [labels, hidden]
    assert torch.equal(model.classifier.weight.detach(), expected)
    kernel = torch.from_numpy(load_variable(prefix, "bert/encoder/layer_0/attention/self/query/kernel"))
    assert torch.equal(model.bert.encoder.layer[0].attention.self.query.weight.detach(), kernel.T)


def test_from_tf_goes_through_convert_s_model_free_state_dict(monkeypatch):
    """from_tf=True takes its tensors from convert.stream.state_dict_from_checkpoint (no model
    built there); the base class picks the checkpoint's head; output_loading_info gives the
    ConversionReport."""
    fixture = os.path.join(os.path.dirname(__file__), os.pardir, os.pardir, "fixtures", "checkpoints",
                           "sequence-classification")
    from bertconvert.convert import stream

    converted = stream.state_dict_from_checkpoint(fixture)
    assert converted.report.head == "sequence-classification" and converted.config.num_labels == 3
    assert all(isinstance(t, torch.Tensor) for t in converted.state_dict.values())
    calls = []
    real = stream.state_dict_from_checkpoint
    monkeypatch.setattr(stream, "state_dict_from_checkpoint",
                        lambda *a, **k: calls.append(k) or real(*a, **k))
    model, report = BertPreTrainedModel.from_pretrained(fixture, from_tf=True,
                                                        output_loading_info=True)
    assert calls and type(model) is BertForSequenceClassification and not model.training
    assert report.head == "sequence-classification" and report.num_labels == 3
    for key, value in converted.state_dict.items():
        assert torch.equal(model.state_dict()[key], value), key


def test_a_062_style_model_archive_loads_through_the_cache(tmp_path, tiny_config, tiny_batch):
    import tarfile

    torch.manual_seed(9)
    original = BertForPreTraining(tiny_config).eval()
    _ppb_style_checkpoint(tmp_path / "model", original)
    archive = tmp_path / "bert-tiny.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        for name in ("bert_config.json", "pytorch_model.bin"):
            tar.add(tmp_path / "model" / name, arcname=name)
    loaded = BertForPreTraining.from_pretrained(str(archive), cache_dir=str(tmp_path / "cache"))
    assert_same_outputs(original, loaded, tiny_batch)


def test_weight_files_are_published_by_the_shared_atomic_helper(tmp_path, tiny_config):
    """save_state_dict publishes through bertconvert.atomic: group-readable under the umask,
    no temp file left, and a failing writer leaves the old file and no temp behind."""
    from bertconvert.atomic import atomic_path

    old = os.umask(0o027)
    try:
        written = BertModel(tiny_config).save_pretrained(tmp_path, format="both")
    finally:
        os.umask(old)
    assert all(os.stat(p).st_mode & 0o777 == 0o640 for p in written) and no_temp_files(tmp_path)
    before = (tmp_path / "pytorch_model.bin").read_bytes()
    with pytest.raises(RuntimeError):
        with atomic_path(tmp_path / "pytorch_model.bin") as tmp:
            with open(tmp, "wb") as f:
                f.write(b"half")
            raise RuntimeError("writer failed")
    assert (tmp_path / "pytorch_model.bin").read_bytes() == before and no_temp_files(tmp_path)
