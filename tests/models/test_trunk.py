"""The eight model classes: math, 0.6.2 signatures and losses, state-dict keys, training mode.

pytorch-pretrained-bert 0.6.2 (the seed this API copies) is the oracle for forward outputs and
losses: the same state dict is loaded into both and every output must agree.
"""
import math

import pytest
import torch
import torch.nn.functional as F
from ..conftest import assert_fp32_close

from bertconvert import BertConfig, BertModel, HEADS
from bertconvert.errors import ConfigError, HeadError
from bertconvert.models.heads import (BertForPreTraining,
                               BertForQuestionAnswering, BertForSequenceClassification,
                               build_model, head_for_architecture)
from bertconvert.models.trunk import extended_attention_mask, gelu, gelu_new

NUM_LABELS = {"sequence-classification": 3, "token-classification": 5}
CHOICES = 3


def make_model(head, config, seed=0, spread=False):
    """A model in eval mode; ``spread`` gives every weight O(1) values (not Google's 0.02
    init), so activations reach the range where GELU variants and mask constants differ."""
    torch.manual_seed(seed)
    model = build_model(head, config, num_labels=NUM_LABELS.get(head)).eval()
    if spread:
        with torch.no_grad():
            for name, param in model.named_parameters():
                if "LayerNorm.weight" in name:
                    param.copy_(1 + 0.3 * torch.randn_like(param))
                else:
                    param.copy_(0.3 * torch.randn_like(param))
    return model


def head_inputs(head, batch):
    """Positional (input_ids, token_type_ids, attention_mask) shaped for ``head``."""
    args = (batch["input_ids"], batch["token_type_ids"], batch["attention_mask"])
    if head == "multiple-choice":  # 12 of the 13 rows as [4 questions, 3 choices, seq]
        args = tuple(t[:12].reshape(4, CHOICES, -1) for t in args)
    return args


def head_labels(head, batch, vocab_size=99):
    gen = torch.Generator().manual_seed(7)
    b, s = batch["input_ids"].shape
    if head in ("pretraining", "masked-lm"):
        mlm = torch.randint(0, vocab_size, (b, s), generator=gen)
        mlm[torch.rand(b, s, generator=gen) < 0.6] = -1
        labels = {"masked_lm_labels": mlm}
        if head == "pretraining":
            labels["next_sentence_label"] = torch.randint(0, 2, (b,), generator=gen)
        return labels
    if head == "next-sentence":
        return {"next_sentence_label": torch.randint(0, 2, (b,), generator=gen)}
    if head == "sequence-classification":
        return {"labels": torch.randint(0, 3, (b,), generator=gen)}
    if head == "token-classification":
        return {"labels": torch.randint(0, 5, (b, s), generator=gen)}
    if head == "multiple-choice":
        return {"labels": torch.randint(0, CHOICES, (4,), generator=gen)}
    if head == "question-answering":  # some positions past the sequence: clamped + ignored
        return {"start_positions": torch.tensor([0, 3, 6, 9, 40, 2, 1, 5, 4, 3, 2, 1, 0]),
                "end_positions": torch.tensor([1, 4, 6, 2, 3, 50, 2, 6, 5, 3, 2, 1, 7])}
    return {}


def as_tuple(out):
    return tuple(out) if isinstance(out, (tuple, list)) else (out,)


# --- the math ---------------------------------------------------------------------------
def test_gelu_is_exact_erf_and_gelu_new_is_tanh_form():
    x = torch.linspace(-6, 6, 1001, dtype=torch.float64)
    exact = x * 0.5 * (1.0 + torch.erf(x / math.sqrt(2.0)))
    tanh_form = 0.5 * x * (1 + torch.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3)))
    assert torch.allclose(gelu(x), exact, atol=1e-12)
    assert torch.allclose(gelu_new(x), tanh_form, atol=1e-12)
    assert (gelu(x) - gelu_new(x)).abs().max() > 1e-4  # really two different functions


def test_attention_mask_is_google_additive_constant():
    mask = extended_attention_mask(torch.tensor([[1, 1, 0]]), torch.float32)
    assert mask.shape == (1, 1, 1, 3)
    assert mask.flatten().tolist() == [0.0, 0.0, -10000.0]


