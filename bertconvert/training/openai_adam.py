"""``OpenAIAdam``: the Adam variant of OpenAI's GPT, as pytorch-pretrained-bert 0.6.2 has it.

Unlike :class:`~bertconvert.training.bertadam.BertAdam` it *does* correct the moment
estimates' bias, its epsilon is added after the square root (``1e-8`` by default), weight
decay (off by default) is applied to the weights after the Adam step and only to matrices
unless ``vector_l2=True``, and clipping is off by default. The schedule is read at the step
count *including* the current step. The arithmetic is 0.6.2's, operation by operation.
"""
import math

import torch
from torch.nn.utils import clip_grad_norm_
from torch.optim import Optimizer
from torch.optim.optimizer import required

from ..errors import SparseGradientError
from .adam_settings import PerParameterStep, check_adam_settings, scheduled_lrs


class OpenAIAdam(PerParameterStep, Optimizer):
    """OpenAI GPT's Adam, with 0.6.2's arguments and defaults.

    ``lr``, ``schedule``, ``warmup``, ``t_total``, ``b1``, ``b2``: as for ``BertAdam``.
    ``e``: epsilon (``1e-8``). ``weight_decay``: decoupled decay after the step (0: none).
    ``vector_l2``: decay 1-d parameters (biases, norms) too. ``max_grad_norm``: per-parameter
    clipping norm (-1: none). Bad values raise
    :class:`~bertconvert.errors.OptimizerArgumentError`, a ``ValueError``.
    """

    def __init__(self, params, lr=required, schedule="warmup_linear", warmup=-1, t_total=-1,
                 b1=0.9, b2=0.999, e=1e-8, weight_decay=0, vector_l2=False, max_grad_norm=-1,
                 **kwargs):
        schedule = check_adam_settings(lr, schedule, warmup, t_total, b1, b2, e,
                                       weight_decay, max_grad_norm)
        defaults = dict(lr=lr, schedule=schedule, b1=b1, b2=b2, e=e, weight_decay=weight_decay,
                        vector_l2=vector_l2, max_grad_norm=max_grad_norm)
        super().__init__(params, defaults)

    def get_lr(self):
        """The scheduled learning rate of each parameter at its recorded step count (``[0]``
        before the first step)."""
        return scheduled_lrs(self)

    def _update(self, p, group):
        grad = p.grad
        if grad.is_sparse:
            raise SparseGradientError("OpenAIAdam does not support sparse gradients: "
                                      "use torch.optim.SparseAdam for sparse parameters")
        state = self.state[p]
        if len(state) == 0:
            state["step"] = 0
            state["exp_avg"] = torch.zeros_like(p)
            state["exp_avg_sq"] = torch.zeros_like(p)
        exp_avg, exp_avg_sq = state["exp_avg"], state["exp_avg_sq"]
        beta1, beta2 = group["b1"], group["b2"]
        state["step"] += 1
        if group["max_grad_norm"] > 0:
            clip_grad_norm_(p, group["max_grad_norm"])  # scales p.grad, so `grad`, in place
        exp_avg.mul_(beta1).add_(grad, alpha=1 - beta1)
        exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
        denom = exp_avg_sq.sqrt().add_(group["e"])
        bias_correction1 = 1 - beta1 ** state["step"]
        bias_correction2 = 1 - beta2 ** state["step"]
        lr_scheduled = group["lr"] * group["schedule"].get_lr(state["step"])
        step_size = lr_scheduled * math.sqrt(bias_correction2) / bias_correction1
        p.addcdiv_(exp_avg, denom, value=-step_size)
        # decay after the step, on the updated weights; vectors only when asked (vector_l2)
        if (p.dim() > 1 or group["vector_l2"]) and group["weight_decay"] > 0:
            p.add_(p, alpha=-lr_scheduled * group["weight_decay"])
