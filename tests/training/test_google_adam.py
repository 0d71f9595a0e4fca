"""AdamWeightDecay and google_schedule: Google's arithmetic, exclusions and schedule."""
import copy

import numpy as np
import pytest
import torch

from bertconvert import BertConfig, BertForSequenceClassification
from bertconvert.optimization import AdamWeightDecay, google_schedule


def _model():
    torch.manual_seed(0)
    config = BertConfig(30, hidden_size=8, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=12, max_position_embeddings=10)
    return BertForSequenceClassification(config, num_labels=3)


def test_weight_decay_is_decided_on_googles_names():
    opt = AdamWeightDecay(_model().named_parameters(), lr=1e-3, weight_decay_rate=0.01)
    decayed = {n for g in opt.param_groups if g["weight_decay_rate"] for n in g["names"]}
    excluded = {n for g in opt.param_groups if not g["weight_decay_rate"] for n in g["names"]}
    # gamma/beta (LayerNorm) and every .../bias, output_bias included, are excluded
    assert "bert.embeddings.LayerNorm.weight" in excluded and "classifier.bias" in excluded
    assert "bert.encoder.layer.0.attention.self.query.bias" in excluded
    assert {"classifier.weight", "bert.embeddings.word_embeddings.weight",
            "bert.encoder.layer.0.attention.self.query.weight"} <= decayed
    # a TF name given for a parameter decides, whatever the PyTorch name says
    opt = AdamWeightDecay([("w", torch.nn.Parameter(torch.ones(2)))], weight_decay_rate=0.1,
                          tf_names={"w": "scope/layer_norm/scale"})
    assert opt.param_groups[0]["weight_decay_rate"] == 0.0


def _google_step(p, g, m, v, lr, wd, clip):
    """optimization.py in numpy float64: clip by global norm, no bias correction."""
    norm = np.sqrt(sum((x ** 2).sum() for x in g))
    g = [x * clip / max(norm, clip) for x in g]
    out = []
    for pi, gi, mi, vi, wdi in zip(p, g, m, v, wd):
        mi = 0.9 * mi + 0.1 * gi
        vi = 0.999 * vi + 0.001 * gi * gi
        update = mi / (np.sqrt(vi) + 1e-6) + wdi * pi
        out.append((pi - lr * update, mi, vi))
    return out


def test_a_step_is_googles_update():
    rng = np.random.default_rng(3)
    p = [rng.standard_normal((4, 3)), rng.standard_normal(3)]
    g = [rng.standard_normal((4, 3)), rng.standard_normal(3)]  # global norm > 1: clipped
    params = [torch.nn.Parameter(torch.tensor(x, dtype=torch.float64)) for x in p]
    opt = AdamWeightDecay([("dense.weight", params[0]), ("dense.bias", params[1])], lr=0.1,
                          weight_decay_rate=0.01, clip_norm=1.0)
    m = [np.zeros_like(x) for x in p]
    v = [np.zeros_like(x) for x in p]
    for _ in range(2):
        for param, grad in zip(params, g):
            param.grad = torch.tensor(grad)
        opt.step()
        p, m, v = map(list, zip(*_google_step(p, g, m, v, 0.1, [0.01, 0.0], 1.0)))
    for param, want, mi in zip(params, p, m):
        np.testing.assert_allclose(param.detach().numpy(), want, rtol=1e-12)
        np.testing.assert_allclose(opt.state[param]["adam_m"].numpy(), mi, rtol=1e-12)
    assert opt.global_step == 2


def test_state_dict_round_trip_continues_identically():
    torch.manual_seed(1)
    x = torch.randn(5, 7)

    def train(opt, model, n):
        for _ in range(n):
            model(x).pow(2).sum().backward()
            opt.step()
            opt.zero_grad()

    a = torch.nn.Linear(7, 3)
    b = torch.nn.Linear(7, 3)
    b.load_state_dict(a.state_dict())
    opt_a = AdamWeightDecay(a.named_parameters(), lr=0.01, weight_decay_rate=0.01, clip_norm=1.0)
    train(opt_a, a, 2)
    opt_b = AdamWeightDecay(b.named_parameters(), lr=0.01, weight_decay_rate=0.01, clip_norm=1.0)
    b.load_state_dict(a.state_dict())
    opt_b.load_state_dict(copy.deepcopy(opt_a.state_dict()))  # as through torch.save/load
    train(opt_a, a, 2)
    train(opt_b, b, 2)
    for pa, pb in zip(a.parameters(), b.parameters()):
        assert torch.equal(pa, pb)
    assert opt_b.global_step == 4


@pytest.mark.filterwarnings("ignore:Detected call of `lr_scheduler.step\\(\\)` before")
@pytest.mark.parametrize("offset", [0, 1])
def test_the_schedule_warms_up_then_decays_to_zero(offset):
    p = torch.nn.Parameter(torch.zeros(1))
    opt = AdamWeightDecay([p], lr=1.0)
    sched = google_schedule(opt, num_train_steps=10, num_warmup_steps=4, read_offset=offset)
    seen = []
    for _ in range(10):
        seen.append(opt.param_groups[0]["lr"])
        sched.step()
    google = [s / 4 if s < 4 else 1 - min(s, 10) / 10 for s in range(offset, 10 + offset)]
    assert seen == pytest.approx(google)


def test_the_schedule_starts_at_the_optimizers_step():
    p = torch.nn.Parameter(torch.zeros(1))
    opt = AdamWeightDecay([p], lr=2.0, global_step=6)
    sched = google_schedule(opt, num_train_steps=10, num_warmup_steps=4)
    assert sched.last_epoch == 6
    assert opt.param_groups[0]["lr"] == pytest.approx(2.0 * (1 - 7 / 10))


def test_sparse_gradients_are_a_named_error():
    from bertconvert.errors import SparseGradientError
    emb = torch.nn.Embedding(5, 2, sparse=True)
    optimizer = AdamWeightDecay(emb.parameters(), lr=0.1)
    emb(torch.tensor([1, 2])).sum().backward()
    with pytest.raises(SparseGradientError, match="AdamWeightDecay"):
        optimizer.step()
