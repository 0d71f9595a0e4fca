"""BertAdam and OpenAIAdam against pytorch-pretrained-bert 0.6.2's (from PyPI, test-only), step
by step: same parameters, same gradients, 100 steps, every schedule.

0.6.2's optimizers run unmodified. They call overloads torch has deprecated
(``add_(scalar, tensor)``, ``addcmul_(scalar, t1, t2)``, ``addcdiv_(scalar, t1, t2)``), which
torch 2.x still accepts with a ``UserWarning``: that warning is silenced here, nothing else.

Tolerance (fp32): each step rounds a parameter (or a moment estimate) in its last one or two
operations, so two implementations whose kernels rounded differently could part by about
2 ulp of the value per step. The differences do not feed back -- both sides get the same
gradient tensors, and the parameter enters its own update only through weight decay, scaled by
``lr * weight_decay`` << 1 -- so after ``STEPS`` steps they are at most
``STEPS * 2 * eps(fp32) * max|value|``. The learning rates are Python floats computed by the
same formulas (float64: compared to 1e-12 relative). Measured: 0.0 everywhere (the same
operations in the same order give the same bits).
"""
import logging
import math

import pytest
import torch

pytest.importorskip("pytorch_pretrained_bert")
from pytorch_pretrained_bert import optimization as ref_opt  # noqa: E402
from pytorch_pretrained_bert import optimization_openai as ref_openai  # noqa: E402

from bertconvert import optimization as our_opt  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore:This overload of:UserWarning")

STEPS = 100
T_TOTAL = 80  # shorter than STEPS: the last 20 steps train past t_total (and warn)
EPS32 = torch.finfo(torch.float32).eps

#: (schedule argument builder, optimizer keywords); the builder gets the library's module
SCHEDULE_CASES = {
    "name None": (lambda m: None, dict(warmup=0.1, t_total=T_TOTAL)),
    "name none": (lambda m: "none", dict(warmup=0.1, t_total=T_TOTAL)),
    "name warmup_linear": (lambda m: "warmup_linear", dict(warmup=0.1, t_total=T_TOTAL)),
    "name warmup_constant": (lambda m: "warmup_constant", dict(warmup=0.2, t_total=T_TOTAL)),
    "name warmup_cosine": (lambda m: "warmup_cosine", dict(warmup=0.15, t_total=T_TOTAL)),
    "warmup_linear, no t_total": (lambda m: "warmup_linear", dict()),
    "warmup_linear, no warmup": (lambda m: "warmup_linear", dict(warmup=-1, t_total=T_TOTAL)),
    "ConstantLR": (lambda m: m.ConstantLR(warmup=0.1, t_total=T_TOTAL), dict()),
    "WarmupConstantSchedule": (lambda m: m.WarmupConstantSchedule(warmup=0.1, t_total=T_TOTAL),
                               dict()),
    "WarmupLinearSchedule": (lambda m: m.WarmupLinearSchedule(warmup=0.25, t_total=T_TOTAL),
                             dict()),
    "WarmupCosineSchedule": (lambda m: m.WarmupCosineSchedule(warmup=0.1, t_total=T_TOTAL,
                                                              cycles=0.75), dict()),
    "WarmupCosineWithHardRestartsSchedule": (
        lambda m: m.WarmupCosineWithHardRestartsSchedule(warmup=0.1, t_total=T_TOTAL, cycles=3),
        dict()),
    "WarmupCosineWithWarmupRestartsSchedule": (
        lambda m: m.WarmupCosineWithWarmupRestartsSchedule(warmup=0.05, t_total=T_TOTAL,
                                                           cycles=4), dict()),
    "schedule object and ignored warmup/t_total": (
        lambda m: m.WarmupLinearSchedule(warmup=0.1, t_total=T_TOTAL), dict(warmup=0.5, t_total=7)),
}

SHAPES = [(6, 5), (5,), (3, 2, 2), (), (4,)]  # matrices, vectors ("biases"), a scalar


def _initial_params():
    gen = torch.Generator().manual_seed(7)
    return [torch.randn(shape, generator=gen) for shape in SHAPES]


def _gradients():
    """Per step, one gradient per parameter (None sometimes: a frozen or unused parameter),
    scaled so that some norms are far above max_grad_norm=1 (clipped) and some below."""
    gen = torch.Generator().manual_seed(11)
    steps = []
    for step in range(STEPS):
        grads = []
        for i, shape in enumerate(SHAPES):
            scale = float(torch.empty(()).uniform_(0.01, 4.0, generator=gen))
            g = torch.randn(shape, generator=gen) * scale
            grads.append(None if (step + i) % 17 == 5 else g)
        steps.append(grads)
    return steps


def _groups(params):
    # the fine-tuning scripts' two groups: decayed weights, and biases/norms without decay
    # (a decayed vector too: OpenAIAdam decays vectors only with vector_l2)
    return [{"params": [params[0], params[2], params[3], params[4]]},
            {"params": [params[1]], "weight_decay": 0.0}]


