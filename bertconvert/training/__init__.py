"""Training utilities of pytorch-pretrained-bert 0.6.2: optimizers and learning-rate schedules.

Owns ``BertAdam`` (``bertadam``), ``OpenAIAdam`` (``openai_adam``), the settings checks and
``get_lr()`` they share (``adam_settings``), and the learning-rate schedules with their name
table ``SCHEDULES`` (``schedules``, pure Python). Each equals 0.6.2's step for step. Imports
only the top-level leaves (``errors``, ``lazy``); 0.6.2's import path
``bertconvert.optimization`` re-exports these names.
"""
from ..lazy import lazy_exports as _lazy_exports

_LAZY_EXPORTS = {
    "BertAdam": "bertadam",
    "OpenAIAdam": "openai_adam",
    "SCHEDULES": "schedules",
    "ConstantLR": "schedules",
    "WarmupConstantSchedule": "schedules",
    "WarmupLinearSchedule": "schedules",
    "WarmupCosineSchedule": "schedules",
    "WarmupCosineWithHardRestartsSchedule": "schedules",
    "WarmupCosineWithWarmupRestartsSchedule": "schedules",
}

__all__ = list(_LAZY_EXPORTS)

__getattr__, __dir__ = _lazy_exports(__name__, _LAZY_EXPORTS)
