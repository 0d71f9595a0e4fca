"""Numerical parity: does the PyTorch model compute what the TensorFlow model computed?

Both sides get the same deterministic batch (:mod:`bertconvert.verify_inputs`). The
reference is TensorFlow's own forward pass over the checkpoint (:mod:`bertconvert.tf_reference`)
or a golden file recorded from it earlier; the PyTorch side is the converted model directory
loaded with our classes, or the checkpoint converted in memory. Every stage is compared --
embeddings, each encoder layer, the pooled output, the head's outputs -- and the report names
the first stage that exceeds tolerance, which is where a conversion bug starts.

**Tolerances.** A stage passes when every element satisfies
``|torch - reference| <= atol + rtol * |reference|`` (numpy ``allclose`` semantics). The
report also gives, per stage, the max absolute error and the relative error
``max|torch - reference| / max|reference|``, plus the index of the worst element. Defaults
(:data:`DEFAULT_TOLERANCES`), from measurements of faithful conversions (tiny fixtures and a
random-weight BERT-base, 12 layers, batch 7 x 92, against TensorFlow 2.21 on CPU):

=========  =====  =====  =================================================================
dtype      atol   rtol   measured on faithful conversions / what is still caught
=========  =====  =====  =================================================================
float32    1e-4   1e-4   max abs error 2e-6 (std-0.02 weights) to 2e-5 (std-0.05 weights,
                         activations up to ~7); one weight of a dense kernel, value
                         projection or LayerNorm off by 1e-2 moves its layer by 2e-4..1e-2.
float16    5e-2   2e-2   max abs error 2.2e-2 on BERT-base (relative 3e-3 of the stage's
                         scale): catches wrong or transposed weights, not 1e-2 nudges.
bfloat16   3e-1   1e-1   max abs error 0.19 on BERT-base (relative 3e-2): gross errors only.
float64    1e-10  1e-9   both sides in double precision (TensorFlow too; weights widened
                         exactly): round-off ~1e-15, so even the attention nudges below show.
=========  =====  =====  =================================================================

Limits worth knowing: a nudge to a query/key weight changes attention scores by ~1e-4 and
the layer output by ~1e-6 in small random models -- the size of float32 round-off -- so
no float32 tolerance can single it out (``dtype="float64"`` can); perturbations of the value,
output, intermediate and LayerNorm weights are caught and localised to their layer.

Example (also usable in pytest)::

    >>> report = verify("uncased_L-12_H-768_A-12/bert_model.ckpt", "out/bert-base")
    >>> report.passed, report.first_failure
    (True, None)
    >>> assert_parity("ckpt/bert_model.ckpt", "out/model", head="sequence-classification")
"""
import dataclasses
import json
import logging
import math
import os
import time

import numpy as np

from .atomic import atomic_write
from .errors import ParityError, VerificationError
from .tf_reference import HEAD_STAGES
from . import verify_golden
from .verify_torch import check_device, load_torch_model, run_torch

log = logging.getLogger(__name__)

#: dtype -> (atol, rtol); documented in the module docstring.
DEFAULT_TOLERANCES = {
    "float32": (1e-4, 1e-4),
    "float16": (5e-2, 2e-2),
    "bfloat16": (3e-1, 1e-1),
    "float64": (1e-10, 1e-9),
}
DEVICES = ("cpu", "cuda")


# --- results -----------------------------------------------------------------------------
@dataclasses.dataclass
class StageResult:
    """The comparison of one stage (``"embeddings"``, ``"layer 3"``, ``"logits"``...)."""

    name: str
    shape: tuple
    max_abs: float
    max_rel: float
    passed: bool
    worst_index: tuple = None
    note: str = ""

    def to_dict(self):
        d = dataclasses.asdict(self)
        d["shape"] = list(self.shape) if self.shape is not None else None
        d["worst_index"] = list(self.worst_index) if self.worst_index is not None else None
        for key in ("max_abs", "max_rel"):  # JSON has no inf/nan
            if not math.isfinite(d[key]):
                d[key] = str(d[key])
        return d


