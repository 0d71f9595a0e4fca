"""bertconvert: Google TensorFlow BERT checkpoints to PyTorch, exactly; a safe weight cache;
numerical parity checks. The public names are re-exported here; no logic lives in this file.
"""
__version__ = "0.1.0"

from .config import BertConfig  # noqa: E402
from .errors import *  # noqa: E402,F401,F403
