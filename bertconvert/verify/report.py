"""Parity results: per-stage comparison, the report, its table and JSON.

:func:`compare_stage` compares one stage's arrays; :func:`compare_all` compares every stage
a run produced and nests each layer's sub-stages (``"layer 3 query"`` ...) under the layer;
:class:`ParityReport` is what :func:`bertconvert.verify.verify` returns. The tolerance
semantics and defaults are documented in :mod:`bertconvert.verify`.
"""
import dataclasses
import json
import math

import numpy as np

from ..atomic import atomic_write
from ..errors import ParityError
from .stages import HEAD_STAGES, LAYER_SUBSTAGES, split_stage_name


@dataclasses.dataclass
class StageResult:
    """The comparison of one stage (``"embeddings"``, ``"layer 3"``, ``"logits"``...).

    A layer's ``substages`` hold the comparisons of its intermediate results (``"layer 3
    query"`` ...; see :data:`~bertconvert.verify.stages.LAYER_SUBSTAGES`), in computation
    order; ``passed`` is this stage's own comparison, :attr:`all_passed` includes them.
    """

    name: str
    shape: tuple
    max_abs: float
    max_rel: float
    passed: bool
    worst_index: tuple = None
    note: str = ""
    substages: list = dataclasses.field(default_factory=list)
    #: The absolute tolerance this stage was held to (``atol + scale * max|reference|``).
    atol: float = None

    @property
    def all_passed(self):
        """This stage and all of its sub-stages are within tolerance."""
        return self.passed and all(s.passed for s in self.substages)

    def flat(self):
        """The sub-stages, then this stage: the order they are computed and reported in."""
        return list(self.substages) + [self]

    def to_dict(self):
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        d["shape"] = list(self.shape) if self.shape is not None else None
        d["worst_index"] = list(self.worst_index) if self.worst_index is not None else None
        for key in ("max_abs", "max_rel"):  # JSON has no inf/nan
            if not math.isfinite(d[key]):
                d[key] = str(d[key])
        d["substages"] = [s.to_dict() for s in self.substages]
        return d


@dataclasses.dataclass
class WeightsResult(StageResult):
    """The weights stage (see :mod:`bertconvert.verify.weights`): every tensor of the model
    directory compared bit for bit with its checkpoint tensor (or its recorded digest).

    ``differing`` lists the first differing tensors (``key``, checkpoint ``name``,
    ``reason``, ``max_abs``), ``differing_count`` counts them all; ``skipped`` rows were
    not compared (``note`` says why) and do not fail.
    """

    tensors: int = 0
    differing: list = dataclasses.field(default_factory=list)
    differing_count: int = 0
    first_differing: str = None
    source: str = None
    skipped: bool = False
    notes: list = dataclasses.field(default_factory=list)

    def to_dict(self):
        d = super().to_dict()
        for item in d["differing"]:
            if item.get("max_abs") is not None and not math.isfinite(item["max_abs"]):
                item["max_abs"] = str(item["max_abs"])
        return d

    def describe(self):
        """The table's result column for this row."""
        if self.skipped:
            return self.note
        if self.passed:
            return f"ok (bit-exact with the {self.source})"
        return "FAIL (" + self.note + ")"


