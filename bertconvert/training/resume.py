"""Continue a Google TensorFlow training run in PyTorch: weights, Adam slots, step, schedule.

:func:`resume_from_tf` returns the converted model (train mode), an
:class:`~bertconvert.training.google_adam.AdamWeightDecay` holding the checkpoint's
``adam_m``/``adam_v`` (mapped through the converter's plan, so a kernel's slots are
transposed with it) and ``global_step``, and create_optimizer's schedule as a ``LambdaLR``
positioned at that step. The loop ``loss.backward(); optimizer.step(); scheduler.step();
optimizer.zero_grad()`` then takes the steps TensorFlow would have taken
(fixtures/make_resume_fixture.py records TensorFlow's; tests/training compare).
"""
import logging
import os

import torch

from ..errors import HeadError, SlotShapeError, SlotsMissingError, UnsupportedOptimizerError
from ..layout import LAYOUTS, OPTIMIZER_NAME
from .google_adam import AdamWeightDecay, check_schedule, google_schedule

logger = logging.getLogger(__name__)


def resume_from_tf(source, head="auto", num_labels=None, learning_rate=None, num_train_steps=None,
                   num_warmup_steps=0, weight_decay_rate=0.01, clip_norm=1.0, *, config=None,
                   gelu=None, read_offset=1, use_one_hot_embeddings=False, beta_1=0.9,
                   beta_2=0.999, epsilon=1e-6):
    """``(model, optimizer, scheduler)`` continuing the run saved in ``source``.

    ``source``: a TF1 checkpoint written by Google's ``create_optimizer`` (with
    ``<var>/adam_m``, ``<var>/adam_v``, ``global_step``), or a model directory converted with
    ``--optimizer-state``. ``learning_rate``, ``num_train_steps``, ``num_warmup_steps``: the
    run's ``init_lr`` and schedule (as passed to ``create_optimizer``); ``weight_decay_rate``,
    ``clip_norm`` (None: no clipping), ``beta_1``, ``beta_2``, ``epsilon``: create_optimizer's
    values by default. ``read_offset``: which step the schedule is read at relative to
    ``global_step`` (1: after the increment, as TF1 variables behave; 0: before it, as resource
    variables behave -- see :mod:`bertconvert.training.google_adam`).
    ``use_one_hot_embeddings``: Google's flag of the same name (``run_classifier.py`` sets it
    to ``--use_tpu``): False (CPU/GPU runs) looks the word embeddings up with ``tf.gather``,
    whose sparse gradient enters the clipping norm row by row
    (:meth:`AdamWeightDecay.norm_as_tf_gather`); True (TPU runs) makes it dense. ``head``,
    ``num_labels``, ``config``, ``gelu``: as for ``convert``.

    Named errors: :class:`~bertconvert.errors.ScheduleError` (the step is past
    ``num_train_steps``, or the numbers are no schedule), :class:`~bertconvert.errors.
    UnsupportedOptimizerError` (no Adam slots; LAMB's or Keras' instead),
    :class:`~bertconvert.errors.SlotShapeError`, :class:`~bertconvert.errors.SlotsMissingError`
    (a head the slots do not cover).
    """
    if learning_rate is None or num_train_steps is None:
        raise TypeError("resume_from_tf needs learning_rate and num_train_steps (the values "
                        "the run was started with)")
    check_schedule(num_train_steps, num_warmup_steps)  # before anything is read
    if os.path.isdir(source) and os.path.isfile(os.path.join(source, OPTIMIZER_NAME)):
        model, moments, step, tf_names = _from_model_dir(source, head, num_labels)
    else:
        _refuse_plain_model_dir(source)
        model, moments, step, tf_names = _from_checkpoint(source, head, num_labels, config, gelu)
    check_schedule(num_train_steps, num_warmup_steps, step)
    model.train()
    optimizer = AdamWeightDecay(model.named_parameters(), lr=learning_rate,
                                weight_decay_rate=weight_decay_rate, beta_1=beta_1,
                                beta_2=beta_2, epsilon=epsilon, clip_norm=clip_norm,
                                tf_names=tf_names, global_step=step)
    _load_moments(optimizer, model, moments, head_name=getattr(model, "head_name", None))
    if not use_one_hot_embeddings and clip_norm is not None:
        optimizer.norm_as_tf_gather(_word_embeddings(model))
    scheduler = google_schedule(optimizer, num_train_steps, num_warmup_steps, step, read_offset)
    logger.info("resuming %s at global_step %d (learning rate %.6g)", source, step,
                optimizer.param_groups[0]["lr"])
    return model, optimizer, scheduler


def save_optimizer_state(optimizer, model, directory):
    """Write ``optimizer``'s Adam slots (keyed by ``model``'s parameter names) and global step
    into ``directory`` as ``optimizer.safetensors``, beside ``model.save_pretrained(directory)``:
    ``bertconvert export`` then writes a TF1 checkpoint that Google's scripts continue from.
    Returns the path written."""
    from ..convert.optimizer_state import save_optimizer_arrays

    slots = {}
    for key, p in model.named_parameters():
        state = optimizer.state.get(p)
        if state and "adam_m" in state:
            slots[key] = (state["adam_m"].detach().cpu().float().numpy(),
                          state["adam_v"].detach().cpu().float().numpy())
    if not slots:
        raise UnsupportedOptimizerError("the optimizer holds no adam_m/adam_v slots for the "
                                        "model's parameters (is it an AdamWeightDecay that has "
                                        "taken a step?)")
    os.makedirs(directory, exist_ok=True)
    return save_optimizer_arrays(os.path.join(directory, OPTIMIZER_NAME), slots,
                                 getattr(optimizer, "global_step", 0))


