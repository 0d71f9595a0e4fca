"""The 0.6.2 import path ``bertconvert.optimization`` (``pytorch_pretrained_bert.optimization``):
``BertAdam`` and the learning-rate schedules now live in :mod:`bertconvert.training`.
``OpenAIAdam`` (0.6.2's ``optimization_openai``) is here too, and so are Google's
``AdamWeightDecay`` with its schedule and :func:`resume_from_tf`."""
from .training.bertadam import BertAdam  # noqa: F401
from .training.google_adam import GOOGLE_EXCLUDE, AdamWeightDecay, google_schedule  # noqa: F401
from .training.openai_adam import OpenAIAdam  # noqa: F401
from .training.resume import resume_from_tf, save_optimizer_state  # noqa: F401
from .training.schedules import (  # noqa: F401
    SCHEDULES,
    ConstantLR,
    WarmupConstantSchedule,
    WarmupCosineSchedule,
    WarmupCosineWithHardRestartsSchedule,
    WarmupCosineWithWarmupRestartsSchedule,
    WarmupLinearSchedule,
    _LRSchedule,
)
