"""What BertAdam and OpenAIAdam share: checking their settings and reporting their scheduled
learning rates, with pytorch-pretrained-bert 0.6.2's rules and messages."""
import math

import torch
from torch.optim.optimizer import required

from ..errors import OptimizerArgumentError
from . import schedules
from .schedules import SCHEDULES, _LRSchedule, resolve_schedule

# An optimizer's state_dict holds its schedule object (as 0.6.2's did). Our schedules are
# plain data (a few numbers), so torch.load's default safe unpickler (weights_only=True) may
# rebuild them: a saved optimizer state reloads without weights_only=False.
torch.serialization.add_safe_globals(
    [kind for kind in vars(schedules).values()
     if isinstance(kind, type) and issubclass(kind, _LRSchedule) and kind is not _LRSchedule])


def _is_number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def check_adam_settings(lr, schedule, warmup, t_total, b1, b2, e, weight_decay, max_grad_norm):
    """The schedule object to use, after refusing bad settings with
    :class:`~bertconvert.errors.OptimizerArgumentError` (a ``ValueError``).

    0.6.2's checks come first, in its order and with its messages: ``lr < 0``, an unknown
    schedule name, ``b1``/``b2`` outside [0, 1), ``e < 0``, then the schedule's own
    (``warmup`` outside [0, 1) unless -1). Ours follow: a NaN or infinite ``lr``, and a NaN
    ``weight_decay`` or ``max_grad_norm`` (0.6.2 silently trained with those switched off).
    """
    if lr is not required and lr < 0.0:
        raise OptimizerArgumentError(f"Invalid learning rate: {lr} - should be >= 0.0")
    if not isinstance(schedule, _LRSchedule):
        try:
            known = schedule in SCHEDULES
        except TypeError:  # unhashable
            known = False
        if not known:
            raise OptimizerArgumentError(f"Invalid schedule parameter: {schedule}")
    if not 0.0 <= b1 < 1.0:
        raise OptimizerArgumentError(f"Invalid b1 parameter: {b1} - should be in [0.0, 1.0[")
    if not 0.0 <= b2 < 1.0:
        raise OptimizerArgumentError(f"Invalid b2 parameter: {b2} - should be in [0.0, 1.0[")
    if not e >= 0.0:
        raise OptimizerArgumentError(f"Invalid epsilon value: {e} - should be >= 0.0")
    if lr is not required and _is_number(lr) and not math.isfinite(lr):
        raise OptimizerArgumentError(f"Invalid learning rate: {lr} - should be a finite number")
    for name, value in (("weight_decay", weight_decay), ("max_grad_norm", max_grad_norm)):
        if _is_number(value) and math.isnan(value):
            raise OptimizerArgumentError(f"Invalid {name}: {value} - should be a number")
    return resolve_schedule(schedule, warmup, t_total)


def scheduled_lrs(optimizer):
    """0.6.2's ``get_lr()``: the scheduled learning rate of each parameter, at the step count
    its state records -- or ``[0]`` as soon as one parameter has taken no step yet."""
    rates = []
    for group in optimizer.param_groups:
        for p in group["params"]:
            state = optimizer.state[p]
            if len(state) == 0:
                return [0]
            rates.append(group["lr"] * group["schedule"].get_lr(state["step"]))
    return rates


class PerParameterStep:
    """The ``step()`` BertAdam and OpenAIAdam share (both 0.6.2's): evaluate ``closure`` with
    gradients on, then ``self._update(p, group)`` for every parameter that has a gradient."""

    @torch.no_grad()
    def step(self, closure=None):
        """One update of every parameter that has a gradient; returns ``closure()``'s loss."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is not None:
                    self._update(p, group)
        return loss
