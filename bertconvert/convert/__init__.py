"""Conversion: TensorFlow checkpoint tensors -> a PyTorch model directory.

Owns the name-mapping rules (``rules``), the conversion plan (``plan``), reading and laying
out checkpoint tensors (``tensors``), every planned tensor in turn and the in-memory state dict
(``stream``), the output directory's files (``outputs``) and streaming writers (``writers``),
source hashing (``provenance``), the report (``report``), the run itself (``run``),
0.6.2's ``load_tf_weights_in_bert`` (``tf_weights``), KerasHub presets (``keras_preset``,
``keras_rules``, ``keras_run``) and PyTorch -> TF export (``export``). May import ``models``,
``tokenizer``, ``checkpoint`` and the top-level leaves, and ``cache`` inside functions only
(``remote``: checkpoints read in place from URLs; ``publish``: ``s3://`` outputs); never
``cli``/``commands`` or ``verify``.

The public functions are re-exported here and resolved lazily (PEP 562), so that importing
``bertconvert.convert.rules`` does not load the whole conversion machinery.
"""
from ..lazy import lazy_exports as _lazy_exports

#: public name -> submodule of this package that defines it
_EXPORTS = dict.fromkeys(
    ("ConversionReport", "convert_checkpoint", "convert_to_pytorch_file", "load_converted_model",
     "detect_head", "iter_tensors", "tokenizer_config", "FORMATS", "DTYPES", "SOURCE_HASHES",
     "SAFETENSORS_NAME", "PYTORCH_NAME", "REPORT_NAME", "VOCAB_NAME", "TOKENIZER_CONFIG_NAME"),
    "run")
_EXPORTS.update(dict.fromkeys(("convert_preset", "preset_state_dict"), "keras_run"))


__getattr__, __dir__ = _lazy_exports(__name__, _EXPORTS)

__all__ = ["ConversionReport", "convert_checkpoint", "convert_to_pytorch_file",
           "load_converted_model", "detect_head", "convert_preset", "preset_state_dict"]