def compare_stage(name, actual, reference, atol, rtol):
    """Compare one stage; ``actual``/``reference`` are arrays or None (stage missing)."""
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
    excess = diff - (atol + rtol * abs_b)
    worst = tuple(int(i) for i in np.unravel_index(int(np.argmax(excess)), a.shape))
    max_abs = float(diff.max())
    scale = float(abs_b.max())
    max_rel = max_abs / scale if scale > 0 else (0.0 if max_abs == 0 else math.inf)
    return StageResult(name, a.shape, max_abs, max_rel, bool(excess.max() <= 0), worst, note)


@dataclasses.dataclass
class ParityReport:
    """Outcome of :func:`verify`: per-stage errors, settings, inputs and wall time per phase."""

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

    @property
    def passed(self):
        """True when every stage is within tolerance."""
        return bool(self.stages) and all(s.passed for s in self.stages)

    @property
    def first_failure(self):
        """Name of the first stage over tolerance (e.g. ``"layer 3"``), or None."""
        return next((s.name for s in self.stages if not s.passed), None)

    def stage(self, name):
        """The :class:`StageResult` called ``name``."""
        for s in self.stages:
            if s.name == name:
                return s
        raise KeyError(name)

    def summary(self):
        """One line: PASS, or FAIL naming the first stage over tolerance and by how much."""
        settings = f"{self.device} {self.dtype}, atol={self.atol:g} rtol={self.rtol:g}"
        if self.passed:
            worst = max(self.stages, key=lambda s: s.max_abs)
            return (f"PASS: {len(self.stages)} stages within tolerance ({settings}); largest "
                    f"abs error {worst.max_abs:.2e} at {worst.name}")
        first = self.stage(self.first_failure)
        detail = first.note or (f"max abs error {first.max_abs:.2e}, rel {first.max_rel:.2e}, "
                                f"worst at index {list(first.worst_index)}")
        failed = sum(not s.passed for s in self.stages)
        return (f"FAIL: first stage over tolerance: {first.name} ({detail}); "
                f"{failed} of {len(self.stages)} stages fail ({settings})")

    def format_table(self):
        """The human-readable report printed by ``bertconvert verify``."""
        labels = "" if self.num_labels is None else f", num_labels {self.num_labels}"
        lines = [f"checkpoint: {self.checkpoint}",
                 f"model:      {self.model_dir or '(converted in memory)'} "
                 f"[head {self.head}{labels}]",
                 f"reference:  {self.reference}",
                 f"inputs:     {self.inputs.get('source')}, shape {self.inputs.get('shape')}",
                 ""]
        width = max([len("stage")] + [len(s.name) for s in self.stages])
        lines.append(f"{'stage':<{width}}  {'shape':<14}  {'max abs':>9}  {'max rel':>9}  result")
        for s in self.stages:
            shape = "x".join(str(n) for n in s.shape) if s.shape else "-"
            result = "ok" if s.passed else "FAIL" + (f" ({s.note})" if s.note else "")
            lines.append(f"{s.name:<{width}}  {shape:<14}  {s.max_abs:>9.2e}  "
                         f"{s.max_rel:>9.2e}  {result}")
        lines += [""] + [f"note: {n}" for n in self.notes]
        if self.timings:
            lines.append("time: " + ", ".join(f"{k} {v:.2f}s" for k, v in self.timings.items()))
        lines.append(self.summary())
        return "\n".join(lines)

    def to_dict(self):
        """Everything in the report as JSON-ready data (``passed``, ``first_failure`` too)."""
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        d["stages"] = [s.to_dict() for s in self.stages]
        d["passed"], d["first_failure"] = self.passed, self.first_failure
        d["summary"] = self.summary()
        return d

    def to_json(self, path):
        """Write :meth:`to_dict` as JSON, atomically."""
        with atomic_write(path, "w") as f:
            json.dump(self.to_dict(), f, indent=2)
            f.write("\n")

    def raise_for_mismatch(self):
        """Raise :class:`ParityError` (exit code 1) carrying the table when parity fails."""
        if not self.passed:
            raise ParityError(self.summary() + "\n" + self.format_table())
        return self


