"""Convert a KerasHub BERT preset directory into a PyTorch model directory, exactly.

The same straight line as a TF checkpoint: :func:`~bertconvert.convert.keras_preset.read_preset`
(JSON only) -> :class:`~bertconvert.checkpoint.h5.H5WeightsReader` (the tensor source) ->
:func:`~bertconvert.convert.keras_rules.plan_preset` (every dataset and key decided) -> the
converter's own weight writers and side files -> one atomic publish. The weights are the h5's
values bit for bit (bfloat16 presets widened to float32 exactly by default).

Written beside the weights: ``config.json`` with ``hidden_act`` ``gelu_new`` (KerasHub's
encoder computes the tanh GELU) and, for a masked LM, the head's own activation and eps
(:data:`~bertconvert.convert.keras_preset.MLM_ACT_KEY`,
:data:`~bertconvert.convert.keras_preset.MLM_EPS_KEY`); ``vocab.txt`` from
``assets/tokenizer/vocabulary.txt``; ``tokenizer_config.json`` with KerasHub's
``do_lower_case`` and ``strip_accents``; ``conversion.json`` (the text embedder's pooling
under ``keras_hub``).
"""
import logging
import os

from ..atomic import atomic_directory, check_output_spares_inputs
from ..checkpoint.h5 import H5WeightsReader
from ..layout import GELU_OF_HIDDEN_ACT, REPORT_NAME
from . import destination, outputs
from .keras_preset import ENCODER_HIDDEN_ACT, read_preset
from .keras_rules import plan_preset
from .provenance import start_hashing
from .report import ConversionReport

logger = logging.getLogger(__name__)


def preset_report(preset, plan, dtype):
    """The ConversionReport of converting ``preset`` by ``plan`` (files not yet listed)."""
    report = ConversionReport.from_plan(plan, dtype)
    report.activation = {
        "gelu": GELU_OF_HIDDEN_ACT[ENCODER_HIDDEN_ACT], "hidden_act": ENCODER_HIDDEN_ACT,
        "reason": "KerasHub's BertBackbone computes the tanh approximation (gelu_approximate)"}
    report.keras_hub = {"task": preset.task, "head": preset.head,
                        "tokenizer": {"lowercase": preset.lowercase,
                                      "strip_accents": preset.strip_accents}}
    if preset.pooling:
        report.keras_hub["embedding_pooling"] = dict(preset.pooling)
    return report


def convert_preset(directory, out_dir, *, head="auto", format="safetensors", dtype="float32",
                   overwrite=False, progress=True, opener=None, keep_pooler=False):
    """Convert the KerasHub preset in ``directory`` into model directory ``out_dir``; returns
    the :class:`ConversionReport`. Options mean what they mean for
    :func:`~bertconvert.convert.run.convert_checkpoint`; the head comes from ``task.json``
    (``head`` may only repeat it). On any failure a named error is raised and ``out_dir`` is
    left as it was."""
    weights_opener, opener = opener, opener or open
    check_output_spares_inputs(out_dir, [], keyword="out_dir")
    destination.check_local_output(out_dir, "--out", "out_dir", "a KerasHub preset's conversion")
    out_dir = os.fspath(out_dir)
    preset = read_preset(directory, head)
    inputs = list(preset.weight_files) + [os.path.join(preset.directory, n) for n in preset.json_files]
    check_output_spares_inputs(out_dir, inputs + [preset.vocab], keyword="out_dir")
    # ... nor anything but a previous model directory, whatever overwrite says.
    may_replace = destination.check_model_dir_output(out_dir, out_dir, overwrite)
    with H5WeightsReader(preset.weight_files, prefix=preset.directory) as reader:
        plan = plan_preset(reader, preset, keep_pooler)
        report = preset_report(preset, plan, dtype)
        report.format, report.output_dir = format, os.path.abspath(out_dir)
        if preset.vocab is not None:
            from ..tokenizer.vocab import check_vocab_size
            check_vocab_size(preset.vocab, plan.config.vocab_size, preset.config_path)
        # conversion.json's sha256 of every input, on a spare core while the weights are written
        hasher = start_hashing(inputs + ([preset.vocab] if preset.vocab else []))
        try:
            with atomic_directory(out_dir, overwrite=overwrite, may_replace=may_replace) as tmp:
                side = outputs.write_side_files(tmp, plan, dtype, None, preset.vocab,
                                                preset.tokenizer_config(), opener)
                files = outputs.write_weights(tmp, plan, reader, format, dtype, progress,
                                              weights_opener)
                for path in side:
                    outputs.fsync_path(path)
                report.files = sorted(files + [os.path.basename(p) for p in side] + [REPORT_NAME])
                report.source_files = hasher.wait()
                outputs.write_json(os.path.join(tmp, REPORT_NAME), report.to_dict(), opener,
                                   fsync=True)
        except OSError as e:
            raise destination.write_error(e, out_dir) from e
        finally:
            hasher.cancel()  # after a failure, do not keep reading the weights for nothing
    logger.info("converted KerasHub preset %s (%s, %d tensors) into %s", directory, plan.head,
                len(plan.tensors), out_dir)
    return report


def preset_state_dict(directory, dtype="float32", keep_pooler=True):
    """``(state_dict of torch tensors, BertConfig, ConversionReport, KerasPreset)`` for the
    preset, in memory (for verify and tests); the pooler is kept by default."""
    from .stream import _require_torch, _to_torch, iter_tensors

    _require_torch("converting in memory")
    preset = read_preset(directory)
    with H5WeightsReader(preset.weight_files, prefix=preset.directory) as reader:
        plan = plan_preset(reader, preset, keep_pooler)
        state = {k: _to_torch(a) for k, a in iter_tensors(reader, plan, dtype, reuse_buffer=False)}
    return state, plan.config, preset_report(preset, plan, dtype), preset
