"""Google's ``AdamWeightDecayOptimizer`` and ``create_optimizer`` schedule, in PyTorch.

The arithmetic of google-research/bert ``optimization.py`` (bert-tensorflow 1.0.4), step for
step, in the parameters' dtype::

    g      = grads * clip_norm / max(global_norm(grads), clip_norm)   # create_optimizer
    m      = beta_1 * m + (1 - beta_1) * g
    v      = beta_2 * v + (1 - beta_2) * g * g
    update = m / (sqrt(v) + epsilon)                # no bias correction
    update += weight_decay_rate * param             # unless the TF name is excluded
    param -= lr * update

The weight-decay exclusions are Google's patterns (``["LayerNorm", "layer_norm", "bias"]``)
searched with ``re.search`` in the *TensorFlow* name of each parameter, as Google does: our
``bert.encoder.layer.0.output.LayerNorm.weight`` is Google's ``.../LayerNorm/gamma``,
``classifier.bias`` is ``output_bias`` -- excluded. Names are mapped through the converter's
rules (or the plan of an actual conversion, ``tf_names``).

The schedule (:func:`google_schedule`) is a standard ``LambdaLR``: linear warmup to the
learning rate over ``num_warmup_steps``, then linear decay to 0 at ``num_train_steps``.
``create_optimizer`` increments ``global_step`` in the same ``tf.group`` as the update, with
no control dependency, so which step the rate is computed from is up to TensorFlow's
executor. fixtures/make_resume_fixture.py measures it: with TF1 (ref) variables the update
uses the rate at ``global_step + 1`` (``read_offset=1``, the default), with resource
variables the rate at ``global_step`` (``read_offset=0``).
"""
import re

import torch
from torch.optim.lr_scheduler import LambdaLR

from ..errors import ScheduleError, SparseGradientError

#: create_optimizer's exclusions, matched with re.search in the TF variable name.
GOOGLE_EXCLUDE = ("LayerNorm", "layer_norm", "bias")


def tf_name_of(key):
    """Google's TF1 variable name for our parameter ``key`` (None when no rule maps it)."""
    from ..convert.rules import reverse_rule

    found = reverse_rule(key)
    return found[1] if found else None


def excluded_from_decay(tf_name, patterns=GOOGLE_EXCLUDE):
    """Whether Google's ``_do_use_weight_decay`` leaves ``tf_name`` undecayed."""
    return any(re.search(p, tf_name) is not None for p in patterns or ())


