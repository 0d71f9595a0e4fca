"""bertconvert: Google TensorFlow BERT checkpoints to PyTorch, exactly; a safe weight cache;
numerical parity checks. The public names are re-exported here; no logic lives in this file.

Re-exports are resolved lazily (PEP 562): ``import bertconvert`` stays cheap, and commands
that never touch PyTorch (``bertconvert inspect``, ``cache ls``, converting to safetensors)
do not pay torch's ~1 s import.
"""
import importlib

from .config import BertConfig
from .errors import *  # noqa: F401,F403  (the exception family is small and import-free)

__version__ = "0.1.0"

#: public name -> submodule that defines it
_LAZY_EXPORTS = {
    "BasicTokenizer": "tokenization",
    "BertTokenizer": "tokenization",
    "WordpieceTokenizer": "tokenization",
    "cached_path": "cache",
    "filename_to_url": "cache",
    "url_to_filename": "cache",
    "BertModel": "modeling",
    "BertPreTrainedModel": "modeling",
    "HEADS": "heads",
    "BertForMaskedLM": "heads",
    "BertForMultipleChoice": "heads",
    "BertForNextSentencePrediction": "heads",
    "BertForPreTraining": "heads",
    "BertForQuestionAnswering": "heads",
    "BertForSequenceClassification": "heads",
    "BertForTokenClassification": "heads",
    "ConversionReport": "convert",
    "convert_checkpoint": "convert",
    "load_converted_model": "convert",
    # The function stays bertconvert.verify.verify: re-exporting it would shadow the module.
    "ParityReport": "verify",
    "assert_parity": "verify",
}


#: Submodules reachable as attributes after a bare ``import bertconvert`` (imported on first
#: use), e.g. ``bertconvert.verify(ckpt, model_dir)`` -- that module is callable -- and
#: ``bertconvert.checkpoint.load_checkpoint(path)``.
_LAZY_SUBMODULES = ("verify", "checkpoint", "cache", "pretrained", "convert", "heads",
                    "modeling", "tokenization", "serialization")


def __getattr__(name):
    if name in _LAZY_SUBMODULES:
        return importlib.import_module(f".{name}", __name__)  # sets the attribute too
    module = _LAZY_EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__():
    return sorted(set(globals()) | set(_LAZY_EXPORTS))


from . import errors as _errors  # noqa: E402

__all__ = ["BertConfig", "__version__", *_LAZY_EXPORTS,
           *(n for n, v in vars(_errors).items() if isinstance(v, type) and issubclass(v, Exception))]
