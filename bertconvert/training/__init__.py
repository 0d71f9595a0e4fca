"""Training: optimizers and learning-rate schedules.

Owns pytorch-pretrained-bert 0.6.2's ``BertAdam`` (``bertadam``), ``OpenAIAdam``
(``openai_adam``), the settings checks and ``get_lr()`` they share (``adam_settings``) and its
learning-rate schedules with their name table ``SCHEDULES`` (``schedules``, pure Python), each
equal to 0.6.2's step for step; Google's ``AdamWeightDecayOptimizer`` and ``create_optimizer``
schedule in PyTorch (``google_adam``); and continuing a Google TensorFlow run from its Adam
slots (``resume``: :func:`resume_from_tf`). May import ``convert``, ``models``, ``checkpoint``
and the top-level leaves; never ``cli``/``commands``, ``verify`` or ``cache``. 0.6.2's import
path ``bertconvert.optimization`` re-exports these names.

The public names are re-exported lazily (PEP 562): importing the package loads no torch.
"""
from ..lazy import lazy_exports as _lazy_exports

#: public name -> submodule of this package that defines it
_EXPORTS = {
    "BertAdam": "bertadam",
    "OpenAIAdam": "openai_adam",
    "SCHEDULES": "schedules",
    "ConstantLR": "schedules",
    "WarmupConstantSchedule": "schedules",
    "WarmupLinearSchedule": "schedules",
    "WarmupCosineSchedule": "schedules",
    "WarmupCosineWithHardRestartsSchedule": "schedules",
    "WarmupCosineWithWarmupRestartsSchedule": "schedules",
    "AdamWeightDecay": "google_adam",
    "google_schedule": "google_adam",
    "GOOGLE_EXCLUDE": "google_adam",
    "resume_from_tf": "resume",
    "save_optimizer_state": "resume",
}

__all__ = list(_EXPORTS)

__getattr__, __dir__ = _lazy_exports(__name__, _EXPORTS)
