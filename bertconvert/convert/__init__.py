"""Conversion: TensorFlow checkpoint tensors -> a PyTorch model directory.

Owns the name-mapping rules (``rules``), the conversion plan (``plan``), reading and laying
out checkpoint tensors (``tensors``), every planned tensor in turn and the in-memory state dict
(``stream``), the output directory's files (``outputs``) and streaming writers (``writers``),
source hashing (``provenance``), the report (``report``), the run itself (``run``) and
PyTorch -> TF export (``export``). May import ``models``, ``tokenizer``, ``checkpoint`` and the top-level leaves;
never ``cli``/``commands``, ``verify`` or ``cache``.

The public functions are re-exported here and resolved lazily (PEP 562), so that importing
``bertconvert.convert.rules`` does not load the whole conversion machinery.
"""
import importlib

#: public name -> submodule of this package that defines it
_EXPORTS = dict.fromkeys(
    ("ConversionReport", "convert_checkpoint", "convert_to_pytorch_file", "load_converted_model",
     "detect_head", "iter_tensors", "tokenizer_config", "FORMATS", "DTYPES", "SOURCE_HASHES",
     "SAFETENSORS_NAME", "PYTORCH_NAME", "REPORT_NAME", "VOCAB_NAME", "TOKENIZER_CONFIG_NAME"),
    "run")


def __getattr__(name):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f".{module}", __name__), name)


def __dir__():
    return sorted(set(globals()) | set(_EXPORTS))


__all__ = ["ConversionReport", "convert_checkpoint", "convert_to_pytorch_file",
           "load_converted_model", "detect_head"]
