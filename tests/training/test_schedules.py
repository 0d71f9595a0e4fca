"""The learning-rate schedules' values, from their definitions (0.6.2's formulas), and their
refusals. Values are Python floats: compared to 1e-12 (a handful of float64 roundings)."""
import logging
import math

import pytest

from bertconvert.errors import OptimizerArgumentError
from bertconvert.optimization import (SCHEDULES, ConstantLR, WarmupConstantSchedule,
                                      WarmupCosineSchedule, WarmupCosineWithHardRestartsSchedule,
                                      WarmupCosineWithWarmupRestartsSchedule, WarmupLinearSchedule,
                                      _LRSchedule)


def approx(x):
    return pytest.approx(x, rel=1e-12, abs=1e-12)


def values(schedule, steps):
    return [schedule.get_lr(s, nowarn=True) for s in steps]


def test_warmup_linear_rises_then_falls_to_zero_and_stays_there():
    s = WarmupLinearSchedule(warmup=0.2, t_total=100)
    assert values(s, [0, 10, 20, 60, 90, 100, 130]) == approx([0, 0.5, 1, 0.5, 0.125, 0, 0])


def test_warmup_constant_rises_then_holds_one_even_past_t_total():
    s = WarmupConstantSchedule(warmup=0.1, t_total=200)
    assert values(s, [0, 5, 10, 19, 20, 100, 200, 500]) == approx([0, .25, .5, .95, 1, 1, 1, 1])


def test_warmup_cosine_is_half_a_period_from_the_end_of_warmup_to_t_total():
    s = WarmupCosineSchedule(warmup=0.2, t_total=100)
    assert values(s, [10, 20, 40, 60, 80, 100]) == approx(
        [0.5, 1, 0.5 * (1 + math.cos(math.pi / 4)), 0.5, 0.5 * (1 + math.cos(3 * math.pi / 4)), 0])


def test_warmup_cosine_with_more_cycles_goes_back_up():
    s = WarmupCosineSchedule(warmup=0.0, t_total=100, cycles=1.0)
    assert values(s, [0, 50, 100]) == approx([1, 0, 1])


def test_hard_restarts_jump_back_to_one_without_warmup():
    # binary-exact numbers (at a restart, a rounding of `progress` decides between 0 and 1)
    s = WarmupCosineWithHardRestartsSchedule(warmup=0.25, t_total=80, cycles=2)
    # after 20 steps of warmup, two decays of 30 steps each: 20..50 and 50..80
    assert values(s, [10, 20, 35, 50, 65]) == approx([0.5, 1, 0.5, 1, 0.5])
    assert s.get_lr(49.99, nowarn=True) < 1e-6 and s.get_lr(79.99, nowarn=True) < 1e-6


def test_warmup_restarts_warm_up_again_in_every_cycle():
    # 4 cycles of 200 steps; warmup is a fraction of the whole (0.1 * 800 = 80 steps per cycle)
    s = WarmupCosineWithWarmupRestartsSchedule(warmup=0.1, t_total=800, cycles=4)
    starts = [0, 200, 400, 600]
    assert values(s, starts) == approx([0, 0, 0, 0])
    assert values(s, [c + 40 for c in starts]) == approx([0.5] * 4)
    assert values(s, [c + 80 for c in starts]) == approx([1] * 4)
    assert values(s, [c + 140 for c in starts]) == approx([0.5] * 4)
    assert all(v < 1e-3 for v in values(s, [c + 199 for c in starts]))


def test_constant_and_no_t_total_mean_multiplier_one():
    assert values(ConstantLR(warmup=0.5, t_total=10), [0, 3, 10, 99]) == [1, 1, 1, 1]
    for kind in (WarmupLinearSchedule, WarmupCosineSchedule, WarmupConstantSchedule):
        assert values(kind(warmup=0.5, t_total=-1), [0, 1, 1000]) == [1, 1, 1]


def test_no_warmup_starts_at_the_top():
    assert WarmupLinearSchedule(warmup=-1, t_total=10).get_lr(0) == 1.0
    assert WarmupLinearSchedule(warmup=-1, t_total=10).warmup == 0.0


def test_the_name_table_is_062s():
    assert SCHEDULES == {None: ConstantLR, "none": ConstantLR, "warmup_cosine": WarmupCosineSchedule,
                         "warmup_constant": WarmupConstantSchedule,
                         "warmup_linear": WarmupLinearSchedule}
    assert all(issubclass(k, _LRSchedule) for k in SCHEDULES.values())
    with pytest.raises(TypeError):
        _LRSchedule()  # abstract: a schedule says what its multiplier is


def test_past_t_total_decaying_schedules_warn_once_per_new_step(caplog):
    s = WarmupLinearSchedule(warmup=0.1, t_total=10)
    with caplog.at_level(logging.WARNING, logger="bertconvert.training.schedules"):
        for step in (9, 10, 11, 11, 12, 12.5, 3):
            s.get_lr(step)
        s.get_lr(20, nowarn=True)
    warned = [r.getMessage() for r in caplog.records if "beyond specified 't_total'" in r.getMessage()]
    assert len(warned) == 3  # 11, 12, 12.5: not 10 (= t_total), not 11 again, not when nowarn
    assert "WarmupLinearSchedule" in warned[0] and "multiplier set to 0" in warned[0]


def test_schedules_that_make_sense_past_t_total_do_not_warn(caplog):
    with caplog.at_level(logging.WARNING):
        WarmupConstantSchedule(warmup=0.1, t_total=10).get_lr(50)
        ConstantLR(t_total=10).get_lr(50)
    assert not caplog.records


def test_a_negative_t_total_is_announced(caplog):
    with caplog.at_level(logging.WARNING):
        WarmupLinearSchedule(warmup=0.1, t_total=-1)
    assert "schedule not being applied" in caplog.text


@pytest.mark.parametrize("build", [
    lambda: WarmupLinearSchedule(warmup=1.0, t_total=10),
    lambda: WarmupLinearSchedule(warmup=-0.1, t_total=10),
    lambda: WarmupCosineSchedule(warmup=float("nan"), t_total=10),
    # ours (0.6.2 divided by zero or returned NaN at the first step)
    lambda: WarmupLinearSchedule(warmup=0.1, t_total=0),
    lambda: WarmupLinearSchedule(warmup=0.1, t_total=float("nan")),
    lambda: WarmupLinearSchedule(warmup=0.1, t_total=float("inf")),
    # ours (0.6.2 asserted)
    lambda: WarmupCosineWithHardRestartsSchedule(warmup=0.1, t_total=10, cycles=0.5),
    lambda: WarmupCosineWithWarmupRestartsSchedule(warmup=0.25, t_total=10, cycles=4),
], ids=["warmup 1", "warmup -0.1", "warmup nan", "t_total 0", "t_total nan", "t_total inf",
        "hard restarts cycles 0.5", "warmup*cycles 1"])
def test_bad_schedule_settings_are_refused_with_a_valueerror(build):
    with pytest.raises(OptimizerArgumentError) as raised:
        build()
    assert isinstance(raised.value, ValueError)
