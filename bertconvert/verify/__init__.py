"""Numerical parity: does the PyTorch model compute what the TensorFlow model computed?

Both sides get the same deterministic batch (:mod:`bertconvert.verify.inputs`). The
reference is TensorFlow's own forward pass over the checkpoint (:mod:`bertconvert.verify.tf_side`)
or a golden file recorded from it earlier; the PyTorch side is the converted model directory
loaded with our classes, or the checkpoint converted in memory. Every stage is compared --
embeddings, each encoder layer, the pooled output, the head's outputs -- and the report names
the first stage that exceeds tolerance, which is where a conversion bug starts.

**This package** owns the inputs (``inputs``), the stage names (``stages``), where a
checkpoint's companions are (``sources``), the TensorFlow side (``tf_side``; its variable
names in ``tf_names``, its arithmetic in ``tf_math``, importing TensorFlow in
``tf_runtime``), the PyTorch side (``torch_side``), golden files (``golden``) and the
report (``report``). It may import ``convert`` (in-memory conversion), ``models``,
``tokenizer``, ``checkpoint`` and the top-level leaves; never the CLI.

**Weights stage.** Before the forward pass, every tensor of the model directory is
compared bit for bit with the checkpoint tensor the converter's plan maps to it
(:mod:`bertconvert.verify.weights`; with ``reference=``, with the per-tensor sha256 digests
the golden file recorded). It is :attr:`ParityReport.weights`, the first row of the table,
and a differing tensor fails the report (:attr:`ParityReport.first_differing_tensor` names
it) even when every output is within tolerance: adding 1e-2 to every element of a layer's
attention-output kernel shifts that block's output uniformly, which the LayerNorm after it
removes exactly. Reading every tensor with our crc-checked reader also means a corrupt
checkpoint is a named input error before TensorFlow runs; so are a ``head`` the checkpoint
does not hold and a model directory whose ``conversion.json`` records another checkpoint.

**Sub-stages.** Inside every layer the query, key and value projections, the attention
block's output and the intermediate activation are compared too, before the layer's own
output (``layer 3 query``, ``layer 3 key``, ``layer 3 value``, ``layer 3 attention output``,
``layer 3 intermediate``, ``layer 3``). They exist because a layer's output cannot show
every wrong weight: attention scores are small, softmax over them is nearly flat, so a query
or key weight off by 1e-2 moves the layer's output by only 3e-6 (tiny fixtures) to
3e-5..2e-4 (random BERT-base) -- round-off size, or at the tolerance faithful conversions
need -- while it moves its own projection by 1e-2 times an input of order one:
1.4e-2..3.4e-2. A failing sub-stage fails its layer: :attr:`ParityReport.first_failure` says
``"layer 3"``, :attr:`ParityReport.first_failure_stage` says ``"layer 3 query"``. The
layer's :class:`StageResult` holds its sub-stages (``.substages``; ``"substages"`` in JSON).

**Tolerances.** A stage passes when every element satisfies
``|torch - reference| <= atol + scale * max|reference stage| + rtol * |reference|``. The
report also gives, per stage, the max absolute error and the relative error
``max|torch - reference| / max|reference|``, plus the index of the worst element. The
defaults follow the precision of the model's stored weights and of the run, and the
summary says which applied and why (:mod:`bertconvert.verify.tolerance`):

============================  ===========================================================
float32 model, float32 run    atol = rtol = 1e-4: max abs error measured on faithful
                              conversions 2e-6 (fixtures), 6e-6 (BERT-base, std-0.02
                              weights) to 1.4e-5 (std-0.05 weights, activations up to
                              ~7): 7x to 50x below atol. One element of any of a layer's
                              16 tensors off by 1e-2 is caught at its own sub-stage by
                              1.6e-3..4e-2, 16x to 400x atol.
float16/bfloat16 model        the same 1e-4: the TensorFlow reference computes with the
                              checkpoint's weights rounded to the stored dtype as the
                              converter rounds them, so both sides use identical numbers.
float16/bfloat16 run          ``scale = 16 * eps(dtype)`` on top (activation rounding).
(``--dtype``)
golden file over other        ``scale += 8 * eps(dtype)`` (the weights' rounding cannot
weights                       be replayed on recorded outputs).
float64 run                   atol 1e-10, rtol 1e-9: both sides in double precision
                              (TensorFlow too; weights widened exactly): an exactness check.
============================  ===========================================================

Why not tighter float32 defaults: a real checkpoint's activations grow larger than these
random ones (outlier dimensions reach tens), and float32 round-off grows with them; 1e-4
keeps a margin of about ten over the worst faithful error measured, while the sub-stages
keep a 1e-2 weight error 100x above it.

Example (also usable in pytest)::

    >>> report = verify("uncased_L-12_H-768_A-12/bert_model.ckpt", "out/bert-base")
    >>> report.passed, report.first_failure
    (True, None)
    >>> assert_parity("ckpt/bert_model.ckpt", "out/model", head="sequence-classification")
"""
import logging
import os
import sys
import time
import types