def _run(optimizer_class, schedule, settings, gradients, hook=None):
    params = [p.clone().requires_grad_(True) for p in _initial_params()]
    optimizer = optimizer_class(_groups(params), schedule=schedule, **settings)
    for step, grads in enumerate(gradients):
        for p, g in zip(params, grads):
            p.grad = None if g is None else g.clone()
        optimizer.step()
        if hook:
            hook(step, optimizer, params)
    return optimizer, params


def _close(ours, theirs, what):
    assert ours.shape == theirs.shape and ours.dtype == theirs.dtype
    tol = STEPS * 2 * EPS32 * max(theirs.abs().max().item(), ours.abs().max().item())
    diff = (ours - theirs).abs().max().item()
    assert diff <= tol, f"{what}: differs by {diff:.3g} > {tol:.3g}"
    return diff


def _compare_runs(ours_class, ref_class, case, optimizer_settings, moment_keys):
    build, settings = SCHEDULE_CASES[case]
    settings = {**optimizer_settings, **settings}
    gradients = _gradients()
    trace = {}

    def record(step, optimizer, params):
        trace.setdefault(step, []).append((optimizer.get_lr(), [p.detach().clone() for p in params],
                                           [None if p.grad is None else p.grad.clone()
                                            for p in params],
                                           [{k: optimizer.state[p][k].clone() for k in moment_keys}
                                            if optimizer.state[p] else None for p in params],
                                           [optimizer.state[p].get("step") for p in params]))

    _run(ref_class, build(ref_opt), settings, gradients, record)
    _run(ours_class, build(our_opt), settings, gradients, record)
    worst = 0.0
    for step, ((lr_ref, p_ref, g_ref, m_ref, n_ref), (lr, p, g, m, n)) in trace.items():
        assert n == n_ref, f"step {step}: step counts"
        assert len(lr) == len(lr_ref) and all(math.isclose(a, b, rel_tol=1e-12, abs_tol=1e-300)
                                              for a, b in zip(lr, lr_ref)), f"step {step}: get_lr"
        for i in range(len(SHAPES)):
            worst = max(worst, _close(p[i], p_ref[i], f"step {step}, parameter {i}"))
            assert (g[i] is None) == (g_ref[i] is None)
            if g[i] is not None:  # clipping scales p.grad in place, in both
                worst = max(worst, _close(g[i], g_ref[i], f"step {step}, clipped gradient {i}"))
            assert (m[i] is None) == (m_ref[i] is None)
            for key in moment_keys if m[i] is not None else ():
                worst = max(worst, _close(m[i][key], m_ref[i][key], f"step {step}, {key} {i}"))
    return worst


@pytest.mark.parametrize("case", sorted(SCHEDULE_CASES))
def test_bertadam_takes_062s_steps_under_every_schedule(case):
    _compare_runs(our_opt.BertAdam, ref_opt.BertAdam, case,
                  dict(lr=0.05, b1=0.9, b2=0.999, e=1e-6, weight_decay=0.01, max_grad_norm=1.0),
                  ("next_m", "next_v"))


@pytest.mark.parametrize("case", sorted(SCHEDULE_CASES))
def test_openai_adam_takes_062s_steps_under_every_schedule(case):
    _compare_runs(our_opt.OpenAIAdam, ref_openai.OpenAIAdam, case,
                  dict(lr=0.05, weight_decay=0.02, vector_l2=False, max_grad_norm=1.0),
                  ("exp_avg", "exp_avg_sq"))


@pytest.mark.parametrize("settings", [
    dict(),  # 0.6.2's defaults: no decay, no clipping
    dict(vector_l2=True, weight_decay=0.1, b1=0.5, b2=0.9, e=1e-3),
], ids=["defaults", "vector_l2"])
def test_openai_adam_takes_062s_steps_with_its_other_settings(settings):
    _compare_runs(our_opt.OpenAIAdam, ref_openai.OpenAIAdam, "name warmup_cosine",
                  dict(lr=0.05, **settings), ("exp_avg", "exp_avg_sq"))


def test_bertadam_with_its_defaults_and_no_clipping_takes_062s_steps():
    _compare_runs(our_opt.BertAdam, ref_opt.BertAdam, "name warmup_linear",
                  dict(lr=1e-3, max_grad_norm=-1), ("next_m", "next_v"))


@pytest.mark.parametrize("ours, theirs", [(our_opt.BertAdam, ref_opt.BertAdam),
                                          (our_opt.OpenAIAdam, ref_openai.OpenAIAdam)],
                         ids=["BertAdam", "OpenAIAdam"])
def test_get_lr_before_the_first_step_is_062s(ours, theirs):
    for cls in (ours, theirs):
        p = torch.zeros(2, requires_grad=True)
        assert cls([p], lr=0.1, warmup=0.1, t_total=10).get_lr() == [0]


def _schedule_values(module, case, steps):
    schedule = SCHEDULE_CASES[case][0](module)
    return [schedule.get_lr(s, nowarn=True) for s in steps]


