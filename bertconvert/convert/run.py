"""Convert a Google TensorFlow BERT checkpoint into a PyTorch model directory, exactly.

The work happens in three steps that never go back: :func:`~bertconvert.convert.plan.plan_conversion`
decides everything from the checkpoint index and the config (no tensor read yet), then every
planned tensor is streamed by :class:`~bertconvert.convert.tensors.TensorCopier` -- read in small
crc-checked pieces, transformed (transpose/reshape only: the values are the checkpoint's),
cast to the output dtype, appended to the weight file(s) -- and finally the directory is
published atomically: every file fsynced once, then renamed into place. The source files'
sha256 (for ``conversion.json``) is computed on a second thread meanwhile. Optimizer slots
are never read for conversion. Peak memory is about one tensor, not one model.

The default safetensors output needs numpy only: torch is imported just for
``format="pytorch"``/``"both"``, for freshly initialised head weights, and by
:func:`load_converted_model`.

Output directory (``format="safetensors"`` by default)::

    config.json          transformers-compatible (model_type, architectures, num_labels)
    bert_config.json     the original Google config
    model.safetensors    and/or pytorch_model.bin (format="pytorch" | "both")
    vocab.txt            copied from beside the checkpoint
    tokenizer_config.json  do_lower_case (guessed from the vocabulary), model_max_length,
                         tokenizer_class: so tokenizers load a cased model cased
    conversion.json      provenance: source files + sha256, rule per variable, skipped names

Example::

    >>> report = convert_checkpoint("uncased_L-12_H-768_A-12/bert_model.ckpt", "out/bert")
    >>> report.head, len(report.skipped)
    ('pretraining', 0)
    >>> model, report = load_converted_model("fine_tuned/model.ckpt-1000", head="auto")
"""
import logging
import os

from ..atomic import (atomic_directory, atomic_write, check_output_spares_inputs,
                      published_together, remove_stale_temps)
from ..checkpoint import load_checkpoint
from ..errors import (ConversionError, OutputExistsError,  # noqa: F401 (public names)
                      OutputWriteError, option)
from ..layout import (CONFIG_NAME, GOOGLE_CONFIG_NAME, PYTORCH_NAME,  # noqa: F401 (public names)
                      REPORT_NAME, SAFETENSORS_NAME, TOKENIZER_CONFIG_NAME, VOCAB_NAME)
from . import destination, outputs
from .gelu import check_gelu
from .keras_preset import is_keras_preset
from .source import describe_source
from .outputs import FORMATS, tokenizer_config, vocab_source, write_json  # noqa: F401
from .plan import plan_conversion, resolve_config
from .remote import open_source
from .provenance import AUTO_HASH_MAX_UNCONVERTED, SOURCE_HASHES, SourceHashing  # noqa: F401
from .optimizer_state import optimizer_record
from .report import ConversionReport
from .slots import plan_slots, read_global_step, require_adam
from .rules import detect_head  # noqa: F401  (part of this module's public API)
from .stream import (DTYPES, ConvertedState, _format_option, _require_torch,  # noqa: F401
                     check_dtype, iter_tensors, state_dict_from_checkpoint)
from .writers import torch_zip_writer

logger = logging.getLogger(__name__)


def _check_options(format, dtype, source_hash="auto"):
    if format is not None and format not in FORMATS:
        raise ConversionError(f"unknown format {format!r}; expected one of {', '.join(FORMATS)}")
    check_dtype(dtype)
    if source_hash not in SOURCE_HASHES:
        raise ConversionError(f"unknown source_hash {source_hash!r}; expected one of "
                              f"{', '.join(SOURCE_HASHES)}")