from ..errors import BertConvertError, HeadError, VerificationError, option
from . import golden as verify_golden
from . import weights as verify_weights
from . import model_source
from .pooler import drop_pooled_stage, not_compared_note
from .report import ParityReport, StageResult, compare_all, compare_stage  # noqa: F401
from .sources import check_outputs_spare_inputs  # noqa: F401 - the CLI's entry point too
from .tolerance import Tolerance, resolve_tolerance, weight_rounding  # noqa: F401
from .torch_side import check_device, load_torch_model, run_torch

log = logging.getLogger(__name__)

DEVICES = ("cpu", "cuda")


class _Phases:
    """Wall time per phase, with a bar over the phases where a person watches (see
    :mod:`bertconvert.terminal.progress`)."""

    def __init__(self, count, progress):
        from ..terminal.progress import progress_bar
        self.timings = {}
        self.bar = progress_bar(progress, total=count, desc="verify", unit="phase", leave=False)

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


def _reference_outputs(checkpoint, config_file, inputs, head, dtype, gelu=None, rounding=()):
    """TensorFlow's outputs; ``config_file`` (the model directory's) serves TF1 checkpoints
    without a config beside them only."""
    from .tf_side import TFReference, raised_by_tensorflow
    try:
        ref = TFReference(checkpoint, gelu=gelu, fallback_config=config_file)
        outputs = ref.forward(inputs.input_ids, inputs.token_type_ids, inputs.attention_mask,
                              head=head, dtype=_reference_dtype(dtype), substages=True,
                              round_weights=rounding)
    except BertConvertError:
        raise
    except Exception as e:  # noqa: BLE001 - only TensorFlow's own errors are translated
        # A checkpoint TensorFlow cannot read (DataLossError, IndexError "Read less bytes
        # than requested"...) is an input problem, not a parity mismatch: one line, exit 2.
        if not raised_by_tensorflow(e):
            raise
        raise verify_weights.reference_failure(e, checkpoint) from e
    problem = ref.head_problem(head)
    return ref, outputs, problem


def _gelu_note(gelu, given, config_file):
    """Why the reference computes GELU the way it does (a report note)."""
    form = {"exact": "exact (erf) form", "tanh": "tanh approximation"}[gelu]
    if given:
        why = "as given"
    elif config_file:
        why = f"as {config_file} says (hidden_act)"
    else:
        why = ("the default for TF1 sources" if gelu == "exact" else
               "the default for TF2/SavedModel sources: Model Garden's \"gelu\"")
    override = option("--gelu exact|tanh", "gelu='exact'|'tanh'")
    return f"reference GELU: {form}, {why}; {override} overrides"


def _open_checkpoint(checkpoint):
    """Our reader over the checkpoint, its variables' metadata checked (input errors)."""
    from ..checkpoint import load_checkpoint
    reader = load_checkpoint(checkpoint, mmap=False)
    try:
        verify_weights.check_entries(reader)
    except BaseException:
        reader.close()
        raise
    return reader


