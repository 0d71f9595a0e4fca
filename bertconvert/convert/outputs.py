"""The output directory's files: weights streamed into ``model.safetensors`` and/or
``pytorch_model.bin``, ``config.json``, ``bert_config.json``, ``vocab.txt`` and
``tokenizer_config.json``, each written into the run's temp directory and fsynced once (the
run publishes the directory; see :mod:`bertconvert.convert.run`).
"""
import logging
import os
import stat
import shutil

from ..safeio import MAX_VOCAB_BYTES, copy_regular_file, dumps_json, file_kind
from ..directio import DirectFile
from ..errors import ConversionError, VocabError, option
from ..layout import (CONFIG_NAME, DEFAULT_NUM_LABELS, GOOGLE_CONFIG_NAME, OPTIMIZER_NAME,
                      PYTORCH_NAME, SAFETENSORS_NAME, TOKENIZER_CONFIG_NAME, VOCAB_NAME)
from .optimizer_state import slot_read_order, write_optimizer_file
from .stream import _format_option, _fresh, _progress, _require_torch, iter_tensors
from .tensors import TensorCopier
from .writers import SafetensorsStreamWriter, TensorSpec, safetensors_order, torch_zip_writer

logger = logging.getLogger(__name__)

FORMATS = ("safetensors", "pytorch", "both")


def tensor_specs(plan, dtype, order="safetensors"):
    """Every output tensor's TensorSpec, in safetensors' order or the model's state-dict
    order (``order="model"``: how 0.6.2's torch.save laid out pytorch_model.bin)."""
    specs = [TensorSpec(t.key, dtype, tuple(t.shape)) for t in plan.tensors] + \
        [TensorSpec(k, dtype, tuple(s)) for k, s in plan.new_keys]
    if order == "safetensors":
        return safetensors_order(specs)
    rank = {k: i for i, k in enumerate(plan.key_order)}
    return sorted(specs, key=lambda s: rank.get(s.name, len(rank)))


def _fsync(f):
    """Make ``f``'s bytes durable (files from a custom opener may have no descriptor)."""
    if hasattr(f, "flush"):
        f.flush()
    if hasattr(f, "fileno"):
        os.fsync(f.fileno())


def _open_weights(path, opener):
    """A weight file: a :class:`DirectFile` (written past the page cache, cheap to fsync)
    unless the caller supplied an ``opener``."""
    return DirectFile(path, "x") if opener is None else opener(path, "wb")


def fsync_path(path):
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_safetensors(path, plan, reader, dtype, progress, opener):
    """model.safetensors, streamed piece by piece: no torch, one tensor in memory at most.

    Tensors are declared in safetensors' own order, so the file is byte for byte what
    ``safetensors.numpy.save_file`` would write. Tied aliases are left out, as transformers
    does; loaders re-tie them.
    """
    specs = tensor_specs(plan, dtype)
    planned = {t.key: t for t in plan.tensors}
    fresh = dict(plan.new_keys)
    with _open_weights(path, opener) as raw, TensorCopier(reader, dtype) as copier, \
            _progress(plan, progress) as bar:
        writer = SafetensorsStreamWriter(raw, specs, metadata={"format": "pt"})
        for spec in specs:
            if spec.name in fresh:
                writer.write(spec.name, _fresh(spec.name, fresh[spec.name], plan.config, dtype))
                continue
            t = planned[spec.name]
            writer.write_chunks(spec.name, copier.chunks(t))
            bar.update(t.nbytes)
        writer.close()
        _fsync(raw)  # durable before the directory is renamed into place


def write_optimizer(directory, reader, slots, global_step, opener):
    """optimizer.safetensors (:mod:`~bertconvert.convert.optimizer_state`), fsynced; returns
    its file name."""
    path = os.path.join(directory, OPTIMIZER_NAME)
    with _open_weights(path, opener) as raw:
        write_optimizer_file(raw, reader, slots, global_step)
        _fsync(raw)
    return OPTIMIZER_NAME


