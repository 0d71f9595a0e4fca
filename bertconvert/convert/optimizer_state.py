"""``optimizer.safetensors``: a run's Adam slots and global_step beside the converted weights.

Written by ``convert --optimizer-state`` (from the checkpoint's ``<var>/adam_m``,
``<var>/adam_v`` and ``global_step``, through the plan: each slot in its parameter's
PyTorch layout), read by :func:`bertconvert.resume_from_tf` and by ``export`` (which writes
them back as Google's slot variables). Layout::

    <parameter key>/adam_m   float32, the parameter's shape (first moment)
    <parameter key>/adam_v   float32, the parameter's shape (second moment)
    global_step              int64 scalar
    __metadata__             {"optimizer": "AdamWeightDecay", "global_step": "<n>"}
"""
import os

import numpy as np

from ..layout import OPTIMIZER_NAME
from ..errors import SlotShapeError, UnsupportedOptimizerError, WeightsError
from .slots import ADAM_SLOTS, GLOBAL_STEP
from .tensors import TensorCopier
from .writers import SafetensorsStreamWriter, TensorSpec, safetensors_order

OPTIMIZER = "AdamWeightDecay"


def slot_key(key, slot):
    """The file's tensor name of parameter ``key``'s ``slot`` (``adam_m`` / ``adam_v``)."""
    return f"{key}/{slot}"


def optimizer_record(slots, global_step):
    """What ``conversion.json`` records under ``optimizer_state``."""
    return {"file": OPTIMIZER_NAME, "optimizer": OPTIMIZER, "global_step": int(global_step),
            "slots": {key: [m.name, v.name] for key, (m, v) in sorted(slots.items())}}


def _slot_specs(slots):
    """``({file name: planned slot}, specs in the file's order, global_step's included)``."""
    planned = {slot_key(k, s): t for k, pair in slots.items() for s, t in zip(ADAM_SLOTS, pair)}
    specs = [TensorSpec(name, "float32", tuple(t.shape)) for name, t in planned.items()]
    return planned, safetensors_order(specs + [TensorSpec(GLOBAL_STEP, "int64", ())])


def slot_read_order(slots):
    """The planned slots in the order :func:`write_optimizer_file` reads them."""
    planned, specs = _slot_specs(slots)
    return [planned[s.name] for s in specs if s.name in planned]


def write_optimizer_file(raw, reader, slots, global_step):
    """Stream every planned slot (``{key: (m, v)}`` from :func:`~.slots.plan_slots`) and the
    step into the open binary file ``raw``, piece by piece (one slot's buffer in memory)."""
    planned, specs = _slot_specs(slots)
    writer = SafetensorsStreamWriter(raw, specs, metadata={"optimizer": OPTIMIZER,
                                                           "global_step": global_step})
    with TensorCopier(reader, "float32") as copier:
        for spec in specs:
            if spec.name == GLOBAL_STEP:
                writer.write(spec.name, np.asarray(global_step, dtype=np.int64))
            else:
                writer.write_chunks(spec.name, copier.chunks(planned[spec.name]))
    writer.close()


def save_optimizer_arrays(path, slots, global_step):
    """Write ``{key: (adam_m, adam_v)}`` (numpy) and the step as an ``optimizer.safetensors``
    at ``path``, atomically."""
    from ..atomic import atomic_write

    arrays = {slot_key(k, s): np.ascontiguousarray(a, dtype=np.float32)
              for k, pair in slots.items() for s, a in zip(ADAM_SLOTS, pair)}
    arrays[GLOBAL_STEP] = np.asarray(global_step, dtype=np.int64)
    specs = safetensors_order([TensorSpec(n, a.dtype.name, a.shape) for n, a in arrays.items()])
    with atomic_write(path) as f:
        writer = SafetensorsStreamWriter(f, specs, metadata={"optimizer": OPTIMIZER,
                                                             "global_step": int(global_step)})
        for spec in specs:
            writer.write(spec.name, arrays[spec.name])
        writer.close()
    return path


def read_optimizer_file(path):
    """``({key: (adam_m, adam_v)}, global_step)`` from an ``optimizer.safetensors``."""
    from safetensors import safe_open

    try:
        with safe_open(os.fspath(path), framework="numpy") as f:
            meta = f.metadata() or {}
            tensors = {name: f.get_tensor(name) for name in f.keys()}
    except Exception as e:  # SafetensorError and friends
        raise WeightsError(f"{path} is not a valid safetensors file: {e}") from e
    if meta.get("optimizer") != OPTIMIZER or GLOBAL_STEP not in tensors:
        raise UnsupportedOptimizerError(f"{path} does not hold {OPTIMIZER} state (metadata "
                                        f"{meta!r})")
    step = tensors.pop(GLOBAL_STEP)
    if step.shape != () or step.dtype.kind not in "iu" or int(step) < 0:
        raise SlotShapeError(f"{path}: global_step is {step.dtype} {list(step.shape)}")
    slots = {}
    for name in tensors:
        key, _, slot = name.rpartition("/")
        if slot not in ADAM_SLOTS:
            raise UnsupportedOptimizerError(f"{path}: unexpected tensor {name!r}")
        slots.setdefault(key, {})[slot] = tensors[name]
    out = {}
    for key, pair in slots.items():
        if set(pair) != set(ADAM_SLOTS) or pair["adam_m"].shape != pair["adam_v"].shape:
            raise SlotShapeError(f"{path}: {key} needs adam_m and adam_v of one shape, found "
                                 + ", ".join(f"{s} {list(a.shape)}" for s, a in sorted(pair.items())))
        out[key] = (pair["adam_m"], pair["adam_v"])
    return out, int(step)


def export_slots(path, exported):
    """The slot variables and ``global_step`` of the ``optimizer.safetensors`` at ``path`` in
    Google's names and layout (``{"<var>/adam_m": array, ..., "global_step": int64}``), for
    the variables ``exported`` (``{tf name: array}`` from the weights). Every slot must
    belong to an exported variable and have its shape."""
    from .rules import reverse_rule
    from .transforms import invert_transform

    slots, step = read_optimizer_file(path)
    out, unknown, bad = {}, [], []
    for key, (m, v) in sorted(slots.items()):
        found = reverse_rule(key)
        if found is None or found[1] not in exported:
            unknown.append(key)
            continue
        rule, name = found
        m, v = (invert_transform(rule.transform, a.astype(np.float32, copy=False)) for a in (m, v))
        if m.shape != exported[name].shape:
            bad.append(f"{key}: slots {list(m.shape)} in TF layout, {name} {list(exported[name].shape)}")
            continue
        out[f"{name}/adam_m"], out[f"{name}/adam_v"] = m, v
    if bad:
        raise SlotShapeError(f"{path}: slot shapes differ from their variables: " + "; ".join(bad))
    if unknown:
        raise SlotShapeError(f"{path} holds slots of parameters the weights do not have: "
                             + ", ".join(unknown))
    out[GLOBAL_STEP] = np.asarray(step, dtype=np.int64)
    return out
