"""The 0.6.2 import path ``bertconvert.optimization``: optimizers and schedules now live in
:mod:`bertconvert.training`."""
from .training.google_adam import GOOGLE_EXCLUDE, AdamWeightDecay, google_schedule  # noqa: F401
from .training.resume import resume_from_tf, save_optimizer_state  # noqa: F401
