"""KerasHub BERT presets (fixtures/keras_hub, made by keras-hub 0.32 itself; see
fixtures/make_keras_hub_fixtures.py) convert with no flags, bit for bit, and compute what
KerasHub computed.

KerasHub is not installed here: its outputs are the ones it recorded beside each preset. The
weights are checked against the h5 read independently (h5py, numpy's own reshapes, bfloat16
widened by shifting its bits), so a mapping or transform error in the converter cannot hide
behind the same code on both sides. fp32 through these tiny models stays within ~1e-6 of
KerasHub; a wrong GELU form, eps or layer order is off by more than 1e-4.
"""
import json
import os
import re

import numpy as np
import pytest
import torch
from safetensors.numpy import load_file

from bertconvert import BertForMaskedLM, BertForSequenceClassification, BertModel, layout
from bertconvert.cli import main

h5py = pytest.importorskip("h5py")

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
KH = os.path.join(ROOT, "fixtures", "keras_hub")
PRESETS = ("backbone_uncased", "backbone_cased", "classifier", "masked_lm", "text_embedder",
           "backbone_bf16")
BATCHES = ("single", "pairs", "full")
TOLERANCE = 1e-5
HEADS_OF = {"classifier": layout.SEQUENCE_CLASSIFICATION, "masked_lm": layout.MASKED_LM}


def recorded(name):
    return np.load(os.path.join(KH, f"{name}.outputs.npz"))


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    """name -> converted directory (through the command line, no flags)."""
    root = tmp_path_factory.mktemp("keras-hub")
    done = {}

    def get(name):
        if name not in done:
            out = root / name
            assert main(["convert", os.path.join(KH, name), "--out", str(out), "--quiet"]) == 0
            done[name] = out
        return done[name]
    return get


def read_json(path):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


# --- the model directory -------------------------------------------------------------------
@pytest.mark.parametrize("name", PRESETS)
def test_no_flag_conversion_writes_a_complete_directory(converted, name):
    out = converted(name)
    assert sorted(os.listdir(out)) == sorted([
        layout.CONFIG_NAME, layout.GOOGLE_CONFIG_NAME, layout.SAFETENSORS_NAME,
        layout.VOCAB_NAME, layout.TOKENIZER_CONFIG_NAME, layout.REPORT_NAME])
    config = read_json(out / layout.CONFIG_NAME)
    keras = read_json(os.path.join(KH, name, "config.json"))["config"]
    assert config["hidden_act"] == "gelu_new"  # KerasHub's encoder: the tanh GELU
    assert config["layer_norm_eps"] == 1e-12
    assert (config["vocab_size"], config["hidden_size"], config["num_hidden_layers"],
            config["num_attention_heads"], config["intermediate_size"],
            config["max_position_embeddings"], config["type_vocab_size"]) == (
        keras["vocabulary_size"], keras["hidden_dim"], keras["num_layers"], keras["num_heads"],
        keras["intermediate_dim"], keras["max_sequence_length"], keras["num_segments"])
    report = read_json(out / layout.REPORT_NAME)
    assert report["head"] == HEADS_OF.get(name, layout.BASE)
    with open(os.path.join(KH, name, "assets", "tokenizer", "vocabulary.txt"), "rb") as f:
        assert (out / layout.VOCAB_NAME).read_bytes() == f.read()


def test_classifier_labels_and_mlm_head_settings(converted):
    assert read_json(converted("classifier") / layout.CONFIG_NAME)["num_labels"] == 3
    assert read_json(converted("classifier") / layout.REPORT_NAME)["num_labels"] == 3
    mlm = read_json(converted("masked_lm") / layout.CONFIG_NAME)
    assert mlm["architectures"] == ["BertForMaskedLM"]
    # the head's own arithmetic, in keys our BertForMaskedLM honours
    assert (mlm["mlm_head_act"], mlm["mlm_head_layer_norm_eps"]) == ("gelu", 1e-5)
    assert "mlm_head_act" not in read_json(converted("classifier") / layout.CONFIG_NAME)