def _google_reference_forward(model, input_ids, token_type_ids, attention_mask):
    """Google's modeling.py written out with plain tensor ops on the model's weights."""
    sd = {k: v.double() for k, v in model.state_dict().items()}
    cfg = model.config
    eps, heads = cfg.layer_norm_eps, cfg.num_attention_heads

    def ln(x, p):
        mean = x.mean(-1, keepdim=True)
        var = ((x - mean) ** 2).mean(-1, keepdim=True)
        return (x - mean) / torch.sqrt(var + eps) * sd[p + ".weight"] + sd[p + ".bias"]

    def dense(x, p):
        return x @ sd[p + ".weight"].T + sd[p + ".bias"]

    seq = input_ids.shape[1]
    h = (sd["embeddings.word_embeddings.weight"][input_ids]
         + sd["embeddings.token_type_embeddings.weight"][token_type_ids]
         + sd["embeddings.position_embeddings.weight"][:seq])
    h = ln(h, "embeddings.LayerNorm")
    adder = (1.0 - attention_mask[:, None, None, :].double()) * -10000.0
    outs = []
    for i in range(cfg.num_hidden_layers):
        p = f"encoder.layer.{i}."
        b, t, hid = h.shape

        def split(x):
            return x.view(b, t, heads, hid // heads).permute(0, 2, 1, 3)
        q, k, v = (split(dense(h, p + f"attention.self.{n}")) for n in ("query", "key", "value"))
        scores = q @ k.transpose(-1, -2) / math.sqrt(hid // heads) + adder
        ctx = (torch.softmax(scores, -1) @ v).permute(0, 2, 1, 3).reshape(b, t, hid)
        a = ln(dense(ctx, p + "attention.output.dense") + h, p + "attention.output.LayerNorm")
        inter = dense(a, p + "intermediate.dense")
        inter = inter * 0.5 * (1.0 + torch.erf(inter / math.sqrt(2.0)))
        h = ln(dense(inter, p + "output.dense") + a, p + "output.LayerNorm")
        outs.append(h)
    pooled = torch.tanh(dense(h[:, 0], "pooler.dense"))
    return outs, pooled


@pytest.mark.parametrize("impl", ["sdpa", "eager"])
def test_trunk_matches_googles_formulas(tiny_config, tiny_batch, impl):
    model = make_model("base", tiny_config, spread=True).set_attention_implementation(impl)
    args = head_inputs("base", tiny_batch)
    with torch.no_grad():
        layers, pooled = model(*args)
    ref_layers, ref_pooled = _google_reference_forward(model, *args)
    assert len(layers) == tiny_config.num_hidden_layers
    for ours, ref in zip(layers, ref_layers):
        assert (ours.double() - ref).abs().max() < 1e-5
    assert (pooled.double() - ref_pooled).abs().max() < 1e-5


def test_sdpa_and_plain_attention_agree_within_fp32_rounding(tiny_config, tiny_batch):
    model = make_model("pretraining", tiny_config, spread=True)
    args = head_inputs("pretraining", tiny_batch)
    with torch.no_grad():
        fast = model(*args)
        model.set_attention_implementation("eager")
        plain = model(*args)
        layers_fast, _ = model.bert.set_attention_implementation("sdpa")(*args)
        layers_plain, _ = model.bert.set_attention_implementation("eager")(*args)
    # Two kernels, two summation orders: equal up to fp32 rounding at the outputs' scale (a
    # wrong scale or mask would be off by 1e-2 or more).
    for a, b in zip(fast + tuple(layers_fast), plain + tuple(layers_plain)):
        assert_fp32_close(a, b)
    with pytest.raises(ValueError, match="sdpa"):
        model.set_attention_implementation("flash")


def test_padding_does_not_leak_into_real_tokens(tiny_config, tiny_batch):
    model = make_model("base", tiny_config, spread=True)
    ids, types, mask = head_inputs("base", tiny_batch)
    row = int(mask.sum(1).argmin())
    n = int(mask[row].sum())
    with torch.no_grad():
        full, _ = model(ids[row:row + 1], types[row:row + 1], mask[row:row + 1],
                        output_all_encoded_layers=False)
        alone, _ = model(ids[row:row + 1, :n], types[row:row + 1, :n],
                         output_all_encoded_layers=False)
    assert_fp32_close(full[:, :n], alone)


def test_layer_norm_eps_comes_from_config(tiny_config):
    tiny_config.layer_norm_eps = 1e-5
    model = BertModel(tiny_config)
    assert {m.eps for m in model.modules() if isinstance(m, torch.nn.LayerNorm)} == {1e-5}


def test_unsupported_activation_is_a_config_error(tiny_config):
    tiny_config.hidden_act = "mish"
    with pytest.raises(ConfigError, match="mish"):
        BertModel(tiny_config)


# --- the 0.6.2 API: outputs and losses agree with pytorch-pretrained-bert 0.6.2 -------------
@pytest.fixture(scope="module")
def ppb():
    return pytest.importorskip("pytorch_pretrained_bert.modeling")


def _ppb_model(ppb, head, config, state_dict):
    pconfig = ppb.BertConfig(config.vocab_size, hidden_size=config.hidden_size,
                             num_hidden_layers=config.num_hidden_layers,
                             num_attention_heads=config.num_attention_heads,
                             intermediate_size=config.intermediate_size,
                             max_position_embeddings=config.max_position_embeddings)
    cls = getattr(ppb, HEADS[head].__name__)
    extra = {"multiple-choice": (CHOICES,)}.get(head, (NUM_LABELS[head],) if head in NUM_LABELS else ())
    model = cls(pconfig, *extra)
    assert set(model.state_dict()) == set(state_dict), "state-dict keys differ from 0.6.2"
    model.load_state_dict(state_dict)
    return model.eval()


@pytest.mark.parametrize("head", list(HEADS))
def test_outputs_and_losses_match_pytorch_pretrained_bert_062(ppb, tiny_config, tiny_batch, head):
    ours = make_model(head, tiny_config, spread=True)
    theirs = _ppb_model(ppb, head, tiny_config, ours.state_dict())
    args = head_inputs(head, tiny_batch)
    labels = head_labels(head, tiny_batch)
    with torch.no_grad():
        out_ours, out_theirs = as_tuple(ours(*args)), as_tuple(theirs(*args))
        assert len(out_ours) == len(out_theirs)
        if head == "base":  # ([every layer], pooled)
            out_ours = tuple(out_ours[0]) + (out_ours[1],)
            out_theirs = tuple(out_theirs[0]) + (out_theirs[1],)
        for a, b in zip(out_ours, out_theirs):
            assert_fp32_close(a, b)
        if labels:
            originals = {k: v.clone() for k, v in labels.items()}
            loss_ours = ours(*args, **labels)
            assert all(torch.equal(labels[k], originals[k]) for k in labels)  # not mutated
            loss_theirs = theirs(*args, **{k: v.clone() for k, v in labels.items()})
            assert loss_ours.dim() == 0 and torch.isfinite(loss_ours)
            assert abs(float(loss_ours) - float(loss_theirs)) < 1e-5


def test_bert_model_last_layer_only(tiny_config, tiny_batch):
    model = make_model("base", tiny_config)
    args = head_inputs("base", tiny_batch)
    with torch.no_grad():
        every, pooled = model(*args)
        last, pooled2 = model(*args, output_all_encoded_layers=False)
    assert torch.is_tensor(last)
    assert_fp32_close(last, every[-1])
    assert_fp32_close(pooled, pooled2)
    assert pooled.shape == (13, 32)


def test_defaults_for_mask_and_segments(tiny_config, tiny_batch):
    model = make_model("question-answering", tiny_config)
    ids = tiny_batch["input_ids"]
    with torch.no_grad():
        implicit = model(ids)
        explicit = model(ids, torch.zeros_like(ids), torch.ones_like(ids))
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(implicit, explicit))


def test_mlm_ignores_minus_one_and_minus_100_alike(tiny_config, tiny_batch):
    model = make_model("masked-lm", tiny_config)
    labels = head_labels("masked-lm", tiny_batch)["masked_lm_labels"]
    args = head_inputs("masked-lm", tiny_batch)
    with torch.no_grad():
        a = model(*args, masked_lm_labels=labels)
        b = model(*args, masked_lm_labels=labels.masked_fill(labels == -1, -100))
        logits = model(*args)
    keep = labels >= 0
    expected = F.cross_entropy(logits[keep], labels[keep])
    assert torch.allclose(a, b) and torch.allclose(a, expected, atol=1e-6)


def test_qa_positions_outside_the_input_are_ignored(tiny_config, tiny_batch):
    model = make_model("question-answering", tiny_config)
    args = head_inputs("question-answering", tiny_batch)
    start, end = torch.tensor([2, 99] + [1] * 11), torch.tensor([3, 4] + [2] * 11)
    with torch.no_grad():
        s_logits, e_logits = model(*args)
        loss = model(*args, start_positions=start, end_positions=end)
    expected = (F.cross_entropy(s_logits[[0] + list(range(2, 13))], start[[0] + list(range(2, 13))])
                + F.cross_entropy(e_logits, end)) / 2
    assert torch.allclose(loss, expected, atol=1e-6)
    assert start[1] == 99  # the caller's tensor is untouched


def test_multiple_choice_shapes(tiny_config, tiny_batch):
    model = make_model("multiple-choice", tiny_config)
    args = head_inputs("multiple-choice", tiny_batch)
    with torch.no_grad():
        logits = model(*args)
        flat = model(*(t.reshape(-1, t.size(-1)) for t in args))
    assert logits.shape == (4, CHOICES)
    assert model.num_choices == 2 and flat.shape == (6, 2)  # 0.6.2 flat form uses num_choices
    assert model.classifier.weight.shape == (1, 32)


def test_classifier_label_counts(tiny_config):
    assert BertForSequenceClassification(tiny_config, 4).classifier.out_features == 4
    assert BertForSequenceClassification(tiny_config).num_labels == 2
    tiny_config.num_labels = 6
    assert build_model("token-classification", tiny_config).classifier.out_features == 6
    assert build_model("multiple-choice", tiny_config, num_labels=6).classifier.out_features == 1


# --- keys, ties, registry -------------------------------------------------------------------
def test_state_dict_keys_and_tied_decoder(tiny_config):
    model = BertForPreTraining(tiny_config)
    keys = set(model.state_dict())
    for key in ("bert.embeddings.word_embeddings.weight",
                "bert.encoder.layer.0.attention.self.query.weight",
                "cls.predictions.transform.dense.weight", "cls.predictions.bias",
                "cls.predictions.decoder.weight", "cls.seq_relationship.weight"):
        assert key in keys
    assert "embeddings.word_embeddings.weight" in BertModel(tiny_config).state_dict()
    assert model.cls.predictions.decoder.weight is model.bert.embeddings.word_embeddings.weight
    assert "qa_outputs.weight" in BertForQuestionAnswering(tiny_config).state_dict()


def test_random_init_follows_google(tiny_config):
    tiny_config.initializer_range = 0.05
    model = BertForPreTraining(tiny_config)
    q = model.bert.encoder.layer[0].attention.self.query
    assert abs(float(q.weight.detach().std()) - 0.05) < 0.01 and not q.bias.any()
    ln = model.bert.embeddings.LayerNorm
    assert bool((ln.weight == 1).all()) and not ln.bias.any() and not model.cls.predictions.bias.any()


def test_heads_registry(tiny_config):
    assert list(HEADS) == ["base", "pretraining", "masked-lm", "next-sentence",
                           "sequence-classification", "token-classification",
                           "multiple-choice", "question-answering"]
    for name, cls in HEADS.items():
        assert cls.head_name == name
        assert head_for_architecture(cls.__name__) == name
        assert isinstance(build_model(name, tiny_config), cls)
    with pytest.raises(HeadError, match="question-answering"):
        build_model("summarisation", tiny_config)
    with pytest.raises(HeadError, match="BertForSequenceClassification"):
        head_for_architecture("RobertaForMaskedLM")


def test_model_needs_a_bert_config():
    with pytest.raises(ConfigError, match="from_pretrained"):
        BertModel("not a config object")
    model = BertModel({"vocab_size": 10, "hidden_size": 8, "num_hidden_layers": 1,
                       "num_attention_heads": 2, "intermediate_size": 4})
    assert isinstance(model.config, BertConfig)


def test_too_long_input_is_a_clear_error(tiny_config):
    model = BertModel(tiny_config)
    with pytest.raises(ValueError, match="max_position_embeddings=64"):
        model(torch.ones(1, 65, dtype=torch.long))


# --- training mode ----------------------------------------------------------------------------
@pytest.mark.parametrize("head", [h for h in HEADS if h != "base"])
def test_training_mode_losses_are_finite_and_backpropagate(tiny_config, tiny_batch, head):
    model = make_model(head, tiny_config).train()
    args = head_inputs(head, tiny_batch)
    torch.manual_seed(1)
    loss = model(*args, **head_labels(head, tiny_batch))
    assert torch.isfinite(loss)
    loss.backward()
    trunk = model.bert
    for param in (trunk.embeddings.word_embeddings.weight,
                  trunk.encoder.layer[0].attention.self.query.weight,
                  trunk.encoder.layer[-1].output.dense.weight):
        assert param.grad is not None and torch.isfinite(param.grad).all() and param.grad.abs().sum() > 0


def test_dropout_is_active_in_training_mode_only(tiny_config, tiny_batch):
    model = make_model("sequence-classification", tiny_config)
    args = head_inputs("sequence-classification", tiny_batch)
    with torch.no_grad():
        assert_fp32_close(model(*args), model(*args))
        model.train()
        # Dropout changes outputs far beyond rounding; without it, training mode is the same
        # function as eval mode.
        with pytest.raises(AssertionError):
            assert_fp32_close(model(*args), model(*args))
        tiny_config.hidden_dropout_prob = tiny_config.attention_probs_dropout_prob = 0.0
        no_dropout = make_model("sequence-classification", tiny_config).train()
        assert_fp32_close(no_dropout(*args), no_dropout(*args))