def _write_with_torch(directory, plan, reader, format, dtype, progress, opener):
    """pytorch_model.bin (and model.safetensors for "both"), from whole arrays: torch's zip
    writer takes each storage in one piece."""
    _require_torch(f"writing {PYTORCH_NAME} ({_format_option(format)})")
    specs = tensor_specs(plan, dtype, order="safetensors" if format == "both" else "model")
    files, writers, done = [], [], False
    try:
        if format == "both":
            f = _open_weights(os.path.join(directory, SAFETENSORS_NAME), opener)
            files.append(f)
            writers.append(SafetensorsStreamWriter(f, specs, metadata={"format": "pt"}))
        f = _open_weights(os.path.join(directory, PYTORCH_NAME), opener)
        files.append(f)
        writers.append(torch_zip_writer(f, specs, aliases=plan.tied))
        for key, array in iter_tensors(reader, plan, dtype, progress, order=[s.name for s in specs]):
            for w in writers:
                w.write(key, array)
        for w in writers:
            w.close()
        for f in files:
            _fsync(f)  # durable before the directory is renamed into place
        done = True
    finally:
        for w in writers:  # a no-op after close(); after a failure, keeps torch's
            if hasattr(w, "abort"):  # writer from retrying (and aborting) in its destructor
                w.abort()
        for f in files:
            if not done and isinstance(f, DirectFile):
                f.abort()  # discarded anyway; a second write error must not hide the first
            else:
                f.close()


def write_weights(directory, plan, reader, format, dtype, progress, opener):
    """Write the weight file(s) of ``format`` into ``directory``; returns their names."""
    if format == "safetensors":
        _write_safetensors(os.path.join(directory, SAFETENSORS_NAME), plan, reader, dtype,
                           progress, opener)
    else:
        _write_with_torch(directory, plan, reader, format, dtype, progress, opener)
    return [name for name, on in ((SAFETENSORS_NAME, format in ("safetensors", "both")),
                                  (PYTORCH_NAME, format in ("pytorch", "both"))) if on]


def _hf_config(plan, dtype):
    data = plan.config.to_hf_dict(architectures=[plan.model_class])
    data["num_labels"] = plan.num_labels if plan.num_labels is not None else data.get("num_labels", DEFAULT_NUM_LABELS)
    if "id2label" not in data or len(data["id2label"]) != data["num_labels"]:
        data["id2label"] = {str(i): f"LABEL_{i}" for i in range(data["num_labels"])}
        data["label2id"] = {f"LABEL_{i}": i for i in range(data["num_labels"])}
    data["dtype"] = dtype
    return dict(sorted(data.items()))


def tokenizer_config(vocab_file, config):
    """The ``tokenizer_config.json`` for a converted model, or None when the vocabulary cannot
    be read (a note says so; the conversion itself does not need it).

    Without this file, tokenizers fall back to ``do_lower_case=True`` and silently lower-case
    text for a cased model; the casing is guessed from the checkpoint's own vocabulary (see
    :func:`bertconvert.tokenizer.wordpiece.guess_do_lower_case`).
    """
    from ..tokenizer.wordpiece import guess_do_lower_case

    try:
        lower = guess_do_lower_case(vocab_file)
    except VocabError as e:
        logger.warning("cannot tell the casing of %s (%s); writing no %s", vocab_file, e,
                       TOKENIZER_CONFIG_NAME)
        return None
    return {"do_lower_case": lower, "model_max_length": config.max_position_embeddings,
            "tokenizer_class": "BertTokenizer"}


def write_json(path, data, opener, fsync=False):
    with opener(path, "w") as f:
        f.write(dumps_json(data, ConversionError, os.path.basename(path), indent=2) + "\n")
        if fsync:
            _fsync(f)


def vocab_source(vocab, prefix, default=None):
    """``(path, found)``: the vocabulary to copy, explicit, ``default`` (a SavedModel's
    assets/vocab.txt) or beside the checkpoint.

    What will be copied into the model directory must be a regular file of at most
    :data:`~bertconvert.safeio.MAX_VOCAB_BYTES`, and a SavedModel's asset must not be a
    symlink leading out of the SavedModel (a downloaded directory must not make us copy
    ``/etc/passwd`` into a model we publish): VocabError otherwise."""
    if vocab is None:
        path = default or os.path.join(os.path.dirname(prefix), VOCAB_NAME)
        if not os.path.lexists(path):
            return path, False
        if default:
            _check_inside(path, os.path.dirname(os.path.dirname(default)))
        _check_copyable(path, "the vocabulary found beside the checkpoint")
        return path, True
    path = os.fspath(vocab)
    if not os.path.isfile(path):
        what = "does not exist" if not os.path.exists(path) else "is not a file"
        raise VocabError(f"vocabulary {path} {what}; expected a vocab.txt (one WordPiece token "
                         f"per line) for {option('--vocab FILE', 'vocab=')}")
    _check_copyable(path, "the vocabulary given")
    return path, True


