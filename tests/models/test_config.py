"""BertConfig: Google's bert_config.json and transformers' config.json, both ways."""
import json
import os

import pytest

from bertconvert import BertConfig
from bertconvert.models.config import GOOGLE_KEYS
from bertconvert.errors import ConfigError

GOOGLE = {  # uncased_L-12_H-768_A-12/bert_config.json as Google ships it
    "attention_probs_dropout_prob": 0.1, "hidden_act": "gelu", "hidden_dropout_prob": 0.1,
    "hidden_size": 768, "initializer_range": 0.02, "intermediate_size": 3072,
    "max_position_embeddings": 512, "num_attention_heads": 12, "num_hidden_layers": 12,
    "type_vocab_size": 2, "vocab_size": 30522,
}


def write(path, data):
    path.write_text(json.dumps(data) if not isinstance(data, str) else data, encoding="utf-8")
    return path


def test_reads_google_config_with_google_defaults(tmp_path):
    config = BertConfig.from_json_file(write(tmp_path / "bert_config.json", GOOGLE))
    assert config.vocab_size == 30522 and config.hidden_size == 768
    assert config.layer_norm_eps == 1e-12 and config.hidden_act == "gelu"
    assert config.num_labels is None
    assert BertConfig(str(tmp_path / "bert_config.json")) == config  # the 0.6.2 call form
    minimal = BertConfig.from_dict({k: GOOGLE[k] for k in ("vocab_size", "hidden_size",
                                    "num_hidden_layers", "num_attention_heads", "intermediate_size")})
    assert minimal.max_position_embeddings == 512 and minimal.type_vocab_size == 2


def test_transformers_config_round_trips_with_extra_keys(tmp_path):
    hf = dict(GOOGLE, model_type="bert", architectures=["BertForSequenceClassification"],
              layer_norm_eps=1e-7, id2label={"0": "neg", "1": "neu", "2": "pos"},
              label2id={"neg": 0, "neu": 1, "pos": 2}, pad_token_id=0, classifier_dropout=None,
              transformers_version="5.0.0", finetuning_task="sst-3", is_decoder=False)
    config = BertConfig.from_json_file(write(tmp_path / "config.json", hf))
    assert config.layer_norm_eps == 1e-7 and config.finetuning_task == "sst-3"
    assert config.num_labels == 3
    config.to_json_file(tmp_path / "out.json")
    again = json.loads((tmp_path / "out.json").read_text())
    for key, value in hf.items():
        assert again[key] == value, key
    assert BertConfig.from_json_file(tmp_path / "out.json") == config


def test_google_flavour_writes_only_googles_keys(tmp_path):
    config = BertConfig.from_dict(dict(GOOGLE, layer_norm_eps=1e-12, extra_key=1))
    config.to_json_file(tmp_path / "bert_config.json", flavour="google")
    data = json.loads((tmp_path / "bert_config.json").read_text())
    assert list(data) == list(GOOGLE_KEYS) and data == GOOGLE
    assert json.loads(config.to_json_string())["extra_key"] == 1
    with pytest.raises(ValueError):
        config.to_json_string("yaml")


def test_hf_dict_has_transformers_bookkeeping():
    config = BertConfig(99, hidden_size=32, num_hidden_layers=1, num_attention_heads=4,
                        intermediate_size=37, num_labels=4)
    data = config.to_hf_dict(architectures=["BertForTokenClassification"])
    assert data["model_type"] == "bert" and data["architectures"] == ["BertForTokenClassification"]
    assert data["num_labels"] == 4 and data["id2label"] == {str(i): f"LABEL_{i}" for i in range(4)}
    assert data["pad_token_id"] == 0


def test_transformers_reads_our_config_json(tmp_path):
    transformers = pytest.importorskip("transformers")
    config = BertConfig(99, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                        intermediate_size=37, num_labels=3, layer_norm_eps=1e-6)
    config.to_json_file(tmp_path / "config.json")
    theirs = transformers.BertConfig.from_json_file(str(tmp_path / "config.json"))
    assert (theirs.num_labels, theirs.layer_norm_eps, theirs.intermediate_size) == (3, 1e-6, 37)


