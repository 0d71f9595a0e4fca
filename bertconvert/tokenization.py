"""The 0.6.2 import path ``bertconvert.tokenization``: see :mod:`bertconvert.tokenizer.wordpiece`."""
from .tokenizer.wordpiece import *  # noqa: F401,F403
from .tokenizer.wordpiece import NEVER_SPLIT  # noqa: F401  (not in __all__, used by callers)