def _word_embeddings(model):
    """The model's word-embedding ``nn.Embedding`` (the trunk's, whatever the head)."""
    trunk = getattr(model, "bert", model)
    return trunk.embeddings.word_embeddings


def _refuse_plain_model_dir(source):
    """A converted directory without optimizer.safetensors: say how to get one."""
    from ..layout import WEIGHTS_NAMES

    if os.path.isdir(source) and any(os.path.exists(os.path.join(source, n)) for n in WEIGHTS_NAMES):
        raise UnsupportedOptimizerError(
            f"{source} is a model directory without {OPTIMIZER_NAME}: it was converted "
            "without the optimizer state. Convert the checkpoint again with --optimizer-state, "
            "or resume from the checkpoint itself")


def _from_checkpoint(source, head, num_labels, config, gelu):
    """Convert in memory: ``(model, {key: (m, v)}, global_step, {key: TF name})``."""
    from ..checkpoint import load_checkpoint
    from ..convert.gelu import check_gelu
    from ..convert.plan import plan_conversion
    from ..convert.slots import iter_slots, plan_slots, read_global_step, require_adam
    from ..convert.source import describe_source
    from ..convert.stream import iter_tensors
    from ..models.heads import HEADS

    check_gelu(gelu)
    with load_checkpoint(source, mmap=False) as reader:
        require_adam(reader)  # before planning: another optimizer's names may not even plan
        cfg, config_path, _ = describe_source(config, reader, gelu)
        plan = plan_conversion(reader, cfg, head=head, num_labels=num_labels,
                               config_path=config_path, keep_pooler=True)
        slots = plan_slots(reader, plan)
        step = read_global_step(reader)
        state = {key: torch.from_numpy(a) for key, a in
                 iter_tensors(reader, plan, "float32", reuse_buffer=False)}
        moments = {key: (m, v) for key, m, v in iter_slots(reader, slots)}
    model = HEADS[plan.head].from_converted_state(state, plan.config, plan.num_labels)
    return model, moments, step, {t.key: t.name for t in plan.tensors}


def _from_model_dir(directory, head, num_labels):
    """Load a ``--optimizer-state`` directory: ``(model, moments, global_step, {})``."""
    from ..convert.optimizer_state import read_optimizer_file
    from ..models.heads import HEADS
    from ..models.trunk import BertPreTrainedModel

    if head not in (None, "auto") and head not in HEADS:
        raise HeadError(f"unknown head {head!r}; expected auto or one of {', '.join(HEADS)}")
    cls = BertPreTrainedModel if head in (None, "auto") else HEADS[head]
    kwargs = {"num_labels": int(num_labels)} if num_labels is not None else {}
    model, info = cls.from_pretrained(directory, output_loading_info=True, dtype="float32", **kwargs)
    moments, step = read_optimizer_file(os.path.join(directory, OPTIMIZER_NAME))
    if info.get("missing_keys"):
        raise SlotsMissingError(
            f"{directory} does not hold the weights of {type(model).__name__}: "
            f"{', '.join(info['missing_keys'][:6])}: choose the head it was converted with")
    return model, moments, step, {}


def _load_moments(optimizer, model, moments, head_name=None):
    """Put ``{key: (adam_m, adam_v)}`` into ``optimizer.state``, checked against the model."""
    params = dict(model.named_parameters())
    pooler_unused = head_name in LAYOUTS and not LAYOUTS[head_name].uses_pooler
    missing = [k for k in params if k not in moments
               and not (pooler_unused and ".pooler." in f".{k}")]
    if missing:
        raise SlotsMissingError(f"{type(model).__name__} has {len(missing)} parameter(s) the "
                                f"Adam slots do not cover: {', '.join(sorted(missing)[:8])}"
                                + (" ..." if len(missing) > 8 else "")
                                + ". Choose the head the run was trained with")
    unknown = sorted(set(moments) - set(params))
    bad = [f"{k}: slots {list(moments[k][0].shape)}, parameter {list(params[k].shape)}"
           for k in params if k in moments and tuple(moments[k][0].shape) != tuple(params[k].shape)]
    if bad:
        raise SlotShapeError("slot shapes differ from their parameters: " + "; ".join(bad))
    if unknown:
        logger.warning("%d slot(s) belong to no parameter of %s and are dropped: %s", len(unknown),
                       type(model).__name__, ", ".join(unknown[:6]))
    for key, p in params.items():
        if key in moments:
            m, v = moments[key]
            optimizer.state[p] = {"adam_m": torch.tensor(m, dtype=p.dtype),
                                  "adam_v": torch.tensor(v, dtype=p.dtype)}
