"""Learning-rate schedules of pytorch-pretrained-bert 0.6.2, with its names and numbers.

A schedule maps the optimizer's step count to a multiplier of the base learning rate. It is
built from ``warmup`` (the fraction of ``t_total`` spent rising linearly from 0 to 1) and
``t_total`` (the planned number of updates; negative means "no schedule": the multiplier is
1 throughout). Every value below is 0.6.2's formula, evaluated in Python floats in the same
order, so an optimizer using these schedules takes 0.6.2's steps exactly.

Pure Python: no torch needed to evaluate a schedule.
"""
import abc
import logging
import math

from ..errors import OptimizerArgumentError

logger = logging.getLogger(__name__)


def _check_warmup(warmup):
    """0.6.2's rule: a fraction in [0, 1), or -1 for "no warmup"."""
    if not 0.0 <= warmup < 1.0 and not warmup == -1:
        raise OptimizerArgumentError(f"Invalid warmup: {warmup} - should be in [0.0, 1.0[ or -1")


def _check_t_total(t_total):
    # 0.6.2 accepted these and then divided by them at the first step (ZeroDivisionError,
    # or a NaN learning rate): refused up front instead.
    if t_total == 0 or t_total != t_total or math.isinf(t_total):
        raise OptimizerArgumentError(
            f"Invalid t_total: {t_total} - should be the number of training steps (> 0), "
            "or -1 for a constant learning rate")


class _LRSchedule(abc.ABC):
    """Base of every schedule: ``get_lr(step)`` is the learning-rate multiplier at ``step``.

    Subclasses define ``get_lr_(progress)``, the multiplier as a function of
    ``progress = step / t_total``. ``warn_t_total`` marks schedules for which training past
    ``t_total`` makes no sense (the rate has decayed to 0): those log a warning each time a
    step beyond it is asked for.
    """

    warn_t_total = False

    def __init__(self, warmup=0.002, t_total=-1, **kw):
        """``warmup``: fraction of ``t_total`` spent warming up (-1: none); ``t_total``: the
        planned number of updates (negative: the schedule is not applied)."""
        super().__init__(**kw)
        if t_total < 0:
            logger.warning("t_total value of %s results in schedule not being applied", t_total)
        _check_warmup(warmup)
        _check_t_total(t_total)
        self.warmup = float(max(warmup, 0.0))
        self.t_total = float(t_total)
        # the progress last warned about, so that one step past t_total warns once
        self.warned_for_t_total_at_progress = -1

    def get_lr(self, step, nowarn=False):
        """The learning-rate multiplier for update number ``step`` (counted from 0).

        ``nowarn=True`` suppresses the warning about training beyond ``t_total``."""
        if self.t_total < 0:
            return 1.0
        progress = float(step) / self.t_total
        value = self.get_lr_(progress)
        if (not nowarn and self.warn_t_total and progress > 1.0
                and progress > self.warned_for_t_total_at_progress):
            logger.warning("Training beyond specified 't_total'. Learning rate multiplier set to %s. "
                           "Please set 't_total' of %s correctly.", value, type(self).__name__)
            self.warned_for_t_total_at_progress = progress
        return value

    @abc.abstractmethod
    def get_lr_(self, progress):
        """The multiplier at ``progress`` (0 at the start, 1 at ``t_total``, may exceed 1)."""


def _warming(progress, warmup):
    """The linear ramp 0 -> 1 over the first ``warmup`` of training, or None after it."""
    return progress / warmup if progress < warmup else None


class ConstantLR(_LRSchedule):
    """Multiplier 1 at every step: the base learning rate throughout."""

    def get_lr_(self, progress):
        """Always 1."""
        return 1.0


class WarmupConstantSchedule(_LRSchedule):
    """Linear warmup from 0 to 1, then 1 for the rest of training."""

    def get_lr_(self, progress):
        """Ramp, then 1."""
        ramp = _warming(progress, self.warmup)
        return 1.0 if ramp is None else ramp


class WarmupLinearSchedule(_LRSchedule):
    """Linear warmup from 0 to 1, then linear decay to 0 at ``t_total`` (0 after it)."""

    warn_t_total = True

    def get_lr_(self, progress):
        """Ramp, then the straight line from (warmup, 1) to (1, 0), floored at 0."""
        ramp = _warming(progress, self.warmup)
        if ramp is not None:
            return ramp
        return max((progress - 1.0) / (self.warmup - 1.0), 0.0)