def compare_stage(name, actual, reference, atol, rtol, scale=0.0):
    """Compare one stage; ``actual``/``reference`` are arrays or None (stage missing).

    The absolute tolerance is ``atol + scale * max|reference|`` (see
    :mod:`bertconvert.verify.tolerance`); ``scale`` 0 is a plain ``allclose``."""
    if actual is None or reference is None:
        side = "PyTorch model" if actual is None else "reference"
        shape = tuple(np.shape(reference if actual is None else actual))
        return StageResult(name, shape, math.inf, math.inf, False, note=f"missing in {side}")
    # float32 is exact enough for float32-or-narrower results: the difference of two float32
    # numbers is rounded by at most 6e-8 relative, far below those tolerances, and it keeps
    # big MLM logits cheap. A float64 check compares in float64.
    wide = np.float64 if np.float64 in (np.asarray(actual).dtype, np.asarray(reference).dtype) \
        else np.float32
    a = np.asarray(actual, dtype=wide)
    b = np.asarray(reference, dtype=wide)
    if a.shape != b.shape:
        return StageResult(name, a.shape, math.inf, math.inf, False,
                           note=f"shape {list(a.shape)} vs reference {list(b.shape)}")
    if a.size == 0:
        return StageResult(name, a.shape, 0.0, 0.0, True)
    abs_b = np.abs(b)
    diff = np.abs(a - b)
    note = ""
    if not np.isfinite(diff).all():  # NaN/inf on either side: never within tolerance
        bad = ~np.isfinite(diff)
        note = f"{int(bad.sum())} non-finite value(s)"
        diff[bad] = np.inf
        abs_b[~np.isfinite(abs_b)] = 0.0
    largest = float(abs_b.max())
    stage_atol = atol + scale * largest
    excess = diff - (stage_atol + rtol * abs_b)
    worst = tuple(int(i) for i in np.unravel_index(int(np.argmax(excess)), a.shape))
    max_abs = float(diff.max())
    max_rel = max_abs / largest if largest > 0 else (0.0 if max_abs == 0 else math.inf)
    return StageResult(name, a.shape, max_abs, max_rel, bool(excess.max() <= 0), worst, note,
                       atol=stage_atol)


