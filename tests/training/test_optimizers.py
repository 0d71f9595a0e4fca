"""BertAdam's and OpenAIAdam's behaviour, from their definitions (0.6.2's semantics): they
optimise, they differ where 0.6.2's two optimizers differ, they clip and decay as documented,
and their state survives a save and load."""
import io
import logging
import math

import pytest
import torch

import bertconvert
from bertconvert import training
from bertconvert.errors import OptimizerArgumentError, SparseGradientError
from bertconvert.optimization import (BertAdam, ConstantLR, OpenAIAdam, WarmupCosineSchedule,
                                      WarmupLinearSchedule)

OPTIMIZERS = [BertAdam, OpenAIAdam]


def test_the_import_paths_of_062_lead_to_the_same_classes():
    assert bertconvert.BertAdam is BertAdam is training.BertAdam
    assert bertconvert.OpenAIAdam is OpenAIAdam is training.OpenAIAdam
    assert bertconvert.optimization.WarmupLinearSchedule is training.WarmupLinearSchedule
    assert {"BertAdam", "OpenAIAdam"} <= set(dir(bertconvert))


@pytest.mark.parametrize("cls", OPTIMIZERS)
def test_a_weight_is_driven_to_its_target(cls):
    w = torch.tensor([0.5, -0.3, 0.0, 0.2], requires_grad=True)
    target = torch.tensor([-0.2, 0.4, 0.3, 0.2])
    optimizer = cls([w], lr=0.1, schedule=None, weight_decay=0.0, max_grad_norm=-1)
    for _ in range(150):
        optimizer.zero_grad()
        torch.nn.functional.mse_loss(w, target).backward()
        optimizer.step()
    assert torch.allclose(w.detach(), target, atol=1e-2)


@pytest.mark.parametrize("cls", OPTIMIZERS)
def test_schedule_names_build_062s_schedule_classes(cls):
    params = torch.nn.Linear(4, 4).parameters
    assert isinstance(cls(params(), lr=1e-3, warmup=0.1, t_total=100, schedule=None)
                      .param_groups[0]["schedule"], ConstantLR)
    assert isinstance(cls(params(), lr=1e-3, warmup=0.1, t_total=100, schedule="none")
                      .param_groups[0]["schedule"], ConstantLR)
    assert isinstance(cls(params(), lr=1e-3, warmup=0.1, t_total=100)
                      .param_groups[0]["schedule"], WarmupLinearSchedule)
    own = WarmupCosineSchedule(warmup=0.2, t_total=50)
    assert cls(params(), lr=1e-3, schedule=own).param_groups[0]["schedule"] is own


@pytest.mark.parametrize("cls", OPTIMIZERS)
def test_a_schedule_object_makes_the_optimizers_warmup_and_t_total_ineffective(cls, caplog):
    with caplog.at_level(logging.WARNING):
        cls([torch.zeros(1, requires_grad=True)], lr=1e-3, warmup=0.3, t_total=10,
            schedule=WarmupLinearSchedule(warmup=0.1, t_total=100))
    assert "ineffective" in caplog.text


def _one_step(cls, grad, **settings):
    p = torch.zeros_like(grad, requires_grad=True)
    optimizer = cls([p], lr=0.01, schedule=None, weight_decay=0.0, max_grad_norm=-1, **settings)
    p.grad = grad.clone()
    optimizer.step()
    return p.detach()


def test_bertadam_has_no_bias_correction_and_openai_adam_has():
    g = torch.tensor([0.5, -2.0])
    # BertAdam's first step: m = 0.1 g, v = 0.001 g^2, so |update| = 0.1/sqrt(0.001) ~= 3.16
    expected = -0.01 * (0.1 * g) / ((0.001 * g * g).sqrt() + 1e-6)
    assert torch.allclose(_one_step(BertAdam, g), expected, rtol=1e-6, atol=0)
    assert torch.allclose(_one_step(BertAdam, g).abs(), torch.full((2,), 0.01 * math.sqrt(10)),
                          rtol=1e-4)  # (epsilon 1e-6 against sqrt(v) >= 0.016)
    # OpenAIAdam rescales by sqrt(1 - b2) / (1 - b1): its first step is lr * sign(g)
    assert torch.allclose(_one_step(OpenAIAdam, g), -0.01 * g.sign(), rtol=1e-6)


