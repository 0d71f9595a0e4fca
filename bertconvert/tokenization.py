"""The 0.6.2 import path ``bertconvert.tokenization``: see :mod:`bertconvert.tokenizer.wordpiece`."""
from .tokenizer.wordpiece import *  # noqa: F401,F403
from .tokenizer.wordpiece import MAX_INPUT_CHARS_PER_WORD, NEVER_SPLIT, VOCAB_NAME  # noqa: F401