def _weights_stage(reader, model_dir, golden, reference, loaded, want_digests):
    """``(WeightsResult, digests for --record or None)``; see :mod:`bertconvert.verify.weights`."""
    if golden is not None:
        recorded = (golden.meta.get("weights") or {}).get("tensors")
        if model_dir is None:
            return verify_weights.skipped("the model was converted in memory"), None
        if not recorded:
            return verify_weights.skipped(
                f"golden file {reference} holds no weight digests (recorded by an older "
                "bertconvert); record it again to compare the weights"), None
        return verify_weights.compare_digests(model_dir, recorded, f"golden file {reference}"), None
    plan = None if model_dir is None else verify_weights.plan_for_directory(reader, model_dir)
    digests = None
    if want_digests and (plan is None or plan.head != loaded.head):
        # The golden file fits the head it records: its digests come from that head's plan.
        digests = verify_weights.checkpoint_digests(reader, _plan_for_head(reader, model_dir,
                                                                           loaded))
    if model_dir is None:
        return verify_weights.skipped(
            "the model was converted in memory from this checkpoint (crc-checked) by the "
            "converter's own rules"), digests
    result, same_pass = verify_weights.compare_weights(reader, model_dir, plan=plan,
                                                       digests=want_digests and digests is None)
    return result, digests or same_pass


def _plan_for_head(reader, model_dir, loaded):
    """The converter's plan for ``loaded.head``, with the model directory's config if any."""
    from ..convert.plan import plan_conversion
    from ..models.config import resolve_config
    config, config_path = resolve_config(model_dir=model_dir, checkpoint=reader.prefix)
    return plan_conversion(reader, config, head=loaded.head, num_labels=loaded.num_labels,
                           allow_new_head=True, config_path=config_path,
                           keep_pooler=not loaded.pooler_left_out)