def test_text_embedder_says_how_it_pools(converted, capsys, tmp_path):
    report = read_json(converted("text_embedder") / layout.REPORT_NAME)
    pooling = report["keras_hub"]["embedding_pooling"]
    assert (pooling["mode"], pooling["normalize"]) == ("mean", True)
    assert report["head"] == layout.BASE
    assert main(["convert", os.path.join(KH, "text_embedder"), "--out", str(tmp_path / "o")]) == 0
    assert "mean of the sequence output" in capsys.readouterr().out


@pytest.mark.parametrize("name", ["backbone_uncased", "backbone_cased", "classifier"])
def test_tokenizer_config_keeps_keras_hub_casing_and_accents(converted, name):
    tok = read_json(converted(name) / layout.TOKENIZER_CONFIG_NAME)
    keras = read_json(os.path.join(KH, name, "tokenizer.json"))["config"]
    assert tok["do_lower_case"] is keras["lowercase"]
    assert tok["strip_accents"] is keras["strip_accents"] is False


# --- weights: bit for bit with the h5 --------------------------------------------------------
def _h5_datasets(preset):
    out = {}
    for file in ("model.weights.h5", "task.weights.h5"):
        path = os.path.join(KH, preset, file)
        if not os.path.exists(path):
            continue
        with h5py.File(path, "r") as f:
            def visit(name, obj):
                if isinstance(obj, h5py.Dataset):
                    raw = obj[()]
                    if obj.attrs.get("dtype") == "bfloat16":  # bits 16..31 of a float32
                        raw = (np.asarray(raw).view(np.uint16).astype(np.uint32) << 16).view(np.float32)
                    out[f"{file}/{name}"] = np.asarray(raw)
            f.visititems(visit)
    return out


def _expected_state(preset, head):
    """The PyTorch state dict, derived here from the h5 paths with the layer taken from the
    numeric suffix (``transformer_encoder`` is 0, ``_11`` is 11)."""
    t = "" if head == layout.BASE else "bert."
    state = {}
    for name, value in _h5_datasets(preset).items():
        if "/optimizer/" in name:
            continue
        m = re.match(r"model\.weights\.h5/layers/transformer_encoder(?:_(\d+))?/(.*)/vars/(\d)$", name)
        if m:
            layer, path, var = int(m.group(1) or 0), m.group(2), m.group(3)
            p = f"{t}encoder.layer.{layer}."
            sub = {"_self_attention_layer_norm": "attention.output.LayerNorm",
                   "_feedforward_intermediate_dense": "intermediate.dense",
                   "_feedforward_output_dense": "output.dense",
                   "_feedforward_layer_norm": "output.LayerNorm",
                   "_self_attention_layer/output_dense": "attention.output.dense"}
            proj = re.fullmatch(r"_self_attention_layer/(query|key|value)_dense", path)
            if proj:
                key = p + f"attention.self.{proj.group(1)}"
                value = value.reshape(value.shape[0], -1).T if var == "0" else value.reshape(-1)
            else:
                key = p + sub[path]
                if var == "0" and value.ndim == 3:
                    value = value.reshape(-1, value.shape[-1]).T
                elif var == "0" and value.ndim == 2:
                    value = value.T
            state[key + (".weight" if var == "0" else ".bias")] = value
            continue
        simple = {
            "model.weights.h5/layers/reversible_embedding/vars/0": f"{t}embeddings.word_embeddings.weight",
            "model.weights.h5/layers/position_embedding/vars/0": f"{t}embeddings.position_embeddings.weight",
            "model.weights.h5/layers/embedding/vars/0": f"{t}embeddings.token_type_embeddings.weight",
            "model.weights.h5/layers/layer_normalization/vars/0": f"{t}embeddings.LayerNorm.weight",
            "model.weights.h5/layers/layer_normalization/vars/1": f"{t}embeddings.LayerNorm.bias",
            "model.weights.h5/layers/dense/vars/0": f"{t}pooler.dense.weight",
            "model.weights.h5/layers/dense/vars/1": f"{t}pooler.dense.bias",
            "task.weights.h5/layers/dense/vars/0": "classifier.weight",
            "task.weights.h5/layers/dense/vars/1": "classifier.bias",
            "task.weights.h5/layers/masked_lm_head/_intermediate_dense/vars/0": "cls.predictions.transform.dense.weight",
            "task.weights.h5/layers/masked_lm_head/_intermediate_dense/vars/1": "cls.predictions.transform.dense.bias",
            "task.weights.h5/layers/masked_lm_head/_intermediate_layer_norm/vars/0": "cls.predictions.transform.LayerNorm.weight",
            "task.weights.h5/layers/masked_lm_head/_intermediate_layer_norm/vars/1": "cls.predictions.transform.LayerNorm.bias",
            "task.weights.h5/layers/masked_lm_head/vars/0": "cls.predictions.bias",
        }
        key = simple[name]
        state[key] = value.T if key.endswith(("dense.weight", "classifier.weight")) else value
    return state


