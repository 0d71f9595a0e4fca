"""The tensors of a planned conversion, one at a time, and a whole state dict in memory.

:func:`iter_tensors` yields every key of a :class:`~bertconvert.convert.plan.ConversionPlan`
as a numpy array (read crc-checked, transformed, cast; or freshly initialised where the plan
says so). :func:`state_dict_from_checkpoint` plans and reads a whole checkpoint into
``{key: torch tensor}`` without building a model.

That function is the one thing the models pillar takes from convert:
``from_pretrained(from_tf=True)`` imports it lazily, inside that one branch. So this module
builds no model and imports none of ``bertconvert.models``' model classes (only its config,
shape hints and initialisation), and the import closes no cycle; the architecture test
allows models -> convert for exactly that import.
"""
import logging
from typing import NamedTuple

import numpy as np

from ..errors import ConversionError, DtypeRangeError, MissingDependencyError, option
from ..terminal.progress import progress_bar
from .gelu import check_gelu
from .plan import plan_conversion
from .source import describe_source
from .report import ConversionReport
from .tensors import TensorCopier, storage_dtype, wider_dtype_hint

logger = logging.getLogger(__name__)

DTYPES = ("float32", "float16", "bfloat16")


def _require_torch(what):
    """torch, imported on first need; a named error with the way out when it is missing."""
    try:
        import torch
    except ImportError as e:
        raise MissingDependencyError(
            f"{what} needs PyTorch, which cannot be imported here ({e}). Install it "
            f"(pip install torch), or convert with {_format_option('safetensors')} (the "
            "default), which needs numpy only") from e
    return torch


def _format_option(format):
    return option(f"--format {format}", f"format={format!r}")


def _to_torch(array):
    """numpy -> torch sharing memory (ml_dtypes' bfloat16 is reinterpreted from its bits)."""
    import torch

    if array.dtype.name == "bfloat16":
        return torch.from_numpy(array.view(np.int16)).view(torch.bfloat16)
    return torch.from_numpy(array)


def check_dtype(dtype):
    """Raise ConversionError unless ``dtype`` is one of :data:`DTYPES`."""
    if dtype not in DTYPES:
        raise ConversionError(f"unknown dtype {dtype!r}; expected one of {', '.join(DTYPES)}")


def _fresh(key, shape, config, dtype):
    """Google's initialisation (:mod:`bertconvert.models.initialise`) for a parameter the
    checkpoint lacks. Drawn from torch's RNG (imported only here), so ``torch.manual_seed``
    makes it reproducible as it did with pytorch-pretrained-bert."""
    torch = _require_torch(f"initialising {key} (not in the checkpoint)")
    from ..models.initialise import init_, kind_of_key

    spread = config.initializer_range
    # init_ refuses a spread that overflows float32; the output dtype may be narrower.
    value = init_(torch.empty(shape), kind_of_key(key), spread).to(getattr(torch, dtype))
    if not bool(torch.isfinite(value).all()):
        raise DtypeRangeError(
            f"the freshly initialised {key} (normal(0, initializer_range={spread:g})) holds "
            f"values beyond the largest {dtype}: they would be written as infinity. "
            f"{wider_dtype_hint(dtype)}, or lower initializer_range")
    if dtype == "bfloat16":
        return value.view(torch.int16).numpy().view(storage_dtype(dtype))
    return value.numpy()


def iter_tensors(reader, plan, dtype, progress=False, reuse_buffer=True, order=None):
    """Yield ``(key, numpy array)`` for every planned and every new key, one at a time, in
    ``order`` (keys; default: the plan's). With ``reuse_buffer`` an array is only valid until
    the next one is produced (one scratch buffer serves them all)."""
    planned = {t.key: t for t in plan.tensors}
    fresh = dict(plan.new_keys)
    with TensorCopier(reader, dtype) as copier, _progress(plan, progress) as bar:
        for key in order or ([t.key for t in plan.tensors] + [k for k, _ in plan.new_keys]):
            if key in fresh:
                yield key, _fresh(key, fresh[key], plan.config, dtype)
                continue
            t = planned[key]
            yield key, copier.array(t, fresh=not reuse_buffer)
            bar.update(t.nbytes)


def _progress(plan, progress):
    """A bar over the planned source bytes (:mod:`bertconvert.terminal.progress` decides
    whether it is drawn)."""
    return progress_bar(progress, total=sum(t.nbytes for t in plan.tensors), desc="converting",
                        unit="B", unit_scale=True, leave=False)


class ConvertedState(NamedTuple):
    """What :func:`state_dict_from_checkpoint` returns."""

    #: every key of the target model but tied aliases -> torch tensor
    state_dict: dict
    #: the BertConfig the plan settled on (label count included)
    config: object
    #: head, label count, what was skipped, dropped or freshly initialised
    report: ConversionReport


def state_dict_from_checkpoint(checkpoint, *, config=None, head="auto", num_labels=None,
                               dtype="float32", allow_new_head=False, gelu=None,
                               keep_pooler=True):
    """Convert the TF checkpoint in memory into a state dict, without building a model.

    Same planning and checks as :func:`~bertconvert.convert.run.convert_checkpoint`
    (``config``, ``head``, ``num_labels``, ``allow_new_head``, ``gelu`` mean the same); nothing is
    written. Returns a :class:`ConvertedState`; the model to load it into is
    ``HEADS[result.report.head]`` built from ``result.config``. Unlike written conversions,
    the pooler is kept by default (``keep_pooler``): bertconvert's classes all have one, so
    leaving it out would only swap the checkpoint's pooler for a random one.
    """
    check_dtype(dtype)
    check_gelu(gelu)
    _require_torch("converting in memory")
    from .remote import open_source

    with open_source(checkpoint, config) as (reader, config, _):  # local, or a URL
        cfg, config_path, source = describe_source(config, reader, gelu)
        plan = plan_conversion(reader, cfg, head=head, num_labels=num_labels,
                               allow_new_head=allow_new_head, config_path=config_path,
                               keep_pooler=keep_pooler)
        if getattr(reader, "store", None) is not None:  # remote: fetch ahead, in this order
            reader.store.schedule([reader.entry(t.name) for t in plan.tensors])
        state = {key: _to_torch(array) for key, array in
                 iter_tensors(reader, plan, dtype, reuse_buffer=False)}
    report = ConversionReport.from_plan(plan, dtype)
    report.activation, report.config_inferred = source.activation, source.config_inferred
    report.notes.extend(source.notes)
    return ConvertedState(state, plan.config, report)