# --- orchestration -----------------------------------------------------------------------
def resolve_tolerances(dtype, atol=None, rtol=None):
    """(atol, rtol) with the dtype's defaults for whichever is None."""
    if dtype not in DEFAULT_TOLERANCES:
        raise VerificationError(f"dtype must be one of {', '.join(DEFAULT_TOLERANCES)}, "
                                f"got {dtype!r}")
    default_atol, default_rtol = DEFAULT_TOLERANCES[dtype]
    atol = default_atol if atol is None else float(atol)
    rtol = default_rtol if rtol is None else float(rtol)
    if not (atol >= 0 and rtol >= 0):
        raise VerificationError(f"tolerances must be >= 0, got atol={atol} rtol={rtol}")
    return atol, rtol


class _Phases:
    """Wall time per phase, with a tqdm bar over the phases when ``progress``."""

    def __init__(self, count, progress):
        from tqdm.auto import tqdm
        self.timings = {}
        self.bar = tqdm(total=count, desc="verify", unit="phase", disable=not progress,
                        leave=False)

    def run(self, name, fn, *args, **kwargs):
        self.bar.set_postfix_str(name)
        start = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            self.timings[name] = round(time.perf_counter() - start, 4)
            log.info("verify: %s took %.2fs", name, self.timings[name])
            self.bar.update(1)

    def close(self):
        self.bar.close()


def _reference_dtype(dtype):
    # Reduced-precision runs are judged against Google's float32 computation; a float64
    # exactness check needs a float64 reference.
    return "float64" if dtype == "float64" else "float32"


def _reference_outputs(checkpoint, config_file, inputs, head, dtype):
    from .tf_reference import TFReference
    ref = TFReference(checkpoint, config_file=config_file)
    outputs = ref.forward(inputs.input_ids, inputs.token_type_ids, inputs.attention_mask,
                          head=head, dtype=_reference_dtype(dtype))
    problem = ref.head_problem(head)
    return ref, outputs, problem


def verify(checkpoint, model_dir=None, *, head=None, num_labels=None, device="cpu",
           dtype="float32", atol=None, rtol=None, text=None, record=None, reference=None,
           progress=True):
    """Compare the PyTorch model with the TensorFlow reference, stage by stage.

    Args:
        checkpoint: the TF checkpoint (prefix, ``.index`` file or directory); its
            ``vocab.txt`` and ``bert_config.json`` are expected beside it.
        model_dir: converted model directory; None converts ``checkpoint`` in memory.
        head, num_labels: default to the model directory's ``config.json``
            (``architectures``) or, converting in memory, to what the checkpoint holds.
        device: ``"cpu"`` or ``"cuda"`` (TF32 is disabled for the comparison).
        dtype: ``"float32"``, ``"float16"``, ``"bfloat16"``, or ``"float64"`` (both sides in
            double precision: an exactness check); sets the default tolerances.
        atol, rtol: override the dtype's default tolerances.
        text: a text file (see :mod:`bertconvert.verify_inputs`) or a list of examples
            instead of the bundled sentences.
        record: also save the reference outputs and inputs to this ``.npz`` golden file.
        reference: compare against this golden file instead of running TensorFlow.

    Returns a :class:`ParityReport`; it does not raise on mismatch (see :func:`assert_parity`).
    Raises VerificationError (bad inputs, missing CUDA) and MissingDependencyError (no TF).
    """
    if device not in DEVICES:
        raise VerificationError(f"device must be one of {', '.join(DEVICES)}, got {device!r}")
    atol, rtol = resolve_tolerances(dtype, atol, rtol)
    check_device(device)  # before any expensive work
    if record is not None and reference is not None:
        raise VerificationError("--record and --reference exclude each other: record a golden "
                                "file with TensorFlow, then verify against it elsewhere")
    if reference is not None and text is not None:
        raise VerificationError("--text cannot be used with --reference: the golden file "
                                "holds the inputs it was recorded with")
    checkpoint = os.fspath(checkpoint)
    model_dir = None if model_dir in (None, "-") else os.fspath(model_dir)
    phases = _Phases(4 if reference is not None else 5 + (record is not None), progress)
    total_start = time.perf_counter()
    notes = []
    try:
        golden = phases.run("load golden", verify_golden.load_golden, reference) \
            if reference is not None else None
        if golden is not None:
            recorded = golden.meta.get("reference_dtype", "float32")
            if recorded != _reference_dtype(dtype):
                raise VerificationError(
                    f"golden file {reference} holds {recorded} reference outputs, but --dtype "
                    f"{dtype} needs {_reference_dtype(dtype)} ones; record it again with "
                    f"--dtype {dtype}")
            if head is None and model_dir is None:
                head = golden.meta.get("head")
                num_labels = golden.meta.get("num_labels", num_labels)
        loaded = phases.run("load pytorch", load_torch_model, checkpoint, model_dir, head,
                            num_labels, dtype, progress)
        notes += loaded.notes
        head = loaded.head
        if golden is not None:
            inputs = golden.inputs
            ref_outputs, ref_name = golden.outputs, f"golden file {reference}"
            notes += verify_golden.check_golden_matches(golden, checkpoint, head)
        else:
            inputs = phases.run("inputs", _make_inputs, checkpoint, model_dir, loaded, head, text)
            ref, ref_outputs, problem = phases.run(
                "reference", _reference_outputs, checkpoint, loaded.reference_config(checkpoint),
                inputs, head, dtype)
            ref_name = f"TensorFlow {ref.tf.__version__} forward over {ref.prefix} ({ref.layout})"
            if problem:
                notes.append(f"reference cannot compute the {head} head: {problem}")
            if record is not None:
                phases.run("record", verify_golden.save_golden, record, inputs, ref_outputs,
                           checkpoint=ref.prefix, head=head, num_labels=loaded.num_labels,
                           config=ref.config)
                notes.append(f"recorded reference outputs and inputs to {record}")
        torch_outputs = phases.run("pytorch forward", run_torch, loaded.model, inputs, head,
                                   device, dtype)
        stages = phases.run("compare", _compare_all, torch_outputs, ref_outputs, head, atol, rtol)
    finally:
        phases.close()
    timings = dict(phases.timings)
    timings["total"] = round(time.perf_counter() - total_start, 4)
    report = ParityReport(
        checkpoint=checkpoint, model_dir=model_dir, head=head, num_labels=loaded.num_labels,
        device=device, dtype=dtype, atol=atol, rtol=rtol, reference=ref_name, stages=stages,
        inputs=inputs.summary(), timings=timings, notes=notes)
    log.info("%s", report.summary())
    return report