class WarmupCosineSchedule(_LRSchedule):
    """Linear warmup from 0 to 1, then a cosine: with ``cycles=0.5`` (the default) half a
    period, from 1 at the end of warmup to 0 at ``t_total``."""

    warn_t_total = True

    def __init__(self, warmup=0.002, t_total=-1, cycles=0.5, **kw):
        """``cycles``: how many cosine periods fit between the end of warmup and ``t_total``."""
        super().__init__(warmup=warmup, t_total=t_total, **kw)
        self.cycles = cycles

    def get_lr_(self, progress):
        """Ramp, then ``(1 + cos(2 pi cycles p)) / 2`` of the progress ``p`` after warmup."""
        ramp = _warming(progress, self.warmup)
        if ramp is not None:
            return ramp
        after = (progress - self.warmup) / (1 - self.warmup)
        return 0.5 * (1.0 + math.cos(math.pi * self.cycles * 2 * after))


def _check_cycles(cycles):
    # 0.6.2 asserted this (AssertionError, gone under python -O): a named ValueError here
    if not cycles >= 1.0:
        raise OptimizerArgumentError(f"Invalid cycles: {cycles} - should be >= 1")


class WarmupCosineWithHardRestartsSchedule(WarmupCosineSchedule):
    """Linear warmup from 0 to 1, then ``cycles`` (default 1) cosine decays from 1 to 0,
    each restarting at 1 without warmup."""

    def __init__(self, warmup=0.002, t_total=-1, cycles=1.0, **kw):
        """``cycles`` >= 1: the number of decays after warmup."""
        _check_cycles(cycles)
        super().__init__(warmup=warmup, t_total=t_total, cycles=cycles, **kw)

    def get_lr_(self, progress):
        """Ramp, then half a cosine period over each of the ``cycles`` parts."""
        ramp = _warming(progress, self.warmup)
        if ramp is not None:
            return ramp
        after = (progress - self.warmup) / (1 - self.warmup)
        return 0.5 * (1.0 + math.cos(math.pi * ((self.cycles * after) % 1)))


class WarmupCosineWithWarmupRestartsSchedule(WarmupCosineWithHardRestartsSchedule):
    """Training split into ``cycles`` equal parts, each a linear warmup over its first
    ``warmup`` fraction followed by a cosine decay from 1 to 0."""

    def __init__(self, warmup=0.002, t_total=-1, cycles=1.0, **kw):
        """``warmup`` is a fraction of each part, so ``warmup * cycles`` must stay below 1."""
        if not warmup * cycles < 1.0:
            raise OptimizerArgumentError(
                f"Invalid warmup {warmup} with cycles {cycles}: warmup * cycles should be < 1")
        # stored as a fraction of one part: the formula below works on progress within a part
        warmup = warmup * cycles if warmup >= 0 else warmup
        super().__init__(warmup=warmup, t_total=t_total, cycles=cycles, **kw)

    def get_lr_(self, progress):
        """Within each part: ramp, then half a cosine period."""
        within = progress * self.cycles % 1.0
        ramp = _warming(within, self.warmup)
        if ramp is not None:
            return ramp
        after = (within - self.warmup) / (1 - self.warmup)
        return 0.5 * (1.0 + math.cos(math.pi * after))


#: schedule names accepted by the optimizers' ``schedule`` argument (0.6.2's table)
SCHEDULES = {
    None: ConstantLR,
    "none": ConstantLR,
    "warmup_cosine": WarmupCosineSchedule,
    "warmup_constant": WarmupConstantSchedule,
    "warmup_linear": WarmupLinearSchedule,
}


def resolve_schedule(schedule, warmup, t_total):
    """The schedule object an optimizer uses: ``schedule`` itself when it is one (then
    ``warmup``/``t_total`` are ignored, with a warning if set), else the ``SCHEDULES`` entry
    of that name built with ``warmup`` and ``t_total``."""
    if isinstance(schedule, _LRSchedule):
        if warmup != -1 or t_total != -1:
            logger.warning("warmup and t_total on the optimizer are ineffective when _LRSchedule "
                           "object is provided as schedule. Please specify custom warmup and "
                           "t_total in _LRSchedule object.")
        return schedule
    try:
        kind = SCHEDULES[schedule]
    except (KeyError, TypeError):  # TypeError: an unhashable value (a list, a dict)
        raise OptimizerArgumentError(
            f"Invalid schedule parameter: {schedule!r} - should be an _LRSchedule object or one "
            f"of {sorted(SCHEDULES, key=str)}") from None
    return kind(warmup=warmup, t_total=t_total)