def verify(checkpoint, model_dir=None, *, head=None, num_labels=None, device="cpu",
           dtype="float32", atol=None, rtol=None, text=None, record=None, reference=None,
           progress=True, gelu=None):
    """Compare the PyTorch model with the TensorFlow reference, stage by stage.

    Stages: the weights (every tensor of ``model_dir`` bit for bit against the checkpoint,
    or the golden file's digests), then embeddings, each layer (with its query, key, value,
    attention output and intermediate sub-stages, compared first), the pooled output, the
    head's outputs.

    Args:
        checkpoint: the TF checkpoint (prefix, ``.index`` file or directory); its
            ``vocab.txt`` and ``bert_config.json`` are expected beside it.
        model_dir: converted model directory; None converts ``checkpoint`` in memory.
        head, num_labels: default to the model directory's ``config.json``
            (``architectures``) or, converting in memory, to what the checkpoint holds.
        device: ``"cpu"`` or ``"cuda"`` (TF32 is disabled for the comparison).
        dtype: the PyTorch run's ``"float32"``, ``"float16"``, ``"bfloat16"``, or
            ``"float64"`` (both sides in double precision: an exactness check). With the
            dtype the model directory stores its weights in, it sets the default tolerances
            (:mod:`bertconvert.verify.tolerance`).
        atol, rtol: override the default tolerances.
        text: a text file (see :mod:`bertconvert.verify.inputs`) or a list of examples
            instead of the bundled sentences.
        record: also save the reference outputs and inputs to this ``.npz`` golden file.
        reference: compare against this golden file instead of running TensorFlow.
        gelu: ``"exact"`` or ``"tanh"``: the GELU form the TensorFlow reference computes
            (Google's TF1 "gelu" is exact, Model Garden's the tanh approximation). Default:
            what ``model_dir``'s config.json says (hidden_act gelu -> exact, gelu_new ->
            tanh), else exact for TF1 sources and tanh for TF2/SavedModel sources.

    Returns a :class:`ParityReport`; it does not raise on mismatch (see :func:`assert_parity`).
    Raises VerificationError (bad inputs, missing CUDA, a model directory whose config
    describes another network than the checkpoint's; HeadNotInCheckpointError for a
    ``head`` the checkpoint lacks; ModelSourceMismatchError for a model directory converted
    from another checkpoint; TFReferenceError when TensorFlow cannot read it),
    CheckpointError (a corrupt or incomplete checkpoint, found before TensorFlow runs) and
    MissingDependencyError (no TF).
    """
    if device not in DEVICES:
        raise VerificationError(f"device must be one of {', '.join(DEVICES)}, got {device!r}")
    resolve_tolerance(dtype, atol=atol, rtol=rtol)  # bad values are input errors, before any work
    from ..convert.keras_preset import is_keras_preset
    if is_keras_preset(checkpoint):  # KerasHub's forward pass (or a golden file) is the reference
        from .keras_hub import verify_preset
        return verify_preset(checkpoint, _local_model_dir(model_dir, progress), atol=atol, rtol=rtol, reference=reference,
                             record=record, device=device, dtype=dtype)
    from .sources import check_gelu
    check_gelu(gelu)
    check_device(device)  # before any expensive work
    if record is not None and reference is not None:
        raise VerificationError("--record and --reference exclude each other: record a golden "
                                "file with TensorFlow, then verify against it elsewhere")
    if reference is not None and text is not None:
        raise VerificationError("--text cannot be used with --reference: the golden file "
                                "holds the inputs it was recorded with")
    checkpoint = os.fspath(checkpoint)
    from ..cache.remote_checkpoint import is_url
    if is_url(checkpoint):  # TensorFlow reads files: a local copy through the shared cache
        from ..cache.remote_checkpoint import local_checkpoint
        with local_checkpoint(checkpoint) as local:
            return verify(local, model_dir, head=head, num_labels=num_labels, device=device,
                          dtype=dtype, atol=atol, rtol=rtol, text=text, record=record,
                          reference=reference, progress=progress, gelu=gelu)
    model_dir = _local_model_dir(model_dir, progress)
    # Before any work: the golden file may not land on anything this run reads.
    check_outputs_spare_inputs(checkpoint, model_dir, {"--record": record}, text=text,
                               reference=reference)
    from .sources import check_inputs_are_files
    check_inputs_are_files(checkpoint, model_dir, text=text, reference=reference)
    phases = _Phases(5 if reference is not None else 7 + (record is not None), progress)
    total_start = time.perf_counter()
    notes = []
    from_golden = False
    reader = None
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
            from_golden = head is None and model_dir is None
            if from_golden:
                head = golden.meta.get("head")
                num_labels = golden.meta.get("num_labels", num_labels)
        else:
            # Before any number is computed and before TensorFlow is touched: the checkpoint
            # opens with our reader, its metadata is sane, it is the one the model directory
            # was converted from, and it holds the head asked for (all input errors, exit 2).
            reader = phases.run("check checkpoint", _open_checkpoint, checkpoint)
            if model_dir is not None:
                notes += model_source.check_model_source(model_dir, reader.prefix, checkpoint)
            model_source.check_head_in_checkpoint(reader, head, checkpoint)
        try:
            loaded = phases.run("load pytorch", load_torch_model, checkpoint, model_dir, head,
                                num_labels, dtype, progress, gelu)
        except HeadError as e:
            if not from_golden:
                raise
            # The head and label count came from the golden file, not from the user: say so.
            raise VerificationError(
                f"golden file {reference} was recorded for a {head} head with "
                f"{num_labels} labels, which {checkpoint} does not hold ({e}); it was recorded "
                f"from {golden.meta.get('checkpoint')}: verify against a golden file recorded "
                "from this checkpoint") from e
        notes += loaded.notes
        head = loaded.head
        # The reference rounds its weights as the PyTorch side's were rounded (stored dtype,
        # then a reduced-precision run's), so that rounding is no error; a golden file
        # records which rounding its outputs were computed with.
        rounding = weight_rounding(loaded.stored_dtype, dtype)
        tolerance = resolve_tolerance(
            dtype, loaded.stored_dtype, atol, rtol,
            reference_rounding=None if golden is None else golden.meta.get("weights_rounding", ()))
        weights, digests = phases.run("weights", _weights_stage, reader, model_dir, golden,
                                      reference, loaded, record is not None)
        if golden is not None:
            inputs = golden.inputs
            ref_outputs, ref_name = golden.outputs, f"golden file {reference}"
            if gelu is not None and golden.meta.get("gelu") not in (None, gelu):
                raise VerificationError(
                    f"golden file {reference} was recorded with the {golden.meta['gelu']} GELU "
                    f"form, not {gelu}; record it again with --gelu {gelu}")
            gelu = golden.meta.get("gelu", gelu)
            notes += verify_golden.check_golden_matches(golden, checkpoint, head)
        else:
            reader.close()  # every tensor is read and crc-checked: the shards are not needed
            inputs = phases.run("inputs", _make_inputs, checkpoint, model_dir, loaded, head, text)
            from .sources import gelu_from_config
            given = gelu is not None
            config_gelu = None if given else gelu_from_config(loaded.config_file)
            ref, ref_outputs, problem = phases.run(
                "reference", _reference_outputs, checkpoint, loaded.config_file,
                inputs, head, dtype, gelu or config_gelu, rounding)
            gelu = ref.gelu
            notes.append(_gelu_note(gelu, given, config_gelu and loaded.config_file))
            kind = "SavedModel" if ref.saved_model else ref.layout
            ref_name = f"TensorFlow {ref.tf.__version__} forward over {ref.prefix} ({kind})"
            if problem:
                notes.append(f"reference cannot compute the {head} head: {problem}")
            if record is not None:
                phases.run("record", verify_golden.save_golden, record, inputs, ref_outputs,
                           checkpoint=ref.prefix, head=head, num_labels=loaded.num_labels,
                           config=ref.config, weights=digests, gelu=gelu,
                           weights_rounding=rounding)
                notes.append(f"recorded reference outputs, inputs and weight digests to {record}")
        torch_outputs = phases.run("pytorch forward", run_torch, loaded.model, inputs, head,
                                   device, dtype, substages=True)
        if loaded.pooler_left_out:  # initialised at load: its output is no conversion's
            torch_outputs, ref_outputs = drop_pooled_stage(torch_outputs, ref_outputs)
            notes.append(not_compared_note(model_dir, head))
        stages, compare_notes = phases.run("compare", compare_all, torch_outputs, ref_outputs,
                                           head, tolerance.atol, tolerance.rtol, tolerance.scale)
        notes += compare_notes
    finally:
        phases.close()
        if reader is not None:
            reader.close()
    timings = dict(phases.timings)
    timings["total"] = round(time.perf_counter() - total_start, 4)
    report = ParityReport(
        checkpoint=checkpoint, model_dir=model_dir, head=head, num_labels=loaded.num_labels,
        device=device, dtype=dtype, atol=tolerance.atol, rtol=tolerance.rtol,
        reference=ref_name, stages=stages, inputs=inputs.summary(), timings=timings,
        notes=notes, weights=weights, gelu=gelu, tolerance=tolerance)
    # ParityReport.to_json refuses to write onto what this run read.
    report.sources = {"checkpoint": checkpoint, "model_dir": model_dir, "text": text,
                      "reference": reference}
    log.info("%s", report.summary())
    return report


