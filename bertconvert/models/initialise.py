"""How a BERT parameter starts, and building a model without starting it: one place for both.

Google's initialisation (pytorch-pretrained-bert 0.6.2's ``init_bert_weights``): the weights
of Linear and Embedding layers are drawn from normal(0, ``initializer_range``), LayerNorm
scales are 1, and every bias -- LayerNorm shifts and the MLM output bias included -- is 0.
:func:`init_` applies it to one tensor; :func:`kind_of_module_tensor` (a module's parameter)
and :func:`kind_of_key` (a state-dict key, for the converter, which has no module) say which
of the three a parameter gets. They agree on every parameter of the models here, because
their LayerNorm modules are all named ``LayerNorm``.

Loading never pays for a random initialisation it would overwrite: :func:`on_meta_device`
builds the model on the meta device (no memory) and skips the random fills there. It is a
torch function mode, active in the calling thread only; ``torch.nn.init`` is not patched,
so a model built at the same time in another thread is initialised as usual.
"""
import contextlib

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

from ..errors import ConfigError

#: the three ways a parameter starts
NORMAL, ONES, ZEROS = "normal", "ones", "zeros"
#: More than any |z| torch's normal draws reach (Box-Muller from 53-bit uniforms: < 39):
#: below ``finfo.max / this`` an initializer_range cannot overflow, so nothing is checked.
_MAX_NORMAL_Z = 64.0


def kind_of_key(key):
    """How the parameter under state-dict ``key`` starts: ONES for a LayerNorm scale, ZEROS
    for any bias, NORMAL for every other weight."""
    if key.endswith("LayerNorm.weight"):
        return ONES
    if key.endswith("bias"):
        return ZEROS
    return NORMAL


def kind_of_module_tensor(module, attr):
    """How parameter ``attr`` of ``module`` starts (see :func:`kind_of_key`)."""
    if isinstance(module, nn.LayerNorm):
        return ONES if attr == "weight" else ZEROS
    if attr == "weight" and isinstance(module, (nn.Linear, nn.Embedding)):
        return NORMAL
    return ZEROS  # biases, including the MLM output bias


def init_(tensor, kind, initializer_range):
    """Fill ``tensor`` in place as Google does for a parameter of ``kind``; returns it.
    Random draws come from torch's global RNG (``torch.manual_seed`` makes them repeatable).
    An ``initializer_range`` so large that draws overflow ``tensor``'s dtype is ConfigError,
    not a parameter of infinities."""
    with torch.no_grad():
        if kind == ONES:
            return tensor.fill_(1.0)
        if kind == ZEROS:
            return tensor.zero_()
        tensor.normal_(mean=0.0, std=initializer_range)
        largest = torch.finfo(tensor.dtype).max
        if initializer_range * _MAX_NORMAL_Z > largest and not tensor.is_meta \
                and not bool(torch.isfinite(tensor).all()):
            raise ConfigError(
                f"config field initializer_range ({initializer_range:g}) is too large: weights "
                f"drawn from normal(0, {initializer_range:g}) overflow {tensor.dtype} "
                f"(largest {largest:g})")
        return tensor


class _SkipRandomInitOnMeta(TorchFunctionMode):
    """Makes in-place random fills of meta tensors no-ops.

    Meta tensors have no values, so filling them means nothing, but ``normal_`` on the meta
    device goes through torch's Python decompositions, whose first use imports
    torch._refs/_dynamo: about a second and 100+ MB for nothing. (Constant fills are cheap.)
    """

    SKIPPED = ("normal_", "uniform_")  # Tensor methods and nn.init functions, by name

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if getattr(func, "__name__", None) in self.SKIPPED:
            # nn.init passes the tensor by keyword, Tensor methods positionally.
            target = args[0] if args else kwargs.get("tensor", kwargs.get("self"))
            if isinstance(target, torch.Tensor) and target.is_meta:
                return target
        return func(*args, **kwargs)


@contextlib.contextmanager
def on_meta_device():
    """Build modules on the meta device without random initialisation (this thread only)::

        with on_meta_device():
            model = BertModel(config)   # keys and shapes, no memory, no random draws
    """
    with torch.device("meta"), _SkipRandomInitOnMeta():
        yield