def test_bertadams_epsilon_defaults_to_1e_6_and_openai_adams_to_1e_8():
    # a gradient of 1e-5: sqrt(v) = sqrt(0.001) * 1e-5 ~= 3e-7, below 1e-6, above 1e-8
    tiny = torch.tensor([1e-5])
    # BertAdam: m / (sqrt(v) + 1e-6) = 1e-6 / 1.3e-6, a quarter of its usual first step sqrt(10)
    assert _one_step(BertAdam, tiny).abs().item() < 0.3 * 0.01 * math.sqrt(10)
    # OpenAIAdam: barely changed by 1e-8, a near full first step of lr
    assert _one_step(OpenAIAdam, tiny).abs().item() > 0.9 * 0.01


@pytest.mark.parametrize("cls", OPTIMIZERS)
def test_each_gradient_is_clipped_on_its_own_and_in_place(cls):
    big, small = torch.zeros(4, requires_grad=True), torch.zeros(3, requires_grad=True)
    optimizer = cls([big, small], lr=0.01, max_grad_norm=1.0)
    big.grad = torch.tensor([3.0, 0.0, 4.0, 0.0])  # norm 5
    small.grad = torch.tensor([0.3, 0.0, -0.4])  # norm 0.5: a global norm would clip it too
    optimizer.step()
    assert big.grad.norm().item() == pytest.approx(1.0, rel=1e-5)
    assert torch.allclose(small.grad, torch.tensor([0.3, 0.0, -0.4]), rtol=1e-6)


def test_bertadam_decays_every_parameter_and_openai_adam_only_matrices_unless_vector_l2():
    def decayed(cls, **settings):
        matrix, vector = torch.ones(2, 2, requires_grad=True), torch.ones(3, requires_grad=True)
        optimizer = cls([matrix, vector], lr=0.1, schedule=None, weight_decay=0.5,
                        max_grad_norm=-1, **settings)
        matrix.grad, vector.grad = torch.zeros(2, 2), torch.zeros(3)  # only the decay moves them
        optimizer.step()
        return matrix.detach().flatten()[0].item(), vector.detach()[0].item()

    assert decayed(BertAdam) == pytest.approx((0.95, 0.95), rel=1e-6)  # 1 - lr * wd
    assert decayed(OpenAIAdam) == pytest.approx((0.95, 1.0), rel=1e-6)
    assert decayed(OpenAIAdam, vector_l2=True) == pytest.approx((0.95, 0.95), rel=1e-6)


def test_bertadam_reads_the_schedule_before_counting_the_step_and_openai_adam_after():
    def first_move(cls):
        p = torch.zeros(1, requires_grad=True)
        optimizer = cls([p], lr=0.1, warmup=0.5, t_total=10, weight_decay=0.0)
        p.grad = torch.ones(1)
        optimizer.step()
        return p.item(), optimizer.get_lr()

    moved, lrs = first_move(BertAdam)  # schedule at step 0 of warmup: multiplier 0
    assert moved == 0.0 and lrs == [pytest.approx(0.1 * 0.2)]  # next step is step 1
    moved, lrs = first_move(OpenAIAdam)  # schedule at step 1: multiplier 0.2
    assert moved == pytest.approx(-0.1 * 0.2, rel=1e-6) and lrs == [pytest.approx(0.1 * 0.2)]


@pytest.mark.parametrize("cls", OPTIMIZERS)
def test_parameters_without_gradient_are_left_alone(cls):
    used, unused = torch.zeros(2, requires_grad=True), torch.ones(2, requires_grad=True)
    optimizer = cls([used, unused], lr=0.1, schedule=None)
    used.grad = torch.ones(2)
    optimizer.step()
    assert torch.equal(unused.detach(), torch.ones(2)) and not optimizer.state[unused]
    assert optimizer.get_lr() == [0]  # 0.6.2: [0] while any parameter has not stepped


@pytest.mark.parametrize("cls", OPTIMIZERS)
def test_step_returns_the_closures_loss(cls):
    w = torch.zeros(2, requires_grad=True)
    optimizer = cls([w], lr=0.1, schedule=None)

    def closure():
        optimizer.zero_grad()
        loss = ((w - 1) ** 2).sum()
        loss.backward()
        return loss

    assert optimizer.step(closure).item() == 2.0 and w.detach()[0].item() > 0