@dataclasses.dataclass
class ParityReport:
    """Outcome of :func:`verify`: per-stage errors, settings, inputs and wall time per phase.

    ``stages`` are the output comparisons (embeddings, layers, pooled, head outputs);
    ``weights`` is the weights stage (:class:`WeightsResult`, compared before the forward
    pass: the first row of the table, ``"weights"`` in JSON), or None.
    """

    checkpoint: str
    model_dir: str
    head: str
    num_labels: int
    device: str
    dtype: str
    atol: float
    rtol: float
    reference: str
    stages: list
    inputs: dict = dataclasses.field(default_factory=dict)
    timings: dict = dataclasses.field(default_factory=dict)
    notes: list = dataclasses.field(default_factory=list)
    weights: WeightsResult = None
    #: GELU form the reference computed with: "exact" (erf) or "tanh" (approximation).
    gelu: str = None
    #: How stages were compared and why (:class:`~bertconvert.verify.tolerance.Tolerance`);
    #: None means plain ``atol``/``rtol``.
    tolerance: object = None

    def all_stages(self):
        """Every comparison, flat, in computation order: ``embeddings, layer 0 query, layer 0
        key, layer 0 value, layer 0 attention output, layer 0 intermediate, layer 0, ...``."""
        return [flat for s in self.stages for flat in s.flat()]

    @property
    def passed(self):
        """True when the weights are bit-exact (or their stage was skipped) and every output
        stage and every layer sub-stage is within tolerance."""
        weights_ok = self.weights is None or self.weights.passed
        return weights_ok and bool(self.stages) and all(s.all_passed for s in self.stages)

    def output_stages(self):
        """The output comparisons (:attr:`stages`; the weights row is :attr:`weights`)."""
        return list(self.stages)

    @property
    def first_failure(self):
        """The first output stage over tolerance (e.g. ``"layer 3"``); ``"weights"`` when
        every output is within tolerance but a tensor of the model directory differs from
        the checkpoint; None when parity holds.

        Outputs come first because they say where in the computation a wrong weight
        shows; :attr:`first_differing_tensor` names the tensor itself. A failing sub-stage
        counts for its layer: a wrong query weight in layer 3 gives ``"layer 3"`` even where
        the layer's output stays within tolerance; :attr:`first_failure_stage` names the
        sub-stage.
        """
        first = self.first_output_failure
        if first is None and self.weights is not None and not self.weights.passed:
            return "weights"
        return first

    @property
    def first_output_failure(self):
        """The first output stage over tolerance (``"layer 3"``), whatever the weights say."""
        return next((s.name for s in self.stages if not s.all_passed), None)

    @property
    def first_failure_stage(self):
        """The first output comparison over tolerance, sub-stages included (``"layer 3
        query"``); ``"weights"`` when only the weights stage fails."""
        first = next((s.name for s in self.all_stages() if not s.passed), None)
        if first is None and self.weights is not None and not self.weights.passed:
            return "weights"
        return first

    @property
    def first_differing_tensor(self):
        """The first model-directory tensor that differs from the checkpoint, or None."""
        return self.weights.first_differing if self.weights is not None else None

    def stage(self, name):
        """The :class:`StageResult` called ``name`` (a sub-stage such as ``"layer 3 key"``,
        or ``"weights"``, too)."""
        for s in self.all_stages() + ([self.weights] if self.weights is not None else []):
            if s.name == name:
                return s
        raise KeyError(name)

    def summary(self):
        """One line: PASS, or FAIL naming the first differing tensor and/or the first stage
        over tolerance and by how much."""
        if self.tolerance is not None:
            settings = f"{self.device} {self.dtype}; tolerances {self.tolerance.describe()}"
        else:
            settings = f"{self.device} {self.dtype}, atol={self.atol:g} rtol={self.rtol:g}"
        outputs = self.output_stages()
        flat = [f for s in outputs for f in s.flat()]
        subs = len(flat) - len(outputs)
        counted = f"{len(outputs)} stages" + (f" + {subs} layer sub-stages" if subs else "")
        weights = self.weights
        if weights is None:
            weights_text = ""
        elif weights.skipped:
            weights_text = f"weights {weights.note}"
        elif weights.passed:
            weights_text = f"weights: {weights.tensors} tensors bit-exact with the {weights.source}"
        else:
            weights_text = f"weights: {weights.note}"
        first_output = next((s for s in flat if not s.passed), None)
        if first_output is None:
            worst = max(flat, key=lambda s: s.max_abs) if flat else None
            text = f"{counted} within tolerance ({settings})"
            if worst is not None:
                text += f"; largest abs error {worst.max_abs:.2e} at {worst.name}"
            if weights is not None and not weights.passed:
                return f"FAIL: {weights_text}; outputs: {text}"
            return f"PASS: {text}" + (f"; {weights_text}" if weights_text else "")
        detail = first_output.note or (
            f"max abs error {first_output.max_abs:.2e}, rel {first_output.max_rel:.2e}, "
            f"worst at index {list(first_output.worst_index)}")
        failed = sum(not s.passed for s in flat)
        checks = f"{len(flat)} checks ({counted})" if subs else counted
        text = (f"first stage over tolerance: {first_output.name} ({detail}); "
                f"{failed} of {checks} fail ({settings})")
        if weights is not None and not weights.passed:
            return f"FAIL: {weights_text}; outputs: {text}"
        return f"FAIL: {text}" + (f"; {weights_text}" if weights_text else "")

    def _table_rows(self, verbose):
        """(rows to print, how many layers' sub-stages are hidden): sub-stages are shown for
        failing layers, or for all with ``verbose``."""
        rows, hidden = ([self.weights] if self.weights is not None else []), 0
        for s in self.stages:
            if verbose or not s.all_passed:
                rows += s.flat()
            else:
                rows.append(s)
                hidden += bool(s.substages)
        return rows, hidden

    def format_table(self, verbose=False):
        """The human-readable report printed by ``bertconvert verify``.

        Each layer is one row; its sub-stages (query, key, value, attention output,
        intermediate) are listed above it when the layer or one of them fails, or always
        with ``verbose``. The JSON report (:meth:`to_dict`) always holds them.
        """
        labels = "" if self.num_labels is None else f", num_labels {self.num_labels}"
        lines = [f"checkpoint: {self.checkpoint}",
                 f"model:      {self.model_dir or '(converted in memory)'} "
                 f"[head {self.head}{labels}]",
                 f"reference:  {self.reference}",
                 *([f"gelu:       {self.gelu}"] if self.gelu else []),
                 f"inputs:     {self.inputs.get('source')}, shape {self.inputs.get('shape')}",
                 ""]
        rows, hidden = self._table_rows(verbose)
        width = max([len("stage")] + [len(s.name) for s in rows])
        lines.append(f"{'stage':<{width}}  {'shape':<14}  {'max abs':>9}  {'max rel':>9}  result")
        for s in rows:
            if isinstance(s, WeightsResult):
                count = f"{s.tensors} tensors"
                diff = f"{s.max_abs:>9.2e}" if s.differing_count and math.isfinite(s.max_abs) \
                    else f"{'-':>9}"
                lines.append(f"{s.name:<{width}}  {count:<14}  {diff}  {'-':>9}  {s.describe()}")
                continue
            shape = "x".join(str(n) for n in s.shape) if s.shape else "-"
            result = "ok" if s.passed else "FAIL" + (f" ({s.note})" if s.note else "")
            lines.append(f"{s.name:<{width}}  {shape:<14}  {s.max_abs:>9.2e}  "
                         f"{s.max_rel:>9.2e}  {result}")
        lines.append("")
        if hidden:
            lines.append(f"sub-stages ({', '.join(LAYER_SUBSTAGES)}) of the {hidden} passing "
                         "layer(s) are within tolerance and not shown; --verbose lists them")
        lines += [f"note: {n}" for n in self.notes]
        if self.timings:
            lines.append("time: " + ", ".join(f"{k} {v:.2f}s" for k, v in self.timings.items()))
        lines.append(self.summary())
        return "\n".join(lines)

    def to_dict(self):
        """Everything in the report as JSON-ready data (``passed``, ``first_failure`` too)."""
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        d["stages"] = [s.to_dict() for s in self.stages]
        d["tolerance"] = self.tolerance.to_dict() if self.tolerance is not None else None
        d["weights"] = self.weights.to_dict() if self.weights is not None else None
        d["passed"], d["first_failure"] = self.passed, self.first_failure
        d["first_failure_stage"] = self.first_failure_stage
        d["first_output_failure"] = self.first_output_failure
        d["first_differing_tensor"] = self.first_differing_tensor
        d["differing_tensors"] = self.weights.differing_count if self.weights is not None \
            else None
        d["summary"] = self.summary()
        return d

    def to_json(self, path):
        """Write :meth:`to_dict` as JSON, atomically; UnsafeOutputError (before writing) when
        ``path`` is one of the files the run read (see
        :func:`bertconvert.verify.sources.check_outputs_spare_inputs`)."""
        sources = getattr(self, "sources", None)
        if sources:
            from .sources import check_outputs_spare_inputs
            check_outputs_spare_inputs(sources["checkpoint"], sources["model_dir"],
                                       {"--json": path}, text=sources["text"],
                                       reference=sources["reference"])
        with atomic_write(path, "w") as f:
            json.dump(self.to_dict(), f, indent=2)
            f.write("\n")

    def raise_for_mismatch(self):
        """Raise :class:`ParityError` (exit code 1) carrying the table when parity fails
        (a differing weight included)."""
        if not self.passed:
            raise ParityError(self.summary() + "\n" + self.format_table())
        return self