def convert_checkpoint(checkpoint, out_dir, *, config=None, head="auto", num_labels=None,
                       format="safetensors", dtype="float32", overwrite=False,
                       allow_new_head=False, progress=True, opener=None, source_hash="auto",
                       vocab=None, gelu=None, keep_pooler=False, optimizer_state=False):
    """Convert a TF checkpoint (prefix, ``.index`` file or directory, or a SavedModel
    directory) into model directory ``out_dir``.

    ``config``: path/dict/BertConfig (default: ``bert_config.json`` beside the checkpoint;
    for TF2 checkpoints and SavedModels without one, inferred from the tensor shapes).
    ``gelu``: "exact" or "tanh" (default: exact for TF1 sources, tanh for TF2 and
    SavedModels; see :mod:`bertconvert.convert.gelu`).
    ``vocab``: the vocabulary file to copy into the output as ``vocab.txt`` (default: the
    ``vocab.txt`` beside the checkpoint, if any).
    ``head``: "auto" or a :data:`bertconvert.models.heads.HEADS` name; ``num_labels`` must agree
    with the checkpoint's classifier. ``format``: safetensors, pytorch or both. ``dtype``:
    float32, float16 or bfloat16. ``overwrite`` replaces an existing directory (only once the
    new one is complete). ``allow_new_head`` lets a checkpoint without the head's variables
    be converted; those keys get a fresh initialisation and are listed in the report.
    ``keep_pooler``: masked-lm, token-classification and question-answering leave
    ``bert.pooler.*`` out by default (transformers' classes for them have no pooler, and would
    report it as unexpected; ``conversion.json`` lists it under ``dropped``); True writes it.
    ``optimizer_state``: also write ``optimizer.safetensors``: the Adam slots
    (``<var>/adam_m``, ``<var>/adam_v``, each in its parameter's PyTorch layout, keyed by the
    parameter's name) and ``global_step``, recorded in ``conversion.json`` under
    ``optimizer_state`` (for :func:`bertconvert.resume_from_tf` and ``export``). A checkpoint
    without those slots (none, or LAMB's / Keras') is
    :class:`~bertconvert.errors.UnsupportedOptimizerError`.
    ``source_hash``: which source files conversion.json gives a sha256 (see
    :data:`SOURCE_HASHES`): by default ("auto") all of them, except data shards that are
    mostly optimizer slots, which are never read; "full" hashes those too (for
    BERT-large with Adam slots the conversion then takes about 3.5 times as long), "index"
    none.
    ``out_dir`` may be ``s3://bucket/prefix/``: the directory is built in a temp directory,
    then published there complete or not at all, ``conversion.json`` last (see
    :mod:`bertconvert.convert.publish`); the report's ``publication["status"]`` says
    "published", "replaced", "unchanged" (the same conversion was there: nothing uploaded)
    or "already published by another run".
    ``opener(path, mode)`` creates output files (for tests or custom storage; by default the
    weights are written with :class:`~bertconvert.directio.DirectFile`, the rest with ``open``).

    Returns a :class:`ConversionReport`. On any failure (bad input, mapping problems, a full
    disk) a named :class:`~bertconvert.errors.BertConvertError` is raised and ``out_dir`` is
    left as it was. An ``out_dir`` that is empty, or is, contains or lies inside one of the
    source files (checkpoint, config, vocabulary) is refused with
    :class:`~bertconvert.errors.UnsafeOutputError`, even with ``overwrite``; so is (with
    :class:`~bertconvert.errors.OutputNotReplaceableError`) an existing ``out_dir`` that is
    not a previous model directory (see :mod:`bertconvert.convert.destination`).
    """
    _check_options(format, dtype, source_hash)
    check_gelu(gelu)
    if format != "safetensors":  # before anything is read or written
        _require_torch(f"writing {PYTORCH_NAME} ({_format_option(format)})")
    from .publish import check_output_url, is_s3_url, publish_converted
    check_output_url(out_dir)
    if is_keras_preset(checkpoint):
        _refuse_tf_options(checkpoint, config=config, vocab=vocab, gelu=gelu,
                           num_labels=num_labels, allow_new_head=allow_new_head or None,
                           optimizer_state=optimizer_state or None)
        if is_s3_url(out_dir):
            raise ConversionError(
                f"{checkpoint} is a KerasHub preset: its conversion cannot be published to "
                f"{out_dir} directly yet; convert it to a local directory, then upload that "
                "(bertconvert cache push) or convert a TF checkpoint")
        from .keras_run import convert_preset
        return convert_preset(checkpoint, out_dir, head=head, format=format, dtype=dtype,
                              overwrite=overwrite, progress=progress, opener=opener,
                              keep_pooler=keep_pooler)
    weights_opener, opener = opener, opener or open
    if optimizer_state and source_hash == "auto":
        source_hash = "full"  # the slots are read anyway: every shard gets its sha256
    if is_s3_url(out_dir):  # built locally, then published object by object, marker last
        def convert_locally(local_dir, precheck):
            return _convert_checkpoint(checkpoint, local_dir, config, head, num_labels, format,
                                       dtype, False, allow_new_head, progress, weights_opener,
                                       opener, source_hash, vocab, gelu, keep_pooler,
                                       optimizer_state, None, precheck)
        report = publish_converted(convert_locally, out_dir, overwrite=overwrite,
                                   progress=progress)
        logger.info("%s: %s", report.output_dir, report.publication.get("status"))
        return report
    check_output_spares_inputs(out_dir, [], keyword="out_dir")  # "" would mean the cwd
    given = out_dir = os.fspath(out_dir)  # as given, for messages; atomic_directory resolves it
    report = _convert_checkpoint(checkpoint, out_dir, config, head, num_labels, format, dtype,
                                 overwrite, allow_new_head, progress, weights_opener, opener,
                                 source_hash, vocab, gelu, keep_pooler, optimizer_state, given)
    logger.info("converted %s (%s, %d tensors, %d skipped) into %s", report.checkpoint,
                report.head, len(report.variables), len(report.skipped), out_dir)
    return report


