"""bertconvert: Google TensorFlow BERT checkpoints to PyTorch, exactly; a safe weight cache;
numerical parity checks. The public names are re-exported here; no logic lives in this file.

Re-exports are resolved lazily (PEP 562): ``import bertconvert`` stays cheap, and commands
that never touch PyTorch (``bertconvert inspect``, ``cache ls``, converting to safetensors)
do not pay torch's ~1 s import.
"""
from . import errors as _errors
from .lazy import lazy_exports as _lazy_exports
from .models.config import BertConfig

# The exception family is small and import-free: re-exported eagerly. Only the classes --
# errors.py's own imports and CLI helpers (contextlib, option...) are not public API.
_ERRORS = sorted(n for n, v in vars(_errors).items()
                 if isinstance(v, type) and issubclass(v, Exception))
globals().update((n, getattr(_errors, n)) for n in _ERRORS)

__version__ = "0.1.0"

#: public name -> submodule that defines it
_LAZY_EXPORTS = {
    "BasicTokenizer": "tokenizer.wordpiece",
    "BertTokenizer": "tokenizer.wordpiece",
    "WordpieceTokenizer": "tokenizer.wordpiece",
    "cached_path": "cache.store",
    "filename_to_url": "cache.entries",
    "url_to_filename": "cache.entries",
    "BertModel": "models.trunk",
    "BertPreTrainedModel": "models.trunk",
    "HEADS": "models.heads",
    "BertForMaskedLM": "models.heads",
    "BertForMultipleChoice": "models.heads",
    "BertForNextSentencePrediction": "models.heads",
    "BertForPreTraining": "models.heads",
    "BertForQuestionAnswering": "models.heads",
    "BertForSequenceClassification": "models.heads",
    "BertForTokenClassification": "models.heads",
    "ConversionReport": "convert.run",
    "convert_checkpoint": "convert.run",
    "load_converted_model": "convert.run",
    "resume_from_tf": "training.resume",
    # The function stays bertconvert.verify.verify: re-exporting it would shadow the module.
    "ParityReport": "verify",
    "assert_parity": "verify",
    # 0.6.2 exported its two optimizers at the top level (the schedules: bertconvert.optimization)
    "BertAdam": "training.bertadam",
    "OpenAIAdam": "training.openai_adam",
    # pytorch-pretrained-bert 0.6.2's top-level names (modeling and file_utils)
    "load_tf_weights_in_bert": "convert.tf_weights",
    "PYTORCH_PRETRAINED_BERT_CACHE": "cache.compat",
    "WEIGHTS_NAME": "file_utils",
    "CONFIG_NAME": "file_utils",
}


#: Submodules reachable as attributes after a bare ``import bertconvert`` (imported on first
#: use), e.g. ``bertconvert.verify(ckpt, model_dir)`` -- that module is callable -- and
#: ``bertconvert.checkpoint.load_checkpoint(path)``.
_LAZY_SUBMODULES = {"verify": "verify", "checkpoint": "checkpoint", "cache": "cache",
                    "convert": "convert", "modeling": "modeling", "tokenization": "tokenization",
                    "optimization": "optimization", "training": "training",
                    "file_utils": "file_utils",
                    # attribute paths of earlier releases, now inside their pillar
                    "pretrained": "cache.names", "heads": "models.heads",
                    "serialization": "models.weightfiles",
                    # already imported (the exceptions above); listed as the home of that family
                    "errors": "errors"}

__all__ = ["BertConfig", "__version__", *_LAZY_EXPORTS, *_ERRORS]

__getattr__, __dir__ = _lazy_exports(__name__, _LAZY_EXPORTS, _LAZY_SUBMODULES, listed=__all__)