@pytest.mark.parametrize("case", ["ConstantLR", "WarmupConstantSchedule", "WarmupLinearSchedule",
                                  "WarmupCosineSchedule", "WarmupCosineWithHardRestartsSchedule",
                                  "WarmupCosineWithWarmupRestartsSchedule"])
def test_schedule_values_equal_062s_on_a_fine_grid(case):
    steps = [s / 4 for s in range(0, 4 * 120)]  # fractional steps too (0.6.2's scripts pass them)
    assert _schedule_values(our_opt, case, steps) == _schedule_values(ref_opt, case, steps)


@pytest.mark.parametrize("ours, theirs", [(our_opt.BertAdam, ref_opt.BertAdam),
                                          (our_opt.OpenAIAdam, ref_openai.OpenAIAdam)],
                         ids=["BertAdam", "OpenAIAdam"])
def test_training_past_t_total_warns_at_the_same_steps_as_062(ours, theirs, caplog):
    def warned_steps(cls):
        caplog.clear()
        p = torch.zeros(3, requires_grad=True)
        optimizer = cls([p], lr=0.1, warmup=0.1, t_total=10)
        steps = []
        for step in range(14):
            p.grad = torch.ones(3)
            with caplog.at_level(logging.WARNING):
                optimizer.step()
            if any("Training beyond specified 't_total'" in r.getMessage() for r in caplog.records):
                steps.append(step)
            caplog.clear()
        return steps

    theirs_warned = warned_steps(theirs)
    assert theirs_warned  # the comparison means something: 0.6.2 does warn here
    assert warned_steps(ours) == theirs_warned


@pytest.mark.parametrize("kwargs", [
    dict(lr=-0.001), dict(lr=-1e-30),
    dict(warmup=1.0), dict(warmup=1.5), dict(warmup=-0.5), dict(warmup=-2),
    dict(schedule="warmup_linearr"), dict(schedule="WarmupLinearSchedule"),
    dict(b1=1.0), dict(b1=-0.1), dict(b1=float("nan")),
    dict(b2=1.0), dict(b2=-1e-9),
    dict(e=-1e-8), dict(e=float("nan")),
], ids=repr)
@pytest.mark.parametrize("name", ["BertAdam", "OpenAIAdam"])
def test_bad_settings_raise_valueerror_as_062s(name, kwargs):
    """Whatever 0.6.2 refuses with ValueError, so do we (t_total > 0 in every case)."""
    theirs = ref_opt.BertAdam if name == "BertAdam" else ref_openai.OpenAIAdam
    settings = {"lr": 0.01, "warmup": 0.1, "t_total": 100, **kwargs}
    with pytest.raises(ValueError):
        theirs([torch.zeros(2, requires_grad=True)], **settings)
    with pytest.raises(ValueError) as raised:
        getattr(our_opt, name)([torch.zeros(2, requires_grad=True)], **settings)
    assert type(raised.value).__name__ == "OptimizerArgumentError"


@pytest.mark.parametrize("kwargs", [dict(lr=0.0), dict(warmup=0.0), dict(warmup=-1),
                                    dict(warmup=0.999), dict(b1=0.0, b2=0.0), dict(e=0.0),
                                    dict(schedule=None), dict(t_total=-1)], ids=repr)
@pytest.mark.parametrize("name", ["BertAdam", "OpenAIAdam"])
def test_settings_062_accepts_are_accepted(name, kwargs):
    theirs = ref_opt.BertAdam if name == "BertAdam" else ref_openai.OpenAIAdam
    settings = {"lr": 0.01, "warmup": 0.1, "t_total": 100, **kwargs}
    theirs([torch.zeros(2, requires_grad=True)], **settings)
    getattr(our_opt, name)([torch.zeros(2, requires_grad=True)], **settings)


def test_bertadam_without_lr_is_refused_like_062s():
    for cls in (ref_opt.BertAdam, our_opt.BertAdam):
        with pytest.raises(ValueError, match="lr"):
            cls([torch.zeros(2, requires_grad=True)])


@pytest.mark.parametrize("name", ["BertAdam", "ConstantLR", "WarmupConstantSchedule",
                                  "WarmupLinearSchedule", "WarmupCosineSchedule",
                                  "WarmupCosineWithHardRestartsSchedule",
                                  "WarmupCosineWithWarmupRestartsSchedule", "OpenAIAdam"])
def test_arguments_order_and_defaults_are_062s(name):
    """Ported code passes these positionally and relies on the defaults."""
    import inspect

    theirs = getattr(ref_openai if name == "OpenAIAdam" else ref_opt, name)
    ours = getattr(our_opt, name)

    def shape(cls):
        return [(p.name, p.kind, p.default) for p in inspect.signature(cls.__init__).parameters.values()]

    assert shape(ours) == shape(theirs)
    assert [n for n in dir(theirs) if not n.startswith("__")] == \
        [n for n in dir(ours) if not n.startswith("__") and n != "_update"]
