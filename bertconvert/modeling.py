"""The 0.6.2 import path ``bertconvert.modeling``: the trunk now lives in :mod:`bertconvert.models.trunk`."""
from .models.trunk import *  # noqa: F401,F403
