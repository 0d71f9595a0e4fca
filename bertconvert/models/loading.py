"""``from_pretrained`` / ``save_pretrained`` for the BERT model classes.

Loading builds the model on the meta device (no time spent on a random initialisation that
would be overwritten), assigns the checkpoint's tensors to it, and only then gives every
parameter the checkpoint lacked a proper initialisation -- normal(0, initializer_range),
LayerNorm 1/0, biases 0 -- and names it in a WARNING. Nothing is ever left uninitialised and
nothing is silently random.

Which config is used is :func:`~bertconvert.models.config.resolve_config`'s decision; the
state dicts accepted, and the checks that they fit the model, are
:mod:`~bertconvert.models.statedict`'s; Google's initialisation is
:mod:`~bertconvert.models.initialise`'s.
"""
import copy
import logging
import os

import torch
from torch import nn

from . import weightfiles as serialization
from ..safeio import dumps_json
from ..atomic import atomic_write
from .config import MAX_NUM_LABELS, resolve_config
from .initialise import init_, kind_of_module_tensor, on_meta_device
from .statedict import (MAX_FRESH_BYTES_BEYOND_WEIGHTS, check_fresh_size,  # noqa: F401
                        check_layer_count, mismatch_error, normalize_state_dict, resolve_dtype)
from ..errors import ConfigError, ConversionError, HeadError, OutputExistsError, WeightsError
from ..layout import INDEX_SUFFIX, LAYOUTS, head_for_class, label_count

logger = logging.getLogger(__name__)

_ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar", ".zip", ".tar.bz2", ".tar.xz")
#: from_pretrained keyword arguments that are options of loading, not of the constructor.
_LOAD_OPTIONS = ("config", "torch_dtype", "dtype", "strict", "force_download",
                 "local_files_only", "output_loading_info", "from_tf", "attention_implementation")


# --- locating config and weights ---------------------------------------------------------
def _locate(path, cache_dir, force_download, local_files_only):
    """``(directory, config_file, weights_file)`` for a directory, a weights or config file, a
    name or a URL; a config file or weights file only when the path names one."""
    config_file = weights_file = directory = None
    if path is not None:
        path = os.path.expanduser(os.fspath(path))
        if os.path.isdir(path):
            directory = path
        elif os.path.isfile(path) and path.lower().endswith(_ARCHIVE_SUFFIXES):
            # 0.6.2 loaded model archives (.tar.gz) directly; the cache extracts them safely.
            directory = _fetch(path, cache_dir, force_download, local_files_only)
        elif os.path.isfile(path):
            directory = os.path.dirname(path) or os.curdir  # as given: messages name it
            if path.endswith(".json") and not path.endswith(INDEX_SUFFIX):
                config_file = path
            else:
                weights_file = path
        else:
            directory = _fetch(path, cache_dir, force_download, local_files_only)
    return directory, config_file, weights_file


def _fetch(name_or_url, cache_dir, force_download, local_files_only):
    """A model name or URL -> local directory, through the shared cache (imported lazily)."""
    try:
        from ..cache.names import resolve_model_dir
    except ModuleNotFoundError as e:
        if e.name != f"{__package__}.pretrained":
            raise
        raise WeightsError(
            f"{name_or_url} is not an existing directory or file, and this installation cannot "
            "fetch model names or URLs (bertconvert.cache.names is missing)") from e
    return resolve_model_dir(name_or_url, cache_dir=cache_dir, force_download=force_download,
                             local_files_only=local_files_only)