def test_num_labels_setter_keeps_label_maps_consistent():
    config = BertConfig(99, hidden_size=32, num_hidden_layers=1, num_attention_heads=4,
                        intermediate_size=37, id2label={"0": "a", "1": "b"})
    assert config.num_labels == 2
    config.num_labels = 2
    assert config.id2label == {"0": "a", "1": "b"}  # same size: the names are kept
    config.num_labels = 5
    assert len(config.id2label) == 5 and config.label2id["LABEL_4"] == 4


@pytest.mark.parametrize("content, message", [
    ("{not json", "not valid JSON"),
    ("[1, 2]", "JSON object"),
    (json.dumps({"vocab_size": 99, "hidden_size": 32}), "num_hidden_layers, num_attention_heads, intermediate_size"),
    (json.dumps(dict(GOOGLE, vocab_size="30522")), "vocab_size must be a positive integer"),
    (json.dumps(dict(GOOGLE, num_hidden_layers=0)), "num_hidden_layers must be a positive integer"),
    (json.dumps(dict(GOOGLE, hidden_act="mish")), "unsupported hidden_act"),
    (json.dumps(dict(GOOGLE, hidden_dropout_prob=1.5)), "hidden_dropout_prob must be a probability"),
    (json.dumps(dict(GOOGLE, layer_norm_eps=0)), "layer_norm_eps must be a positive number"),
    (json.dumps(dict(GOOGLE, max_position_embeddings=None)), "max_position_embeddings"),
    (json.dumps(dict(GOOGLE, position_embedding_type="relative_key")), "position_embedding_type"),
    (json.dumps(dict(GOOGLE, is_decoder=True)), "is_decoder"),
    (json.dumps(dict(GOOGLE, add_cross_attention=True)), "add_cross_attention"),
    (json.dumps(dict(GOOGLE, model_type="roberta")), "model_type 'roberta'"),
    (json.dumps(dict(GOOGLE, embedding_size=128)), "ALBERT"),
])
def test_bad_configs_are_config_errors_naming_the_file(tmp_path, content, message):
    path = write(tmp_path / "bert_config.json", content)
    with pytest.raises(ConfigError, match=message) as err:
        BertConfig.from_json_file(path)
    assert "bert_config.json" in str(err.value)