def _refuse_tf_options(preset, **given):
    """A KerasHub preset says its own config, vocabulary, GELU and labels: options that would
    override them are refused rather than silently ignored."""
    used = [name for name, value in given.items() if value is not None]
    if used:
        raise ConversionError(
            f"{preset} is a KerasHub preset, which carries its own config, vocabulary, GELU "
            f"form and label count; {', '.join(used)} cannot be given for it")


def _convert_checkpoint(checkpoint, out_dir, config, head, num_labels, format, dtype, overwrite,
                        allow_new_head, progress, weights_opener, opener, source_hash, vocab,
                        gelu, keep_pooler, optimizer_state=False, given=None, precheck=None):
    """Open the checkpoint (a local path, or read in place from a URL: :func:`open_source`)
    and convert it into the local directory ``out_dir``."""
    with open_source(checkpoint, config, vocab) as (reader, config, vocab):
        # An s3:// output (precheck) may find this conversion already published: no shard
        # is read for a hash before that is known.
        hashing = SourceHashing(reader, source_hash, defer=precheck is not None)
        try:
            return _convert_with_reader(reader, hashing, out_dir, config, head, num_labels,
                                        format, dtype, overwrite, allow_new_head, progress,
                                        weights_opener, opener, vocab, gelu, keep_pooler,
                                        optimizer_state, given, precheck)
        finally:
            hashing.cancel()  # after a failure, do not keep reading gigabytes for nothing


def _convert_with_reader(reader, hashing, out_dir, config, head, num_labels, format, dtype,
                         overwrite, allow_new_head, progress, weights_opener, opener,
                         vocab=None, gelu=None, keep_pooler=False, optimizer_state=False,
                         given=None, precheck=None):
    """The body of :func:`convert_checkpoint`, once the checkpoint is open; ``given`` is
    ``out_dir`` as the caller spelt it (for messages). ``precheck(report, reader, config_path,
    vocab_path)`` (``--out s3://``) sees the planned report before any data shard is read; a
    report it returns is returned as it is, nothing written."""
    if optimizer_state:  # by names, before anything else: another optimizer may not plan
        require_adam(reader)
    cfg, config_path, source = describe_source(config, reader, gelu)
    vocab, has_vocab = vocab_source(vocab, reader.prefix, source.vocab)
    # Before anything is planned or written: --out must not be (or hold) what is read.
    local_files = [] if getattr(reader, "store", None) is not None else list(reader.files)
    check_output_spares_inputs(out_dir, local_files + [config_path]
                               + [vocab if has_vocab else None], keyword="out_dir")
    # ... nor anything but a previous model directory, whatever overwrite says.
    may_replace = destination.check_model_dir_output(out_dir, given, overwrite)
    plan = plan_conversion(reader, cfg, head=head, num_labels=num_labels,
                           allow_new_head=allow_new_head, config_path=config_path,
                           keep_pooler=keep_pooler)
    slots = plan_slots(reader, plan) if optimizer_state else None
    report = ConversionReport.from_plan(plan, dtype)
    if slots is not None:
        report.optimizer_state = optimizer_record(slots, read_global_step(reader))
    report.format, report.source_hash = format, hashing.mode
    report.output_dir = os.path.abspath(out_dir)
    report.activation, report.config_inferred = source.activation, source.config_inferred
    report.notes.extend(source.notes)
    if precheck is not None:  # before plan_ready starts hashing shards
        done = precheck(report, reader, config_path, vocab if has_vocab else None)
        if done is not None:
            return done
    # A remote source starts fetching the planned ranges ahead: only now that the run will
    # write (a rerun found already published above reads no shard byte).
    outputs.schedule_reads(reader, plan, format, dtype, report, slots)
    report.notes.extend(hashing.plan_ready(plan))
    if not has_vocab:
        report.notes.append(f"no {VOCAB_NAME} beside the checkpoint; the model directory has "
                            f"none (pass {option('--vocab FILE', 'vocab=PATH')} to add one)")
        logger.warning("no %s beside %s; the output has no vocabulary", VOCAB_NAME, reader.prefix)
    if has_vocab:  # a longer vocabulary gives ids the model cannot embed: refuse it now
        from ..tokenizer.vocab import check_vocab_size
        check_vocab_size(vocab, plan.config.vocab_size, config_path or "the config")
    tokenizer = tokenizer_config(vocab, plan.config) if has_vocab else None
    if tokenizer is not None and source.do_lower_case is not None:  # the SavedModel says
        tokenizer["do_lower_case"] = source.do_lower_case
    if has_vocab and tokenizer is None:
        report.notes.append(f"{VOCAB_NAME} could not be read as a vocabulary; no "
                            f"{TOKENIZER_CONFIG_NAME} was written")
    side_sources = [p for p in (config_path, vocab if has_vocab else None) if p]
    try:
        with atomic_directory(out_dir, overwrite=overwrite, may_replace=may_replace) as tmp:
            # Small files first: their writeback overlaps the weights, so their single
            # fsync each (below, before publishing) has nothing left to wait for.
            source_config = None if source.config_changed else config_path
            side = outputs.write_side_files(tmp, plan, dtype, source_config,
                                            vocab if has_vocab else None, tokenizer, opener)
            files = outputs.write_weights(tmp, plan, reader, format, dtype, progress,
                                          weights_opener)
            if slots is not None:
                files.append(outputs.write_optimizer(tmp, reader, slots,
                                                     report.optimizer_state["global_step"],
                                                     weights_opener))
            for path in side:
                outputs.fsync_path(path)
            report.files = sorted(files + [os.path.basename(p) for p in side] + [REPORT_NAME])
            report.source_files = hashing.entries(side_sources)
            write_json(os.path.join(tmp, REPORT_NAME), report.to_dict(), opener, fsync=True)
    except OSError as e:
        raise destination.write_error(e, given or out_dir) from e
    return report


