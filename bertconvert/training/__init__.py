"""Training: optimizers and learning-rate schedules.

Owns Google's ``AdamWeightDecayOptimizer`` and ``create_optimizer`` schedule in PyTorch
(``google_adam``) and continuing a Google TensorFlow run from its Adam slots
(``resume``: :func:`resume_from_tf`). May import ``convert``, ``models``, ``checkpoint`` and
the top-level leaves; never ``cli``/``commands``, ``verify`` or ``cache``.

The public names are re-exported lazily (PEP 562): importing the package loads no torch.
"""
from ..lazy import lazy_exports as _lazy_exports

#: public name -> submodule of this package that defines it
_EXPORTS = {
    "AdamWeightDecay": "google_adam",
    "google_schedule": "google_adam",
    "GOOGLE_EXCLUDE": "google_adam",
    "resume_from_tf": "resume",
    "save_optimizer_state": "resume",
}

__getattr__, __dir__ = _lazy_exports(__name__, _EXPORTS)

__all__ = list(_EXPORTS)
