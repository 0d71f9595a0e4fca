"""``BertAdam``: the optimizer BERT was fine-tuned with, as pytorch-pretrained-bert 0.6.2 has it.

Adam with decoupled weight decay and *no bias correction* (the first steps are small: the
moment estimates start at zero and are not rescaled), each parameter's gradient clipped to
norm ``max_grad_norm`` on its own (not the global norm), and the learning rate multiplied by a
schedule (:mod:`bertconvert.training.schedules`) at each step. Its results equal 0.6.2's
step for step: the arithmetic below is 0.6.2's, operation by operation, in the same order.
"""
import torch
from torch.nn.utils import clip_grad_norm_
from torch.optim import Optimizer
from torch.optim.optimizer import required

from ..errors import SparseGradientError
from .adam_settings import PerParameterStep, check_adam_settings, scheduled_lrs


class BertAdam(PerParameterStep, Optimizer):
    """BERT's Adam, with 0.6.2's arguments and defaults.

    ``lr``: the base learning rate. ``warmup``: fraction of ``t_total`` spent warming up
    (-1: none). ``t_total``: the planned number of updates (-1: the rate stays ``lr``).
    ``schedule``: ``'warmup_linear'`` (default), ``'warmup_constant'``, ``'warmup_cosine'``,
    ``'none'``/``None``, or a schedule object (then ``warmup``/``t_total`` here are ignored).
    ``b1``, ``b2``, ``e``: Adam's betas and epsilon. ``weight_decay``: decoupled decay added
    to the update (0 or less: none). ``max_grad_norm``: per-parameter clipping norm (0 or
    less: none). Bad values raise :class:`~bertconvert.errors.OptimizerArgumentError`, a
    ``ValueError``.

    Example::

        optimizer = BertAdam(model.parameters(), lr=5e-5, warmup=0.1, t_total=1000)
    """

    def __init__(self, params, lr=required, warmup=-1, t_total=-1, schedule="warmup_linear",
                 b1=0.9, b2=0.999, e=1e-6, weight_decay=0.01, max_grad_norm=1.0, **kwargs):
        schedule = check_adam_settings(lr, schedule, warmup, t_total, b1, b2, e,
                                       weight_decay, max_grad_norm)
        defaults = dict(lr=lr, schedule=schedule, b1=b1, b2=b2, e=e,
                        weight_decay=weight_decay, max_grad_norm=max_grad_norm)
        super().__init__(params, defaults)

    def get_lr(self):
        """The scheduled learning rate of each parameter for its next step (``[0]`` before
        the first step)."""
        return scheduled_lrs(self)

    def _update(self, p, group):
        # Clipping scales ``p.grad`` in place, as 0.6.2 did.
        grad = p.grad
        if grad.is_sparse:
            raise SparseGradientError("BertAdam does not support sparse gradients: "
                                      "use torch.optim.SparseAdam for sparse parameters")
        state = self.state[p]
        if len(state) == 0:
            state["step"] = 0
            state["next_m"] = torch.zeros_like(p)  # first moment (mean of gradients)
            state["next_v"] = torch.zeros_like(p)  # second moment (mean of squared gradients)
        next_m, next_v = state["next_m"], state["next_v"]
        if group["max_grad_norm"] > 0:
            clip_grad_norm_(p, group["max_grad_norm"])  # scales p.grad, so `grad`, in place
        next_m.mul_(group["b1"]).add_(grad, alpha=1 - group["b1"])
        next_v.mul_(group["b2"]).addcmul_(grad, grad, value=1 - group["b2"])
        update = next_m / (next_v.sqrt() + group["e"])
        # Decoupled weight decay: added to the update rather than to the loss, so that it
        # does not pass through (and get rescaled by) the moment estimates.
        if group["weight_decay"] > 0.0:
            update += group["weight_decay"] * p
        # the schedule is read at the count of steps taken *before* this one (0 first)
        lr_scheduled = group["lr"] * group["schedule"].get_lr(state["step"])
        # multiply, then subtract: 0.6.2's two roundings (add_(alpha=) would fuse them)
        p.add_(-(lr_scheduled * update))
        state["step"] += 1