def _make_inputs(checkpoint, model_dir, loaded, head, text):
    from .tf_reference import resolve_checkpoint_prefix
    from .verify_inputs import find_vocab_file, load_inputs
    ckpt_dir = os.path.dirname(os.path.abspath(resolve_checkpoint_prefix(checkpoint)))
    vocab = find_vocab_file(ckpt_dir, model_dir)
    cfg = loaded.model.config
    return load_inputs(vocab, head, max_position_embeddings=cfg.max_position_embeddings,
                       type_vocab_size=cfg.type_vocab_size, text=text)


def _compare_all(torch_outputs, ref_outputs, head, atol, rtol):
    # Reference order first (embeddings, layers, pooled, head); then the head stages the
    # reference could not produce, so a missing head shows up as a failure, never a pass.
    names = list(ref_outputs)
    names += [n for n in torch_outputs if n not in ref_outputs]
    names += [n for n in HEAD_STAGES.get(head, ()) if n not in names]
    return [compare_stage(n, torch_outputs.get(n), ref_outputs.get(n), atol, rtol) for n in names]


def assert_parity(checkpoint_or_report, model_dir=None, **kwargs):
    """:func:`verify`, raising :class:`ParityError` (an AssertionError) on mismatch.

    Accepts a finished :class:`ParityReport` too. Returns the report when parity holds::

        def test_conversion(tmp_path):
            convert_checkpoint("ckpt/bert_model.ckpt", tmp_path / "out")
            assert_parity("ckpt/bert_model.ckpt", tmp_path / "out", progress=False)
    """
    if isinstance(checkpoint_or_report, ParityReport):
        if model_dir is not None or kwargs:
            raise TypeError("assert_parity(report) takes no further arguments")
        return checkpoint_or_report.raise_for_mismatch()
    kwargs.setdefault("progress", False)
    return verify(checkpoint_or_report, model_dir, **kwargs).raise_for_mismatch()