class PretrainedLoadingMixin:
    """Adds ``from_pretrained`` and ``save_pretrained`` to :class:`BertPreTrainedModel`."""

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path=None, *inputs, state_dict=None,
                        cache_dir=None, **kwargs):
        """Build the model and load pretrained weights into it; returned in eval mode.

        ``pretrained_model_name_or_path``: a directory (``config.json`` or ``bert_config.json``
        plus ``model.safetensors`` or ``pytorch_model.bin``), a weights file (config beside
        it), or a model name / URL (fetched into the cache; ``cache_dir``,
        ``force_download``, ``local_files_only``). ``state_dict=`` replaces the weights file.
        Remaining ``*inputs``/``**kwargs`` go to the constructor (``num_labels``,
        ``num_choices``); a classifier without ``num_labels`` takes the config's, else the
        row count of the checkpoint's classifier. Options: ``config=`` (BertConfig, dict or
        path), ``torch_dtype=``/``dtype=`` (default float32; "auto" keeps the file's),
        ``strict=True`` (missing/unexpected keys raise WeightsError instead of a warning),
        ``output_loading_info=True`` (return ``(model, info)``), ``attention_implementation``
        ("sdpa" or "eager"), ``from_tf=True`` (convert a TF checkpoint in memory). The
        first argument may also be passed as ``path=``; None needs ``config=`` and
        ``state_dict=``.

        Example::

            >>> model = BertForSequenceClassification.from_pretrained("out/model")
            >>> model = BertModel.from_pretrained("bert-base-uncased", cache_dir="/shared/cache")
        """
        if "path" in kwargs:  # the spelling of issue 2; 0.6.2 and transformers use the long one
            if pretrained_model_name_or_path is not None:
                raise TypeError("from_pretrained() got the model path twice (positionally and "
                                "as path=)")
            pretrained_model_name_or_path = kwargs.pop("path")
        opts = {k: kwargs.pop(k) for k in _LOAD_OPTIONS if k in kwargs}
        if opts.get("from_tf"):
            return cls._from_tf(pretrained_model_name_or_path, opts, kwargs)
        config = None
        if opts.get("config") is not None:  # checked before anything is fetched
            config, _ = resolve_config(opts["config"])
        caller_dict = state_dict is not None
        directory, config_file, weights_file = _locate(
            pretrained_model_name_or_path, cache_dir, opts.get("force_download", False),
            opts.get("local_files_only", False))
        if config is None:
            config, config_file = resolve_config(config_file, model_dir=directory)
            logger.info("model config from %s", config_file)
        if not caller_dict and weights_file is None:
            if directory is None:
                raise WeightsError("no weights: pass a model directory, a weights file, or "
                                   "state_dict=")
            weights_file = serialization.find_weights_file(directory)
        model_cls = cls._class_for(config)
        if caller_dict:
            source = "the given state_dict"
            state_dict = serialization.as_state_dict(state_dict, source)
        else:
            logger.info("loading weights from %s", weights_file)
            state_dict = serialization.load_state_dict(weights_file)
            source = weights_file
        rows = state_dict.get("classifier.weight")
        rows = rows.shape[0] if isinstance(rows, torch.Tensor) and rows.dim() else None
        if model_cls.label_argument == "num_labels" and not inputs \
                and kwargs.get("num_labels") is None:
            kwargs["num_labels"] = label_count(config.num_labels, rows)
        check_layer_count(config, state_dict, source)
        # Build on the meta device: no allocation, no random init to throw away.
        with on_meta_device():
            model = model_cls(config, *inputs, **kwargs)
        if model_cls.label_argument == "num_labels":
            # Only the weights' own classifier may hold more labels than the sane bound.
            config.set_num_labels(model.num_labels, limit=max(MAX_NUM_LABELS, rows or 0))
        state_dict = normalize_state_dict(state_dict, hasattr(model, "bert"))
        info = model.load_pretrained_state(
            state_dict, source=source, strict=opts.get("strict", False),
            dtype=opts.get("torch_dtype", opts.get("dtype")), copy_tensors=caller_dict)
        if opts.get("attention_implementation"):
            model.set_attention_implementation(opts["attention_implementation"])
        model.eval()
        return (model, info) if opts.get("output_loading_info") else model

    @classmethod
    def _class_for(cls, config):
        """The class to build: ``cls`` itself, or for the abstract base the config's
        ``architectures[0]`` (BertModel when absent)."""
        if not cls.__dict__.get("_abstract_base", False) or config is None:
            return cls
        name = (getattr(config, "architectures", None) or ["BertModel"])[0]
        head = head_for_class(name)
        if head is None:
            known = ", ".join(layout.class_name for layout in LAYOUTS.values())
            raise HeadError(f"unknown BERT architecture {name!r}; expected one of {known}")
        return cls._class_for_head(head)

    @classmethod
    def _class_for_head(cls, head):
        """``cls``, or for the abstract base the class of ``head``."""
        if not cls.__dict__.get("_abstract_base", False):
            return cls
        # The class is looked up by its public name: bertconvert's lazy re-export table
        # imports the head classes on first use, where importing .heads here would close
        # the cycle heads -> trunk -> loading -> heads.
        import bertconvert

        return getattr(bertconvert, LAYOUTS[head].class_name)

    @classmethod
    def _from_tf(cls, path, opts, kwargs):
        """``from_pretrained(path, from_tf=True)``: convert the TF checkpoint in memory."""
        # The one import of convert from models (tests/test_architecture.py allows exactly
        # this one, here): converting is convert's job. state_dict_from_checkpoint builds no
        # model, so this import closes no cycle; the model is built here, as for any weights.
        from ..convert.stream import state_dict_from_checkpoint

        dtype = opts.get("torch_dtype") or opts.get("dtype") or "float32"
        converted = state_dict_from_checkpoint(
            path, config=opts.get("config"), head=cls.head_name or "auto",
            num_labels=kwargs.get("num_labels"), dtype=str(dtype).replace("torch.", ""))
        model = cls._class_for_head(converted.report.head).from_converted_state(
            converted.state_dict, converted.config, converted.report.num_labels)
        return (model, converted.report) if opts.get("output_loading_info") else model

    @classmethod
    def from_converted_state(cls, state_dict, config, num_labels=None):
        """The model built from ``config`` (on the meta device) holding ``state_dict``, which
        has every key but tied aliases (a converter's output: nothing to initialise); in eval
        mode. A key left unfilled is a bug of the converter: ConversionError."""
        kwargs = {"num_labels": num_labels} if cls.label_argument == "num_labels" else {}
        with on_meta_device():
            model = cls(config, **kwargs)
        model.load_state_dict(state_dict, strict=False, assign=True)
        model.tie_weights()
        left = [n for n, p in list(model.named_parameters()) + list(model.named_buffers())
                if p.is_meta]
        if left:  # the plan accounts for every key, so this is a bug, never user input
            raise ConversionError(f"parameters left unfilled after conversion: {left}")
        return model.eval()

    def load_pretrained_state(self, state_dict, source="state_dict", strict=False, dtype=None,
                              copy_tensors=True):
        """Load a normalised state dict into this model (built on meta or not).

        Tensors are assigned (not copied, unless ``copy_tensors``), cast to ``dtype``
        (default float32). Shape mismatches raise WeightsError; missing keys are initialised
        as Google does and logged at WARNING, unexpected ones logged (both raise with
        ``strict``). Returns ``{"missing_keys", "unexpected_keys", "initialized_keys"}``.
        """
        expected = self.state_dict(keep_vars=True)
        tied = self.tied_weight_keys()
        provided = dict(state_dict)
        for alias in tied:
            target = "bert.embeddings.word_embeddings.weight"
            if alias in provided and target not in provided:
                provided[target] = provided.pop(alias)
            elif alias in provided:
                provided.pop(alias)
        mismatched = [(k, tuple(v.shape), tuple(expected[k].shape)) for k, v in provided.items()
                      if k in expected and tuple(v.shape) != tuple(expected[k].shape)]
        if mismatched:
            raise mismatch_error(self, sorted(mismatched), source)
        unexpected = sorted(k for k in provided if k not in expected)
        absent = sorted(k for k in expected if k not in provided and k not in tied)
        if expected and len(unexpected) == len(provided):
            # Not one tensor fits: a wrong file (another architecture, a renamed dump), not
            # a BERT with a few keys missing. Loading would give a wholly random model.
            found = ", ".join(unexpected[:8]) + (" ..." if len(unexpected) > 8 else "")
            if unexpected and all(k.startswith("module.") for k in unexpected):
                found += " -- saved from a DataParallel wrapper: strip the 'module.' prefix"
            raise WeightsError(
                f"none of the {len(provided)} tensor(s) in {source} is a parameter of "
                f"{type(self).__name__} (found {found or 'no tensors'}; expected keys such as "
                f"{', '.join(absent[:3])}); pass the weights of a BERT model saved by "
                "bertconvert, transformers or pytorch-pretrained-bert, or convert a TF "
                "checkpoint with `bertconvert convert`")
        # transformers saves heads that ignore the pooler without it; that absence is expected.
        unused_pooler = [k for k in absent if not self.pooler_used and k.startswith("bert.pooler.")]
        missing = [k for k in absent if k not in unused_pooler]
        if strict and (missing or unexpected):
            raise WeightsError(
                f"{source} does not match {type(self).__name__}: missing {missing or 'none'}; "
                f"unexpected {unexpected or 'none'}")
        not_float = sorted(f"{k} ({v.dtype})" for k, v in provided.items()
                           if k in expected and expected[k].is_floating_point()
                           and not v.is_floating_point())
        if not_float:
            raise WeightsError(f"{len(not_float)} tensor(s) in {source} are not floating point but "
                               f"fill floating-point parameters of {type(self).__name__}: "
                               f"{', '.join(not_float[:10])}; the file does not hold model weights")
        check_fresh_size(self, expected, absent, provided, source)
        target = resolve_dtype(dtype, provided)
        load = {}
        for key, value in provided.items():
            if key not in expected:
                continue
            if value.is_floating_point():
                value = value.to(device="cpu", dtype=target, copy=copy_tensors)
            else:
                value = value.to(device="cpu", copy=copy_tensors)
            load[key] = value
        self.load_state_dict(load, strict=False, assign=True)
        self._initialise_meta(target)
        self.tie_weights()
        if unused_pooler:  # one line for the whole pooler, at INFO: nothing is wrong
            logger.info("%s holds no pooler (%s): %s does not use it, so it was initialised; "
                        "convert with `bertconvert convert --keep-pooler` (Python: "
                        "keep_pooler=True) to keep the checkpoint's", source,
                        ", ".join(unused_pooler), type(self).__name__)
        if missing:
            logger.warning(
                "%d weight(s) of %s were not in %s and were freshly initialised "
                "(normal(0, %s), LayerNorm 1/0, biases 0); train them before use: %s",
                len(missing), type(self).__name__, source, self.config.initializer_range,
                ", ".join(missing))
        if unexpected:
            logger.warning("%d weight(s) in %s are not used by %s: %s", len(unexpected), source,
                           type(self).__name__, ", ".join(unexpected))
        return {"missing_keys": missing, "unexpected_keys": unexpected,
                "initialized_keys": sorted(missing + unused_pooler)}

    def _initialise_meta(self, dtype):
        """Give every parameter still on the meta device (absent from the checkpoint) real
        memory and Google's initialisation; tied aliases are re-linked by tie_weights."""
        tied = self.tied_weight_keys()
        for module_name, module in self.named_modules():
            prefix = f"{module_name}." if module_name else ""
            for attr, param in list(module._parameters.items()):
                if param is None or not param.is_meta or prefix + attr in tied:
                    continue
                fresh = torch.empty(param.shape, dtype=dtype if param.is_floating_point()
                                    else param.dtype, device="cpu")
                init_(fresh, kind_of_module_tensor(module, attr), self.config.initializer_range)
                module._parameters[attr] = nn.Parameter(fresh, requires_grad=param.requires_grad)
            for attr, buf in list(module._buffers.items()):
                if buf is not None and buf.is_meta:
                    module._buffers[attr] = torch.zeros(buf.shape, dtype=buf.dtype)

    # --- saving ------------------------------------------------------------------------
    def config_for_saving(self):
        """A copy of ``self.config`` that describes this model (label count, dtype)."""
        config = copy.deepcopy(self.config)
        if self.label_argument == "num_labels":
            config.num_labels = self.num_labels
        return config

    def save_pretrained(self, save_directory, format="safetensors"):
        """Write ``config.json`` (transformers flavour, ``architectures`` = this class) and
        ``model.safetensors`` (``format="pytorch"``: ``pytorch_model.bin``; "both") into
        ``save_directory``, each file atomically. Returns the written paths.
        """
        save_directory = os.fspath(save_directory)
        if os.path.exists(save_directory) and not os.path.isdir(save_directory):
            raise OutputExistsError(f"{save_directory} exists and is not a directory; "
                                    "save_pretrained needs a directory path")
        data = self.config_for_saving().to_hf_dict(architectures=[type(self).__name__])
        dtype = next((p.dtype for p in self.parameters() if p.is_floating_point()), None)
        if dtype is not None:
            data["dtype"] = str(dtype).replace("torch.", "")
        config_path = os.path.join(save_directory, serialization.CONFIG_NAME)
        # Rendered before anything is written: a config JSON cannot hold (e.g. NaN) fails alone.
        text = dumps_json(data, ConfigError, config_path, indent=2, sort_keys=True) + "\n"
        os.makedirs(save_directory, exist_ok=True)
        written = serialization.save_state_dict(self.state_dict(), save_directory, format=format)
        with atomic_write(config_path, "w") as f:
            f.write(text)
        written.append(config_path)
        return written