def compare_all(torch_outputs, ref_outputs, head, atol, rtol, scale=0.0):
    """Compare every stage; returns (top-level StageResults with layer sub-stages, notes).
    ``scale``: see :func:`compare_stage`."""
    # Reference order first (embeddings, layers with their sub-stages, pooled, head); then
    # what only PyTorch produced and the head stages neither side produced, so a missing
    # stage shows up as a failure, never a pass. One exception: a golden file recorded
    # before sub-stages were compared has none, which is no fault of the model.
    notes = []
    ref_has_substages = any(split_stage_name(n)[1] for n in ref_outputs)
    names = list(ref_outputs)
    extra = [n for n in torch_outputs if n not in ref_outputs]
    if not ref_has_substages and any(split_stage_name(n)[1] for n in extra):
        extra = [n for n in extra if not split_stage_name(n)[1]]
        notes.append("the reference holds no per-layer sub-stages (a golden file recorded by "
                     "an older bertconvert): compared layer outputs only; record it again to "
                     "localise errors to a layer's query/key/value")
    names += extra
    names += [n for n in HEAD_STAGES.get(head, ()) if n not in names]
    flat = [compare_stage(n, torch_outputs.get(n), ref_outputs.get(n), atol, rtol, scale)
            for n in names]
    return _nest(flat), notes


def _nest(flat):
    """Attach each ``"layer N <part>"`` result to its ``"layer N"`` result, which follows it."""
    stages, pending, seen = [], {}, {}
    for result in flat:
        group, part = split_stage_name(result.name)
        if part is not None and group in seen:  # only PyTorch had it: after its layer
            seen[group].substages.append(result)
        elif part is not None:
            pending.setdefault(group, []).append(result)
        else:
            result.substages = pending.pop(result.name, [])
            seen[result.name] = result
            stages.append(result)
    # Sub-stages whose layer output is on neither side still count (as top-level rows).
    stages += [r for group in pending.values() for r in group]
    return stages
