"""A checkpoint's Adam slots and global_step, mapped through the conversion plan.

Google's ``AdamWeightDecayOptimizer`` keeps two slots per trainable variable,
``<var>/adam_m`` and ``<var>/adam_v``, of the variable's shape, and ``create_optimizer``
counts updates in ``global_step`` (int64). A slot is laid out like its variable, so it takes
the variable's rule: a ``kernel``'s slots are transposed with it into the ``weight``'s
layout (reshaped with it for TF2 names), through the same
:class:`~bertconvert.convert.tensors.TensorCopier` (crc-checked, exact bytes).

Slots of other optimizers are refused by name (:data:`OTHER_SLOTS`): LAMB's
``<var>/LAMB``/``<var>/LAMB_1`` (whose update is not Adam's), ``tf.train.AdamOptimizer``'s
``<var>/Adam``/``<var>/Adam_1`` (bias-corrected), Keras' ``.OPTIMIZER_SLOT`` paths.
"""
import re
from dataclasses import replace

import numpy as np

from ..errors import SlotShapeError, SlotsMissingError, UnsupportedOptimizerError
from .. import layout
from .rules import part_of_key, strip_tf2_suffix
from .tensors import TensorCopier

#: Google's slot suffixes (``<var>/adam_m``: first moment, ``<var>/adam_v``: second).
ADAM_SLOTS = ("adam_m", "adam_v")
#: (regex searched in a variable name, what it is) for slots this module does not carry over.
OTHER_SLOTS = (
    (r"(^|/)LAMB(_1)?$", "LAMB slots (<var>/LAMB, <var>/LAMB_1)"),
    (r"/\.OPTIMIZER_SLOT/", "Keras/TF2 optimizer slots (<var>/.OPTIMIZER_SLOT/...)"),
    (r"(^|/)Adam(_1)?$", "tf.train.AdamOptimizer slots (<var>/Adam, <var>/Adam_1)"),
    (r"(^|/)(Momentum|Adagrad|RMSProp)(_\d+)?$", "Momentum/Adagrad/RMSProp slots"),
)
GLOBAL_STEP = "global_step"


def _slot_name(name, slot):
    """The TF1 slot variable of ``name`` (a TF2 name keeps its suffix after the slot path)."""
    return f"{name}/{slot}"


def describe_optimizer_state(names):
    """``(adam slot count, {what: [examples]})`` of the optimizer state among ``names``."""
    adam = sum(1 for n in names if n.rsplit("/", 1)[-1] in ADAM_SLOTS)
    others = {}
    for name in names:
        bare = strip_tf2_suffix(name)
        for pattern, what in OTHER_SLOTS:
            if re.search(pattern, bare):
                others.setdefault(what, []).append(name)
    return adam, others


def require_adam(reader):
    """Raise :class:`UnsupportedOptimizerError` unless ``reader`` holds Google's Adam slots
    (names only: nothing is read)."""
    names = list(reader.get_variable_to_shape_map())
    adam, others = describe_optimizer_state(names)
    if adam:
        return
    if others:
        found = "; ".join(f"{what}, e.g. {sorted(v)[0]} ({len(v)} variables)"
                          for what, v in sorted(others.items()))
        raise UnsupportedOptimizerError(
            f"{reader.prefix} holds slots of another optimizer: {found}. Only Google's "
            "AdamWeightDecayOptimizer slots (<var>/adam_m, <var>/adam_v, from "
            "create_optimizer) can be carried over")
    raise UnsupportedOptimizerError(
        f"{reader.prefix} holds no optimizer slots (no <var>/adam_m, <var>/adam_v): it was "
        "saved without its optimizer (an export, or slots stripped); there is no training "
        "state to carry over")


def read_global_step(reader):
    """The checkpoint's ``global_step`` as an int (a named error if it has none)."""
    if not reader.has_tensor(GLOBAL_STEP):
        raise UnsupportedOptimizerError(f"{reader.prefix} has Adam slots but no global_step")
    value = np.asarray(reader.get_tensor(GLOBAL_STEP))
    # (optimizer.safetensors stores it as int64, as TensorFlow does: a uint64 beyond is no step)
    if value.shape != () or value.dtype.kind not in "iu" or \
            not 0 <= int(value) <= np.iinfo(np.int64).max:
        raise SlotShapeError(f"{reader.prefix}: global_step is {value.dtype} {list(value.shape)} "
                             f"= {value.tolist()!r}, expected a non-negative integer scalar "
                             "(int64)")
    return int(value)


def plan_slots(reader, plan):
    """``{key: (planned adam_m, planned adam_v)}`` for every planned tensor: each slot is a
    :class:`~bertconvert.convert.plan.PlannedTensor` of the variable's key and rule. Raises
    :class:`UnsupportedOptimizerError` (no Adam slots), :class:`SlotsMissingError` (planned
    or freshly initialised parameters without slots), :class:`SlotShapeError`."""
    require_adam(reader)
    shapes = {n: tuple(int(d) for d in s) for n, s in reader.get_variable_to_shape_map().items()}
    dtypes = reader.get_variable_to_dtype_map()
    out, missing, bad = {}, [], []
    for t in plan.tensors:
        pair = []
        for slot in ADAM_SLOTS:
            name = _slot_name(t.name, slot)
            if name not in shapes:
                missing.append(f"{t.key} ({name})")
                continue
            dtype = getattr(dtypes[name], "name", str(dtypes[name]))
            if shapes[name] != t.source_shape or dtype != t.source_dtype:
                bad.append(f"{name} {dtype} {list(shapes[name])}, but {t.name} is "
                           f"{t.source_dtype} {list(t.source_shape)}")
                continue
            pair.append(replace(t, name=name))
        if len(pair) == 2:
            out[t.key] = tuple(pair)
    missing += [f"{key} (not in the checkpoint: freshly initialised)" for key, _ in plan.new_keys]
    # A pooler the head's outputs do not use gets no gradient, so Google's optimizer made
    # no slots for it (tf.gradients gives None): it has nothing to carry over.
    if not layout.LAYOUTS[plan.head].uses_pooler:
        missing = [m for m in missing if part_of_key(m.split(" ", 1)[0]) != "pooler"]
    if bad:
        raise SlotShapeError(f"{reader.prefix}: {len(bad)} slot(s) differ from their variable: "
                             + "; ".join(sorted(bad)))
    if missing:
        raise SlotsMissingError(
            f"the {plan.head} head of {reader.prefix} has {len(missing)} parameter(s) the Adam "
            f"slots do not cover: {', '.join(sorted(missing))}. Choose the head the run was "
            "trained with")
    return out


def iter_slots(reader, slots):
    """Yield ``(key, adam_m, adam_v)`` float32 numpy arrays in PyTorch layout."""
    with TensorCopier(reader, "float32") as copier:
        for key, (m, v) in slots.items():
            yield key, copier.array(m, fresh=True), copier.array(v, fresh=True)