def _check_inside(path, root):
    """VocabError when ``path`` resolves (through symlinks) to a file outside ``root``."""
    real, real_root = os.path.realpath(path), os.path.realpath(root)
    if os.path.commonpath([real, real_root]) != real_root:
        raise VocabError(
            f"{path} is a symlink to {real}, outside the SavedModel {root}; refusing to copy "
            f"it into the model directory. Pass the vocabulary you mean with "
            f"{option('--vocab FILE', 'vocab=')}")


def _check_copyable(path, what):
    """VocabError unless ``path`` is (or links to) a regular file of bounded size."""
    try:
        info = os.stat(path)
    except OSError as e:
        raise VocabError(f"cannot read {what}, {path}: {e.strerror or e}") from e
    if not stat.S_ISREG(info.st_mode):
        raise VocabError(f"{what}, {path}, is {file_kind(info.st_mode)}, not a regular file; "
                         f"pass a vocab.txt with {option('--vocab FILE', 'vocab=')}")
    if info.st_size > MAX_VOCAB_BYTES:
        raise VocabError(
            f"{what}, {path}, is {info.st_size} bytes, more than the {MAX_VOCAB_BYTES} bytes a "
            f"vocabulary can sensibly have (BERT's are a few MB); pass the right vocab.txt with "
            f"{option('--vocab FILE', 'vocab=')}")


def write_side_files(directory, plan, dtype, config_path, vocab, tokenizer, opener):
    """config.json, bert_config.json (the source file itself when it is one; pass
    ``config_path=None`` to write it from the settled config, e.g. when the GELU choice
    changed ``hidden_act``), the vocabulary and tokenizer_config.json (each when given) into
    ``directory``; returns their paths."""
    side = [os.path.join(directory, CONFIG_NAME), os.path.join(directory, GOOGLE_CONFIG_NAME)]
    write_json(side[0], _hf_config(plan, dtype), opener)
    if config_path and os.path.basename(config_path) == GOOGLE_CONFIG_NAME:
        shutil.copyfile(config_path, side[1])
    else:
        write_json(side[1], plan.config.to_google_dict(), opener)
    if vocab is not None:
        side.append(os.path.join(directory, VOCAB_NAME))
        copy_regular_file(vocab, side[-1], MAX_VOCAB_BYTES, VocabError, "vocabulary file")
    if tokenizer is not None:
        side.append(os.path.join(directory, TOKENIZER_CONFIG_NAME))
        write_json(side[-1], tokenizer, opener)
    return side


def read_order(plan, format, dtype):
    """The planned tensors in the order the weight writer for ``format`` reads them."""
    order = None if format == "safetensors" else ("safetensors" if format == "both" else "model")
    specs = tensor_specs(plan, dtype) if order is None else tensor_specs(plan, dtype, order=order)
    planned = {t.key: t for t in plan.tensors}
    return [planned[s.name] for s in specs if s.name in planned]


def schedule_reads(reader, plan, format, dtype, report=None, slots=None):
    """Tell a remote reader which tensors will be read, in order, so it fetches them ahead:
    the weights, then the Adam ``slots`` (``--optimizer-state``) if any (one schedule: a
    later one would replace it); ``report`` names a fetched config by its URL."""
    store = getattr(reader, "store", None)
    if store is None:
        return
    if report is not None and report.config_path:
        report.config_path = store.side_urls.get(os.path.abspath(report.config_path),
                                                 report.config_path)
    tensors = read_order(plan, format, dtype) + (slot_read_order(slots) if slots else [])
    store.schedule([reader.entry(t.name) for t in tensors])