@pytest.mark.parametrize("name", PRESETS)
def test_weights_are_the_h5_bit_for_bit(converted, name):
    head = HEADS_OF.get(name, layout.BASE)
    got = load_file(str(converted(name) / layout.SAFETENSORS_NAME))
    want = _expected_state(name, head)
    if head == layout.MASKED_LM:  # transformers' BertForMaskedLM has no pooler
        want = {k: v for k, v in want.items() if ".pooler." not in k}
    assert sorted(got) == sorted(want)
    for key, value in want.items():
        assert got[key].dtype == np.float32 and got[key].shape == value.shape, key
        assert np.array_equal(got[key].view(np.uint32), np.ascontiguousarray(value, np.float32).view(np.uint32)), key


def test_bf16_preset_is_stored_as_opaque_bfloat16_and_every_bit_survives(converted):
    with h5py.File(os.path.join(KH, "backbone_bf16", "model.weights.h5"), "r") as f:
        ds = f["layers/reversible_embedding/vars/0"]
        assert ds.dtype.kind == "V" and ds.attrs["dtype"] == "bfloat16"
        raw = np.asarray(ds[()]).view(np.uint16)
    got = load_file(str(converted("backbone_bf16") / layout.SAFETENSORS_NAME))
    bits = got["embeddings.word_embeddings.weight"].view(np.uint32)
    assert np.array_equal(bits >> 16, raw) and not (bits & 0xFFFF).any()


# --- outputs: what KerasHub computed ---------------------------------------------------------
def _inputs(npz, batch, ids="token_ids"):
    return tuple(torch.from_numpy(npz[f"{batch}.{k}"]).long()
                 for k in (ids, "segment_ids", "padding_mask"))


def _close(got, want, tol=TOLERANCE):
    got = got.detach().numpy() if isinstance(got, torch.Tensor) else got
    assert got.shape == want.shape
    err = float(np.abs(got - want).max())
    assert err <= tol, f"max |diff| {err:.3g} > {tol:g}"
    return err


@pytest.mark.parametrize("name", ["backbone_uncased", "backbone_cased", "text_embedder"])
@pytest.mark.parametrize("batch", BATCHES)
def test_backbone_reproduces_keras_hub(converted, name, batch):
    npz = recorded(name)
    model = BertModel.from_pretrained(str(converted(name))).eval()
    with torch.no_grad():
        seq, pooled = model(*_inputs(npz, batch), output_all_encoded_layers=False)
    _close(seq, npz[f"{batch}.sequence_output"])
    _close(pooled, npz[f"{batch}.pooled_output"])
    if name == "text_embedder":  # the pooling conversion.json describes: masked mean, L2
        mask = torch.from_numpy(npz[f"{batch}.padding_mask"]).float()[:, :, None]
        emb = (seq * mask).sum(1) / mask.sum(1)
        _close(emb / emb.norm(dim=-1, keepdim=True), npz[f"{batch}.embedding"])


@pytest.mark.parametrize("batch", BATCHES)
def test_twelve_layer_classifier_reproduces_keras_hub(converted, batch):
    npz = recorded("classifier")
    model = BertForSequenceClassification.from_pretrained(str(converted("classifier"))).eval()
    with torch.no_grad():
        logits = model(*_inputs(npz, batch))
        seq, pooled = model.bert(*_inputs(npz, batch), output_all_encoded_layers=False)
    _close(logits, npz[f"{batch}.logits"])
    _close(seq, npz[f"{batch}.sequence_output"])
    _close(pooled, npz[f"{batch}.pooled_output"])