def _local_model_dir(model_dir, progress):
    """``model_dir`` as a local path (None for None or "-"): a published model directory
    (``s3://``, ``http(s)://``) is fetched through the cache."""
    model_dir = None if model_dir in (None, "-") else os.fspath(model_dir)
    if model_dir is not None and model_dir.split("://", 1)[0].lower() in ("s3", "http", "https") \
            and "://" in model_dir:
        from ..cache.names import resolve_model_dir
        model_dir = resolve_model_dir(model_dir, progress=progress)
    return model_dir


def _make_inputs(checkpoint, model_dir, loaded, head, text):
    from .sources import checkpoint_dirs, resolve_checkpoint_prefix
    from .inputs import find_vocab_file, load_inputs, synthetic_inputs
    cfg = loaded.model.config
    try:
        vocab = find_vocab_file(*checkpoint_dirs(resolve_checkpoint_prefix(checkpoint)), model_dir)
    except VerificationError:
        if text is not None:
            raise  # the user's text needs the vocabulary
        # No vocabulary anywhere (a TF Serving export has none): parity needs only the
        # same ids on both sides.
        return synthetic_inputs(cfg.vocab_size, head, cfg.max_position_embeddings,
                                cfg.type_vocab_size)
    return load_inputs(vocab, head, max_position_embeddings=cfg.max_position_embeddings,
                       type_vocab_size=cfg.type_vocab_size, text=text)


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


class _CallableModule(types.ModuleType):
    """Lets ``bertconvert.verify(ckpt, model_dir)`` call :func:`verify`.

    The issue names the Python entry point ``verify(...)``; as an attribute of the package,
    ``bertconvert.verify`` is this module (re-exporting the function would shadow it), so the
    module itself forwards calls. ``from bertconvert.verify import verify`` is the plain form.
    """

    def __call__(self, *args, **kwargs):
        return verify(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