def test_missing_or_unreadable_file(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        BertConfig.from_json_file(tmp_path / "nope.json")
    (tmp_path / "latin1.json").write_bytes(b'{"a": "\xe9"}')
    with pytest.raises(ConfigError, match="cannot read"):
        BertConfig.from_json_file(tmp_path / "latin1.json")
    with pytest.raises(ConfigError, match="vocab_size"):
        BertConfig(None)


def test_absolute_position_embeddings_and_encoder_flags_are_accepted():
    config = BertConfig.from_dict(dict(GOOGLE, position_embedding_type="absolute",
                                       is_decoder=False, add_cross_attention=False,
                                       model_type="bert"))
    assert config.position_embedding_type == "absolute"


# --- hostile config files: named errors, never a traceback, a hang or a wrong number -------
@pytest.mark.parametrize("extra, message", [
    ({"__class__": 1}, "'__class__' is reserved"),
    ({"to_dict": 1}, "collides with BertConfig.to_dict"),
    ({"set_num_labels": 1}, "collides with BertConfig.set_num_labels"),
    ({"self": 1}, "'self' is reserved"),
    ({"not-an-identifier": 1}, "not a valid field name"),
    ({"num_labels": "many"}, "num_labels must be a positive integer, got 'many'"),
    ({"num_labels": -4}, "num_labels must be a positive integer, got -4"),
    ({"num_labels": 10 ** 12}, "num_labels is 1000000000000, more than the 1000000"),
    ({"layer_norm_eps": 1e999}, "layer_norm_eps must be a positive number .finite"),  # inf
    ({"initializer_range": -1e999}, "initializer_range must be a positive number"),
    ({"initializer_range": 0}, "initializer_range must be a positive number"),
    ({"classifier_dropout": 2}, "classifier_dropout must be a probability"),
    ({"hidden_act": 5}, "unsupported hidden_act 5"),
    ({"architectures": "BertModel"}, "architectures must be a list"),
])
def test_hostile_config_fields_are_config_errors(tmp_path, extra, message):
    text = json.dumps(dict(GOOGLE, **extra)).replace("Infinity", "1e999")
    path = write(tmp_path / "config.json", text)
    with pytest.raises(ConfigError, match=message) as err:
        BertConfig.from_json_file(path)
    assert str(path) in str(err.value)


@pytest.mark.parametrize("text, message", [
    ('{"vocab_size": 99, "layer_norm_eps": NaN}', "NaN is not valid JSON"),
    ('{"vocab_size": 99, "initializer_range": Infinity}', "Infinity is not valid JSON"),
    ("[" * 100000 + "]" * 100000, "nests arrays or objects too deeply"),
    ('{"a": ' * 100000 + "1" + "}" * 100000, "nests arrays or objects too deeply"),
])
def test_non_standard_or_absurdly_nested_json(tmp_path, text, message):
    with pytest.raises(ConfigError, match=message):
        BertConfig.from_json_file(write(tmp_path / "config.json", text))


def test_non_finite_floats_refused_in_code_too():
    """0.6.2's constructor takes any numbers; no model, load or conversion is built from them."""
    from bertconvert import BertModel
    from bertconvert.models.config import resolve_config

    for key in ("layer_norm_eps", "initializer_range"):
        for bad in (float("nan"), float("inf")):
            config = BertConfig(99, hidden_size=32, num_attention_heads=4, **{key: bad})
            for build in (config.validate, lambda: BertModel(config),
                          lambda: resolve_config(config)):
                with pytest.raises(ConfigError, match=key):
                    build()


def test_head_count_is_checked_where_a_model_or_a_load_is_built(tmp_path):
    """0.6.2 writes and reads back hidden_size 100 with 12 heads; its attention layer (and our
    choice of config for a load or a conversion) refuses it, naming the file."""
    from bertconvert import BertModel
    from bertconvert.errors import AttentionHeadsError
    from bertconvert.models.config import resolve_config

    path = write(tmp_path / "bert_config.json", dict(GOOGLE, hidden_size=100))
    config = BertConfig.from_json_file(path)
    assert config.hidden_size == 100
    message = r"The hidden size \(100\) is not a multiple of the number of attention heads \(12\)"
    with pytest.raises(AttentionHeadsError, match=message) as err:
        resolve_config(path)
    assert str(path) in str(err.value) and isinstance(err.value, ValueError)
    with pytest.raises(AttentionHeadsError, match=message):
        BertModel(config)


def test_json_written_never_holds_nan(tmp_path):
    config = BertConfig(99, custom=float("nan"))  # an unknown extra key is kept as given
    with pytest.raises(ConfigError, match="custom"):
        config.to_json_string()
    with pytest.raises(ConfigError):
        config.to_json_file(tmp_path / "config.json")
    assert not os.listdir(tmp_path)


def test_num_labels_setter_is_checked_and_bounded():
    config = BertConfig(99)
    for bad in ("many", -4, 0, 2.5, 10 ** 12):
        with pytest.raises(ConfigError, match="num_labels"):
            config.num_labels = bad
    config.num_labels = 3
    assert config.id2label == {"0": "LABEL_0", "1": "LABEL_1", "2": "LABEL_2"}


def test_config_that_is_a_fifo_or_a_device(tmp_path):
    fifo = tmp_path / "config.json"
    os.mkfifo(fifo)  # reading it would wait forever for a writer
    with pytest.raises(ConfigError, match="FIFO"):
        BertConfig.from_json_file(fifo)
    os.symlink("/dev/zero", tmp_path / "zero.json")  # reading it would never end
    with pytest.raises(ConfigError, match="character device"):
        BertConfig.from_json_file(tmp_path / "zero.json")


# --- resolve_config: the one precedence ---------------------------------------------------------
def _both_configs(directory):
    """A directory with both files, told apart by vocab_size: bert_config.json 100, config.json 200."""
    directory.mkdir()
    write(directory / "bert_config.json", dict(GOOGLE, vocab_size=100))
    write(directory / "config.json", dict(GOOGLE, vocab_size=200))
    (directory / "bert_model.ckpt.index").write_bytes(b"")
    return directory


def test_resolve_config_precedence(tmp_path):
    from bertconvert.models.config import resolve_config

    both = _both_configs(tmp_path / "both")
    prefix = str(both / "bert_model.ckpt")
    # 1. an explicit config wins over everything
    assert resolve_config(BertConfig(7), model_dir=both, checkpoint=prefix) == (BertConfig(7), None)
    assert resolve_config(dict(GOOGLE, vocab_size=5), checkpoint=prefix)[0].vocab_size == 5
    explicit = write(tmp_path / "mine.json", dict(GOOGLE, vocab_size=300))
    assert resolve_config(explicit, model_dir=both)[0].vocab_size == 300
    # 2. a model directory: transformers' config.json first
    config, path = resolve_config(model_dir=both, checkpoint=prefix)
    assert (config.vocab_size, os.path.basename(path)) == (200, "config.json")
    # 3. beside a checkpoint: Google's bert_config.json first
    config, path = resolve_config(checkpoint=prefix)
    assert (config.vocab_size, os.path.basename(path)) == (100, "bert_config.json")
    # an explicit directory is searched as the call's default place would be
    assert resolve_config(str(both), checkpoint=prefix)[0].vocab_size == 100
    assert resolve_config(str(both))[0].vocab_size == 200
    (both / "bert_config.json").unlink()
    assert resolve_config(checkpoint=prefix)[0].vocab_size == 200


def test_resolve_config_names_what_is_missing(tmp_path):
    from bertconvert.models.config import resolve_config

    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="expected bert_config.json or config.json"):
        resolve_config(checkpoint=str(tmp_path / "empty" / "model.ckpt"))
    with pytest.raises(ConfigError, match="expected config.json or bert_config.json; found"):
        resolve_config(model_dir=tmp_path / "empty")
    with pytest.raises(ConfigError, match="must be a path, a dict or a BertConfig, got int"):
        resolve_config(3)
    with pytest.raises(ConfigError, match="no config"):
        resolve_config()