def convert_to_pytorch_file(checkpoint, config_file, output_file, *, head="auto", num_labels=None,
                            allow_new_head=False, progress=True, keep_pooler=False):
    """The 0.6.2 form: write a single ``pytorch_model.bin`` state dict to ``output_file``.
    ``keep_pooler`` as for :func:`convert_checkpoint`.

    An existing directory gets ``pytorch_model.bin`` inside it; an existing file is replaced
    (atomically), as pytorch-pretrained-bert's script did -- unless it is one of the inputs
    (checkpoint files, config): that is :class:`~bertconvert.errors.UnsafeOutputError` -- or
    anything but a previous state dict (a link, a text file...):
    :class:`~bertconvert.errors.OutputNotReplaceableError`. Returns the ConversionReport.
    """
    _require_torch(f"writing {PYTORCH_NAME}")
    check_output_spares_inputs(output_file, [], "PYTORCH_DUMP_OUTPUT", "output_file")
    destination.check_local_output(output_file, "PYTORCH_DUMP_OUTPUT", "output_file",
                                   "this command")
    given = output_file = os.fspath(output_file)
    if os.path.isdir(output_file):
        output_file = os.path.join(output_file, PYTORCH_NAME)
    with load_checkpoint(checkpoint, mmap=False) as reader:
        cfg, config_path, _ = describe_source(config_file, reader)
        check_output_spares_inputs(output_file, list(reader.files) + [config_path],
                                   "PYTORCH_DUMP_OUTPUT", "output_file")
        destination.check_replaceable_files([(output_file, "state dict")], given,
                                            "PYTORCH_DUMP_OUTPUT", "output_file", "conversion")
        plan = plan_conversion(reader, cfg, head=head, num_labels=num_labels,
                               allow_new_head=allow_new_head, config_path=config_path,
                               keep_pooler=keep_pooler)
        report = ConversionReport.from_plan(plan, "float32")
        report.format, report.output_dir = "pytorch", os.path.dirname(os.path.abspath(output_file))
        remove_stale_temps(output_file)  # what killed runs to the same file left behind
        try:
            with published_together(), atomic_write(output_file, direct=True) as f:
                specs = outputs.tensor_specs(plan, "float32", order="model")
                writer = torch_zip_writer(f, specs, aliases=plan.tied)
                try:
                    for key, array in iter_tensors(reader, plan, "float32", progress,
                                                   order=[s.name for s in specs]):
                        writer.write(key, array)
                    writer.close()
                finally:
                    writer.abort()
        except OSError as e:
            raise destination.write_error(e, output_file, "PYTORCH_DUMP_OUTPUT",
                                          "output_file") from e
    report.files = [os.path.basename(output_file)]
    return report


def load_converted_model(checkpoint, *, config=None, head="auto", num_labels=None,
                         dtype="float32", allow_new_head=False, gelu=None, keep_pooler=True):
    """Convert in memory: ``(model, ConversionReport)`` with the model in eval mode.

    Same planning and checks as :func:`convert_checkpoint`; nothing is written to disk. The
    pooler is kept by default (``keep_pooler``): the model is bertconvert's, which has one.
    """
    from ..models.heads import HEADS

    _check_options(None, dtype)
    converted = state_dict_from_checkpoint(checkpoint, config=config, head=head,
                                           num_labels=num_labels, dtype=dtype,
                                           allow_new_head=allow_new_head, gelu=gelu,
                                           keep_pooler=keep_pooler)
    model = HEADS[converted.report.head].from_converted_state(
        converted.state_dict, converted.config, converted.report.num_labels)
    return model, converted.report