class AdamWeightDecay(torch.optim.Optimizer):
    """Google's AdamWeightDecayOptimizer (see the module docstring for the arithmetic).

    ``params``: ``model.named_parameters()`` (the names decide the weight-decay exclusions,
    through their TF names: ``tf_names`` maps a name to its TF name, else the converter's
    rules do, else the name itself is searched), or plain tensors / parameter groups (then
    every parameter is decayed unless its group sets ``weight_decay_rate``).
    ``clip_norm``: clip all gradients together by their global norm inside :meth:`step`, as
    ``create_optimizer`` does before the update (None: no clipping).

    The slots are ``state[p]["adam_m"]`` and ``state[p]["adam_v"]``; every group carries the
    ``global_step`` (Google's: incremented once per :meth:`step`). ``state_dict`` /
    ``load_state_dict`` are torch's.
    """

    def __init__(self, params, lr=1e-3, weight_decay_rate=0.0, beta_1=0.9, beta_2=0.999,
                 epsilon=1e-6, exclude_from_weight_decay=GOOGLE_EXCLUDE, clip_norm=None,
                 tf_names=None, global_step=0):
        if not lr >= 0.0:
            raise ValueError(f"invalid learning rate {lr!r}")
        if not (0.0 <= beta_1 < 1.0 and 0.0 <= beta_2 < 1.0):
            raise ValueError(f"invalid betas ({beta_1!r}, {beta_2!r})")
        if clip_norm is not None and not clip_norm > 0.0:
            raise ValueError(f"clip_norm must be positive or None, got {clip_norm!r}")
        self.clip_norm = clip_norm
        self._lookup_rows = {}  # parameter -> sum of squares of its looked-up rows' gradients
        defaults = dict(lr=lr, weight_decay_rate=weight_decay_rate, beta_1=beta_1,
                        beta_2=beta_2, epsilon=epsilon, global_step=int(global_step))
        params = list(params)
        if params and isinstance(params[0], tuple):
            params = _groups_by_decay(params, weight_decay_rate, exclude_from_weight_decay,
                                      tf_names or {})
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure=None):
        """One update of every parameter with a gradient; returns the closure's loss."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        grads = [p.grad for group in self.param_groups for p in group["params"] if p.grad is not None]
        if any(g.is_sparse for g in grads):
            raise SparseGradientError("AdamWeightDecay does not support sparse gradients: "
                                      "use torch.optim.SparseAdam for sparse parameters")
        scale = self._clip_scale(grads)
        for group in self.param_groups:
            b1, b2, eps = group["beta_1"], group["beta_2"], group["epsilon"]
            lr, decay = group["lr"], group["weight_decay_rate"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                g = p.grad if scale is None else p.grad * scale
                state = self.state[p]
                if not state:
                    state["adam_m"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                    state["adam_v"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                m, v = state["adam_m"], state["adam_v"]
                if m.device != p.device or m.dtype != p.dtype:
                    # Slots loaded (resume_from_tf) before the model was moved (.cuda(),
                    # .double()) follow their parameter, as torch's loaded state does.
                    m = state["adam_m"] = m.to(p)
                    v = state["adam_v"] = v.to(p)
                # TF: tf.multiply(beta_1, m) + tf.multiply(1.0 - beta_1, grad), and alike.
                torch.add(m * b1, g * (1.0 - b1), out=m)
                torch.add(v * b2, (g * g) * (1.0 - b2), out=v)
                update = m / (v.sqrt() + eps)
                if decay:
                    update = update + decay * p
                p.sub_(lr * update)
            group["global_step"] += 1
        return loss

    def _clip_scale(self, grads):
        """tf.clip_by_global_norm's factor ``clip_norm / max(global_norm, clip_norm)`` as a
        0-d tensor (None without clipping)."""
        if self.clip_norm is None or not grads:
            return None
        squares = []
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                rows = self._lookup_rows.get(p)
                g = _at_least_float32(p.grad)
                squares.append(rows if rows is not None else (g * g).sum())
        total = torch.stack(squares).sum().sqrt()
        for p in self._lookup_rows:
            self._lookup_rows[p] = None
        return self.clip_norm * torch.minimum(1.0 / total, total.new_tensor(1.0 / self.clip_norm))

    def zero_grad(self, set_to_none=True):
        """torch's zero_grad; also forgets the looked-up rows' squares (see
        :meth:`norm_as_tf_gather`)."""
        for p in self._lookup_rows:
            self._lookup_rows[p] = None
        super().zero_grad(set_to_none=set_to_none)

    def norm_as_tf_gather(self, embedding):
        """Count ``embedding``'s gradient in the global norm as TensorFlow does for a
        ``tf.gather`` lookup (Google's ``use_one_hot_embeddings=False``, its CPU/GPU setting):
        the gradient is ``IndexedSlices``, one row per looked-up id, and
        ``tf.clip_by_global_norm`` sums the squares of those rows *before* repeated ids are
        added together. (The update itself uses the summed, dense gradient, as TF does.)
        ``embedding``: the ``torch.nn.Embedding`` whose weight is in this optimizer. Returns
        the hook handle."""
        param = embedding.weight
        self._lookup_rows[param] = None

        def add_rows(grad):
            grad = _at_least_float32(grad)
            squares = (grad * grad).sum()
            have = self._lookup_rows.get(param)
            self._lookup_rows[param] = squares if have is None else have + squares

        def on_forward(module, args, output):
            if output.requires_grad:
                output.register_hook(add_rows)

        return embedding.register_forward_hook(on_forward)

    @property
    def global_step(self):
        """Google's ``global_step``: updates applied since the run began."""
        return self.param_groups[0]["global_step"] if self.param_groups else self.defaults["global_step"]


def _at_least_float32(t):
    """``t`` in float32, or wider when it is (the norm of half-precision gradients)."""
    return t.to(torch.promote_types(t.dtype, torch.float32))


def _groups_by_decay(named, weight_decay_rate, patterns, tf_names):
    """Two parameter groups, decayed and excluded, from ``(name, parameter)`` pairs."""
    decayed, excluded = {"params": [], "names": []}, {"params": [], "names": [], "weight_decay_rate": 0.0}
    for name, p in named:
        tf_name = tf_names.get(name) or tf_name_of(name) or name
        group = excluded if excluded_from_decay(tf_name, patterns) else decayed
        group["params"].append(p)
        group["names"].append(name)
    decayed["weight_decay_rate"] = weight_decay_rate
    return [g for g in (decayed, excluded) if g["params"]]


def google_rate(step, num_train_steps, num_warmup_steps):
    """create_optimizer's learning-rate factor at ``global_step`` ``step`` (times init_lr)."""
    if num_warmup_steps and step < num_warmup_steps:
        return step / num_warmup_steps
    return 1.0 - min(step, num_train_steps) / num_train_steps


def check_schedule(num_train_steps, num_warmup_steps, global_step=0):
    """Raise :class:`ScheduleError` unless the numbers make a schedule with steps left at
    ``global_step``."""
    for name, value in (("num_train_steps", num_train_steps), ("num_warmup_steps", num_warmup_steps)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ScheduleError(f"{name} must be a non-negative integer, got {value!r}")
    if num_train_steps < 1:
        raise ScheduleError(f"num_train_steps must be at least 1, got {num_train_steps}")
    if num_warmup_steps > num_train_steps:
        raise ScheduleError(f"num_warmup_steps {num_warmup_steps} is beyond num_train_steps "
                            f"{num_train_steps}")
    if global_step >= num_train_steps:
        raise ScheduleError(
            f"the checkpoint is at global_step {global_step}, past the end of a schedule of "
            f"num_train_steps {num_train_steps}: its learning rate is 0 from there on. Pass the "
            "num_train_steps the run was started with (larger than the step) to continue it")


def google_schedule(optimizer, num_train_steps, num_warmup_steps, global_step=None,
                    read_offset=1):
    """``LambdaLR`` of create_optimizer's schedule, positioned at ``global_step`` (default:
    the optimizer's): after ``optimizer.step(); scheduler.step()`` ``n`` times the next update
    uses the rate of step ``global_step + n + read_offset``, as TensorFlow's (see the module
    docstring for ``read_offset``). ``scheduler.last_epoch`` is the global step."""
    if global_step is None:
        global_step = getattr(optimizer, "global_step", 0)
    check_schedule(num_train_steps, num_warmup_steps, global_step)
    if read_offset not in (0, 1):
        raise ScheduleError(f"read_offset must be 0 or 1, got {read_offset!r}")

    def factor(step):
        return google_rate(step + read_offset, num_train_steps, num_warmup_steps)

    for group in optimizer.param_groups:
        group.setdefault("initial_lr", group["lr"])
    # LambdaLR's construction takes one step: from global_step - 1 to global_step.
    return LambdaLR(optimizer, factor, last_epoch=global_step - 1)