def test_every_caller_uses_the_one_precedence(tmp_path):
    """convert (beside the checkpoint) and from_pretrained (a model directory) both go through
    resolve_config; verify's TF reference finds the checkpoint's file the same way."""
    from bertconvert.convert.plan import resolve_config as convert_resolve
    from bertconvert.models.config import find_config_file
    from bertconvert.verify.tf_side import find_checkpoint_config

    both = _both_configs(tmp_path / "both")
    prefix = str(both / "bert_model.ckpt")
    assert convert_resolve(None, prefix)[0].vocab_size == 100
    assert os.path.basename(find_checkpoint_config(prefix)) == "bert_config.json"
    assert os.path.basename(find_config_file(both)) == "config.json"


def test_masked_lm_head_activation_and_eps_are_validated():
    """Checked where every field is (0.6.2's constructor takes anything): before a model is
    built from the config, and when a config file is read."""
    from bertconvert.errors import ConfigError
    from bertconvert.models.config import BertConfig
    from bertconvert.models.heads import BertForMaskedLM
    bad_act = BertConfig(10, hidden_size=8, num_attention_heads=2, mlm_head_act="erf-ish")
    with pytest.raises(ConfigError, match="mlm_head_act"):
        bad_act.validate()
    with pytest.raises(ConfigError, match="mlm_head_act"):
        BertForMaskedLM(bad_act)
    bad_eps = BertConfig(10, hidden_size=8, num_attention_heads=2, mlm_head_layer_norm_eps=0)
    with pytest.raises(ConfigError, match="mlm_head_layer_norm_eps"):
        bad_eps.validate()
    with pytest.raises(ConfigError, match="mlm_head_layer_norm_eps"):
        BertConfig.from_dict(bad_eps.to_dict())


def test_masked_lm_head_uses_its_own_activation_and_eps():
    torch = pytest.importorskip("torch")
    from bertconvert.models.config import BertConfig
    from bertconvert.models.heads import BertForMaskedLM
    cfg = BertConfig(10, hidden_size=8, num_hidden_layers=1, num_attention_heads=2,
                     intermediate_size=16, hidden_act="gelu_new", mlm_head_act="gelu",
                     mlm_head_layer_norm_eps=1e-5)
    transform = BertForMaskedLM(cfg).cls.predictions.transform
    assert transform.LayerNorm.eps == 1e-5
    x = torch.linspace(-3, 3, 7)
    assert torch.equal(transform.transform_act_fn(x), torch.nn.functional.gelu(x))
    plain = BertForMaskedLM(BertConfig(10, hidden_size=8, num_hidden_layers=1,
                                       num_attention_heads=2, intermediate_size=16,
                                       hidden_act="gelu_new")).cls.predictions.transform
    assert plain.LayerNorm.eps == 1e-12
    assert not torch.equal(plain.transform_act_fn(x), torch.nn.functional.gelu(x))