@pytest.mark.parametrize("cls", OPTIMIZERS)
def test_sparse_gradients_are_refused(cls):
    emb = torch.nn.Embedding(5, 2, sparse=True)
    optimizer = cls(emb.parameters(), lr=0.1)
    emb(torch.tensor([1, 2])).sum().backward()
    with pytest.raises(SparseGradientError) as raised:
        optimizer.step()
    assert isinstance(raised.value, RuntimeError)


@pytest.mark.parametrize("kwargs", [dict(lr=float("nan")), dict(lr=float("inf")),
                                    dict(weight_decay=float("nan")),
                                    dict(max_grad_norm=float("nan")), dict(t_total=0),
                                    dict(schedule=["warmup_linear"])], ids=repr)
@pytest.mark.parametrize("cls", OPTIMIZERS)
def test_settings_062_trained_on_silently_are_refused(cls, kwargs):
    settings = {"lr": 0.01, "warmup": 0.1, "t_total": 100, **kwargs}
    with pytest.raises(OptimizerArgumentError, match="Invalid"):
        cls([torch.zeros(2, requires_grad=True)], **settings)


def _train(optimizer, params, gradients):
    for grads in gradients:
        for p, g in zip(params, grads):
            p.grad = g.clone()
        optimizer.step()


@pytest.mark.parametrize("cls", OPTIMIZERS)
def test_state_dict_round_trip_resumes_exactly(cls):
    gen = torch.Generator().manual_seed(3)
    start = [torch.randn(3, 2, generator=gen), torch.randn(2, generator=gen)]
    gradients = [[torch.randn(3, 2, generator=gen), torch.randn(2, generator=gen)]
                 for _ in range(40)]

    def build(params):
        return cls([{"params": params[:1]}, {"params": params[1:], "weight_decay": 0.0}],
                   lr=0.05, warmup=0.1, t_total=40, weight_decay=0.01, max_grad_norm=1.0)

    straight = [p.clone().requires_grad_(True) for p in start]
    _train(build(straight), straight, gradients)

    first = [p.clone().requires_grad_(True) for p in start]
    optimizer = build(first)
    _train(optimizer, first, gradients[:20])
    buffer = io.BytesIO()
    torch.save({"params": [p.detach() for p in first], "optimizer": optimizer.state_dict()},
               buffer)
    buffer.seek(0)
    # the state holds the schedule object (as 0.6.2's did); torch.load's safe default
    # (weights_only) accepts our schedule classes
    saved = torch.load(buffer, weights_only=True)
    resumed = [p.clone().requires_grad_(True) for p in saved["params"]]
    optimizer = build(resumed)
    optimizer.load_state_dict(saved["optimizer"])
    assert [optimizer.state[p]["step"] for p in resumed] == [20, 20]
    multiplier = WarmupLinearSchedule(warmup=0.1, t_total=40).get_lr(20)
    assert optimizer.get_lr() == [pytest.approx(0.05 * multiplier)] * 2
    _train(optimizer, resumed, gradients[20:])
    # the same operations on the same restored numbers: any difference is lost state
    for a, b in zip(resumed, straight):
        assert torch.equal(a.detach(), b.detach())


@pytest.mark.parametrize("kind", ["ConstantLR", "WarmupConstantSchedule", "WarmupLinearSchedule",
                                  "WarmupCosineSchedule", "WarmupCosineWithHardRestartsSchedule",
                                  "WarmupCosineWithWarmupRestartsSchedule"])
def test_every_schedule_survives_torch_load_with_weights_only(kind):
    schedule = getattr(bertconvert.optimization, kind)(warmup=0.1, t_total=50)
    p = torch.zeros(2, requires_grad=True)
    optimizer = BertAdam([p], lr=0.1, schedule=schedule)
    buffer = io.BytesIO()
    torch.save(optimizer.state_dict(), buffer)
    buffer.seek(0)
    loaded = torch.load(buffer, weights_only=True)["param_groups"][0]["schedule"]
    assert type(loaded) is type(schedule) and vars(loaded) == vars(schedule)
    assert [loaded.get_lr(s) for s in range(0, 50, 7)] == [schedule.get_lr(s)
                                                            for s in range(0, 50, 7)]