def _mlm_at_positions(logits, npz, batch):
    pos = torch.from_numpy(npz[f"{batch}.mask_positions"]).long()
    return torch.gather(logits, 1, pos[:, :, None].expand(-1, -1, logits.shape[-1]))


@pytest.mark.parametrize("batch", BATCHES)
def test_masked_lm_reproduces_keras_hub(converted, batch):
    npz = recorded("masked_lm")
    model = BertForMaskedLM.from_pretrained(str(converted("masked_lm"))).eval()
    with torch.no_grad():
        logits = model(*_inputs(npz, batch, "masked_token_ids"))
    _close(_mlm_at_positions(logits, npz, batch), npz[f"{batch}.mlm_logits"])


def test_masked_lm_with_the_trunk_activation_would_differ(converted):
    """The head's own exact GELU and eps 1e-5 are what make the match: with the trunk's
    (what transformers computes) the logits are off by far more than fp32 error."""
    npz = recorded("masked_lm")
    config = read_json(converted("masked_lm") / layout.CONFIG_NAME)
    from bertconvert.models.config import BertConfig
    for key in ("mlm_head_act", "mlm_head_layer_norm_eps"):
        config.pop(key)
    model = BertForMaskedLM(BertConfig.from_dict(
        {k: v for k, v in config.items() if k not in ("architectures", "model_type", "dtype")}))
    state = load_file(str(converted("masked_lm") / layout.SAFETENSORS_NAME))
    model.load_state_dict({k: torch.from_numpy(v) for k, v in state.items()}, strict=False)
    model.tie_weights()
    model.eval()
    with torch.no_grad():
        logits = model(*_inputs(npz, "single", "masked_token_ids"))
    err = float(np.abs(_mlm_at_positions(logits, npz, "single").numpy()
                       - npz["single.mlm_logits"]).max())
    assert err > 1e-4


@pytest.mark.parametrize("batch", BATCHES)
def test_bf16_backbone_matches_within_bfloat16_rounding(converted, batch):
    """KerasHub computed in bfloat16; we compute the same (exact) weights in float32. The
    difference is bfloat16 rounding of activations through 2 layers: a few of its 2**-8
    relative steps of the largest value, never the O(1) error of a wrong mapping."""
    npz = recorded("backbone_bf16")
    model = BertModel.from_pretrained(str(converted("backbone_bf16"))).eval()
    with torch.no_grad():
        seq, _ = model(*_inputs(npz, batch), output_all_encoded_layers=False)
    want = npz[f"{batch}.sequence_output"]
    _close(seq, want, tol=8 * 2.0 ** -8 * float(np.abs(want).max()))


def test_bf16_preset_written_as_bfloat16_is_the_h5_bytes(tmp_path):
    from safetensors.torch import load_file as load_torch
    from bertconvert.convert.run import convert_checkpoint
    convert_checkpoint(os.path.join(KH, "backbone_bf16"), tmp_path / "o", dtype="bfloat16",
                       progress=False)
    got = load_torch(str(tmp_path / "o" / layout.SAFETENSORS_NAME))
    with h5py.File(os.path.join(KH, "backbone_bf16", "model.weights.h5"), "r") as f:
        raw = np.asarray(f["layers/position_embedding/vars/0"][()]).view(np.uint16)
        q = np.asarray(f["layers/transformer_encoder_1/_self_attention_layer/query_dense/vars/0"][()])
    mine = got["embeddings.position_embeddings.weight"]
    assert mine.dtype == torch.bfloat16
    assert np.array_equal(mine.view(torch.int16).numpy().view(np.uint16), raw)
    q = q.view(np.uint16).reshape(q.shape[0], -1).T  # [hidden, heads, head_dim] -> [H*D, hidden]
    assert np.array_equal(got["encoder.layer.1.attention.self.query.weight"].view(torch.int16)
                          .numpy().view(np.uint16), q)
