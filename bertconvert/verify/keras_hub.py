"""``verify PRESET_DIR MODEL_DIR`` for a KerasHub BERT preset: the weights stage, then the
model directory's outputs against KerasHub's.

**Weights.** Every tensor of MODEL_DIR is compared bit for bit with the h5 dataset the
converter's plan maps to it (:func:`bertconvert.convert.keras_run.preset_state_dict`, at the
model's stored dtype).

**Reference outputs**, first found of: a golden file given with ``reference=``
(``--reference``); KerasHub's own forward pass when ``keras-hub`` is installed
(:mod:`bertconvert.verify.keras_side`); the golden file beside the preset,
``PRESET_DIR.outputs.npz`` (what ``record=`` and ``fixtures/make_keras_hub_fixtures.py``
write). A golden file holds ``BATCH.token_ids``, ``BATCH.segment_ids``,
``BATCH.padding_mask`` (masked LM: ``BATCH.masked_token_ids``, ``BATCH.mask_positions``)
and the outputs ``BATCH.sequence_output``, ``BATCH.pooled_output``, ``BATCH.logits``,
``BATCH.mlm_logits``, ``BATCH.embedding``. Without any of these the outputs cannot be
compared: :class:`~bertconvert.errors.MissingDependencyError` (exit 2).

Stages, per batch: ``BATCH embeddings``, ``BATCH layer N`` for every block (where the
reference has them), ``BATCH sequence_output``, ``BATCH pooled_output`` (not for a model
directory that left the pooler out), and the head's output; a reference lacking the
sequence output or the head's output fails that stage ("missing in reference"). Tolerances as for TF checkpoints
(1e-4 for float32); a preset whose dtype policy is bfloat16 was computed by KerasHub in
bfloat16, which adds 16*eps(bfloat16) of the stage's largest value; a MODEL_DIR that stores
its weights coarser than the preset (``convert --dtype float16`` of a float32 preset) adds
8*eps of its dtype, since KerasHub computed over the unrounded weights.
"""
import json
import os
import time

import numpy as np

from .. import layout
from ..atomic import atomic_write
from ..errors import MissingDependencyError, VerificationError
from .report import ParityReport, compare_stage
from .tolerance import EPS, REDUCED, Tolerance, resolve_tolerance
from .weights import _result

#: what the KerasHub side computes per head (after the backbone's two outputs)
HEAD_OUTPUT = {layout.SEQUENCE_CLASSIFICATION: "logits", layout.MASKED_LM: "mlm_logits"}


def golden_beside(preset_dir):
    """``PRESET_DIR.outputs.npz``: where a preset's golden file is looked for."""
    return os.path.normpath(os.fspath(preset_dir)) + ".outputs.npz"


def check_preset_outputs(preset_dir, model_dir, outputs, reference=None):
    """Raise UnsafeOutputError (exit 2) when an output (``{flag: path}``) would land on what a
    preset run reads: the preset directory (or inside it), its golden file beside it,
    MODEL_DIR or its files, the ``reference`` golden file, or another output."""
    from ..atomic import check_output_spares_inputs
    from .sources import check_outputs_spare_inputs
    check_outputs_spare_inputs(None, model_dir, outputs, reference=reference)
    read = [os.fspath(preset_dir), golden_beside(preset_dir)]
    for flag, path in outputs.items():
        if path is not None:
            check_output_spares_inputs(path, read, flag=flag,
                                       keyword=flag.lstrip("-").replace("-", "_"))


def load_golden(path):
    """``{key: array}`` of a golden file; VerificationError when it cannot be read."""
    import zipfile
    try:
        with np.load(path, allow_pickle=False) as data:
            return {k: data[k] for k in data.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as e:
        raise VerificationError(f"cannot read golden file {path}: {e}") from e


def check_batches(batches, config, source):
    """Raise VerificationError (exit 2) unless every batch of a golden file can be fed to the
    model: integer ``token_ids``, ``segment_ids`` and ``padding_mask`` of one 2-D shape, ids
    below ``vocab_size``, segments below ``type_vocab_size``, at most
    ``max_position_embeddings`` long, a 0/1 mask; a masked-LM batch's ``masked_token_ids``
    like ``token_ids`` and its ``mask_positions`` inside the sequence. (Else the forward
    pass fails with an IndexError or a shape error instead of naming the file.)"""
    def bad(batch, why):
        return VerificationError(f"the reference ({source}) batch {batch!r} cannot be fed to "
                                 f"the model: {why}")

    for batch, x in batches.items():
        missing = [k for k in ("token_ids", "segment_ids", "padding_mask") if k not in x]
        if missing:
            raise bad(batch, f"{batch}.{missing[0]} is missing")
        for key, value in x.items():
            if value.dtype.kind not in "iub":
                raise bad(batch, f"{batch}.{key} holds {value.dtype} values, not integers")
        shape = x["token_ids"].shape
        if len(shape) != 2 or 0 in shape:
            raise bad(batch, f"{batch}.token_ids has shape {list(shape)}, not [batch, length]")
        if shape[1] > config.max_position_embeddings:
            raise bad(batch, f"length {shape[1]} is over max_position_embeddings "
                             f"{config.max_position_embeddings}")
        limits = {"token_ids": config.vocab_size, "masked_token_ids": config.vocab_size,
                  "segment_ids": config.type_vocab_size, "padding_mask": 2, "mask_positions": shape[1]}
        for key, value in x.items():
            if key != "mask_positions" and value.shape != shape:
                raise bad(batch, f"{batch}.{key} has shape {list(value.shape)}, token_ids "
                                 f"{list(shape)}")
            if key == "mask_positions" and (value.ndim != 2 or value.shape[0] != shape[0]):
                raise bad(batch, f"{batch}.mask_positions has shape {list(value.shape)}")
            if value.size and (value.min() < 0 or value.max() >= limits[key]):
                raise bad(batch, f"{batch}.{key} holds values outside 0..{limits[key] - 1}")


def batches_of(arrays):
    """``{batch: {input name: array}}`` from golden keys ``BATCH.token_ids`` ...."""
    inputs = ("token_ids", "segment_ids", "padding_mask", "mask_positions", "masked_token_ids")
    out = {}
    for key, value in arrays.items():
        batch, _, what = key.partition(".")
        if what in inputs:
            out.setdefault(batch, {})[what] = value
    return out


def default_batches(preset, head):
    """One batch from the bundled sentences, tokenized with the preset's vocabulary as the
    converted directory tokenizes (lower-casing, accents kept or stripped as KerasHub)."""
    from .inputs import build_inputs, default_examples
    from ..tokenizer.wordpiece import BertTokenizer

    tok = BertTokenizer(preset.vocab, do_lower_case=preset.lowercase,
                        strip_accents=preset.strip_accents)
    cfg = preset.config
    inputs = build_inputs(tok, default_examples(layout.BASE), min(128, cfg.max_position_embeddings),
                          layout.BASE, cfg.type_vocab_size)
    x = {"token_ids": inputs.input_ids.astype(np.int32),
         "segment_ids": inputs.token_type_ids.astype(np.int32),
         "padding_mask": inputs.attention_mask.astype(np.int32)}
    if head == layout.MASKED_LM:
        positions = np.tile(np.arange(1, 4, dtype=np.int32), (x["token_ids"].shape[0], 1))
        masked = x["token_ids"].copy()
        np.put_along_axis(masked, positions, tok.vocab.get("[MASK]", 0), axis=1)
        x["mask_positions"], x["masked_token_ids"] = positions, masked
    return {"bundled": x}


def _model_weights(model_dir):
    """MODEL_DIR's tensors as torch tensors, stored dtype kept (bfloat16 included); the
    models package's loader: sharded files too, WeightsError for a missing or bad file."""
    from ..models.weightfiles import load_state_dict
    return load_state_dict(model_dir)


def _bits(tensor):
    """The tensor's bit patterns (an integer view), for a bit-for-bit comparison."""
    import torch
    ints = {2: torch.int16, 4: torch.int32, 8: torch.int64}
    return tensor.contiguous().view(ints[tensor.element_size()])


def weights_stage(preset_dir, model_dir, head, pooled=True):
    """The weights stage: every model-directory tensor against the preset's h5, bit for bit
    (the preset converted in memory at the model's stored dtype). A tensor of the preset the
    directory lacks differs too ("missing"), save the pooler of a directory converted without
    it (``pooled`` False); a tied alias (the MLM decoder, which ``pytorch_model.bin`` files
    keep) is compared with the tensor it is tied to. Returns ``(WeightsResult, the dtype
    the directory stores)``."""
    from ..convert.keras_run import preset_state_dict
    from .pooler import is_pooler_key

    have = _model_weights(model_dir)
    stored = {str(v.dtype).replace("torch.", "") for v in have.values()}
    dtype = stored.pop() if len(stored) == 1 and stored <= {"float16", "bfloat16"} else "float32"
    want, _, _, _ = preset_state_dict(preset_dir, dtype=dtype)
    tied = dict(layout.LAYOUTS[head].tied) if head in layout.LAYOUTS else {}
    differing = []
    for key in sorted(have):
        got, ref = have[key], want.get(key, want.get(tied.get(key)))
        if ref is None:
            differing.append({"key": key, "name": None, "reason": "not in the preset",
                              "max_abs": None})
        elif got.shape != ref.shape or got.dtype != ref.dtype:
            differing.append({"key": key, "name": None, "max_abs": None,
                              "reason": f"{got.dtype} {list(got.shape)} vs the preset's "
                                        f"{ref.dtype} {list(ref.shape)}"})
        elif not bool((_bits(got) == _bits(ref)).all()):
            diff = float((got.double() - ref.double()).abs().max())
            differing.append({"key": key, "name": None, "reason": "values differ",
                              "max_abs": diff})
    missing = [k for k in sorted(want) if k not in have and (pooled or not is_pooler_key(k))]
    differing += [{"key": k, "name": None, "reason": "missing in the model directory",
                   "max_abs": None} for k in missing]
    return _result(len(have) + len(missing), differing, [], "KerasHub preset"), dtype


def _torch_outputs(model_dir, head, batches, pooling, pooled):
    import torch
    from ..models.heads import HEADS

    model = HEADS[head].from_pretrained(model_dir).eval()
    trunk = model if head == layout.BASE else model.bert
    out = {}

    def t(a):
        return torch.from_numpy(np.asarray(a)).long()

    with torch.no_grad():
        for batch, x in batches.items():
            ids, seg, mask = t(x["token_ids"]), t(x["segment_ids"]), t(x["padding_mask"])
            out[f"{batch}.embeddings"] = trunk.embeddings(ids, seg).float().numpy()
            layers, pool = trunk(ids, seg, mask, output_all_encoded_layers=True)
            for i, layer in enumerate(layers):
                out[f"{batch}.layer_{i}"] = layer.float().numpy()
            seq = layers[-1]
            out[f"{batch}.sequence_output"] = seq.float().numpy()
            if pooled:
                out[f"{batch}.pooled_output"] = pool.float().numpy()
            if head == layout.SEQUENCE_CLASSIFICATION:
                out[f"{batch}.logits"] = model(ids, seg, mask).float().numpy()
            elif head == layout.MASKED_LM and "mask_positions" in x:
                logits = model(t(x["masked_token_ids"]), seg, mask)
                pos = t(x["mask_positions"])
                out[f"{batch}.mlm_logits"] = torch.gather(
                    logits, 1, pos[:, :, None].expand(-1, -1, logits.shape[-1])).float().numpy()
            if pooling:
                out[f"{batch}.embedding"] = _pool(seq.float(), mask, pooling).numpy()
    return out


def _pool(seq, mask, pooling):
    """The text embedder's pooling (conversion.json ``keras_hub.embedding_pooling``)."""
    import torch
    m = mask[:, :, None].to(seq.dtype)
    if pooling["mode"] == "cls":
        emb = seq[:, 0]
    elif pooling["mode"] == "max":
        emb = seq.masked_fill(m == 0, float("-inf")).max(dim=1).values
    else:
        emb = (seq * m).sum(1) / torch.clamp(m.sum(1), min=1e-9)
    if pooling.get("normalize", True):
        emb = emb / torch.clamp(emb.norm(dim=-1, keepdim=True), min=1e-12)
    return emb


def _read_report(model_dir):
    """MODEL_DIR's conversion.json as a dict ({} when absent, unreadable or not an object)."""
    from .weights import _conversion_report
    return _conversion_report(model_dir) or {}


def _recorded_pooling(report_json):
    """The embedder's pooling conversion.json records, or None when it records none usable."""
    section = report_json.get("keras_hub")
    pooling = section.get("embedding_pooling") if isinstance(section, dict) else None
    return pooling if isinstance(pooling, dict) and isinstance(pooling.get("mode"), str) else None


def verify_preset(preset_dir, model_dir, *, atol=None, rtol=None, reference=None, record=None,
                  device="cpu", dtype="float32"):
    """Compare the converted ``model_dir`` with the KerasHub preset: weights, then outputs
    (see the module docstring for where the reference comes from). Returns a
    :class:`ParityReport`."""
    from ..convert.keras_preset import read_preset
    from ..models.config import resolve_config
    from ..models.heads import head_for_architecture

    if model_dir is None:
        raise VerificationError("verifying a KerasHub preset needs the converted MODEL_DIR")
    if device != "cpu" or dtype != "float32":
        raise VerificationError("a KerasHub preset is verified on cpu in float32")
    preset_dir, model_dir = os.fspath(preset_dir), os.fspath(model_dir)
    if record is not None:  # before any work: the golden file may not land on an input
        check_preset_outputs(preset_dir, model_dir, {"--record": record}, reference=reference)
    timings, start = {}, time.perf_counter()
    preset = read_preset(preset_dir)
    config, _ = resolve_config(model_dir=model_dir)
    head = head_for_architecture((getattr(config, "architectures", None) or ["BertModel"])[0])
    if head != preset.head:
        raise VerificationError(f"{model_dir} holds a {head} model, but the preset "
                                f"{preset_dir} is a {preset.head} ({preset.task or 'BertBackbone'})")
    report_json = _read_report(model_dir)
    pooled = report_json.get("pooler_written", True) is not False
    weights, stored = weights_stage(preset_dir, model_dir, head, pooled)
    timings["weights"] = time.perf_counter() - start
    notes = []
    if reference is not None:
        source, ref = f"golden file {reference}", load_golden(reference)
        batches = batches_of(ref)
    else:
        from .keras_side import keras_hub_available, keras_outputs
        beside = golden_beside(preset_dir)
        if keras_hub_available():
            batches = default_batches(preset, head)
            ref = keras_outputs(preset_dir, preset.task, batches)
            source = "KerasHub's forward pass (keras-hub)"
        elif os.path.isfile(beside):
            source, ref = f"golden file {beside} (keras-hub is not installed)", load_golden(beside)
            batches = batches_of(ref)
        else:
            raise MissingDependencyError(
                f"no reference for {preset_dir}'s outputs: keras-hub is not installed and there "
                f"is no golden file {beside}; install keras-hub (pip install "
                "'bertconvert[keras-hub]') or pass --reference GOLDEN.npz")
    if not batches:
        raise VerificationError(f"the reference ({source}) holds no inputs")
    check_batches(batches, config, source)
    if record is not None:
        # A golden file's reference already holds its inputs: one array per key.
        arrays = {f"{b}.{k}": v for b, x in batches.items() for k, v in x.items()}
        arrays.update(ref)
        with atomic_write(record, "wb") as f:  # a file object: no ".npz" appended
            np.savez_compressed(f, **arrays)
        notes.append(f"recorded the reference's inputs and outputs to {record}")
    timings["reference"] = time.perf_counter() - start - timings["weights"]
    pooling = _recorded_pooling(report_json) or preset.pooling
    mine = _torch_outputs(model_dir, head, batches, pooling, pooled)
    if not pooled:
        notes.append(f"{model_dir} left the pooler out ({head} does not use it); the pooled "
                     "output is not compared")
    tol = _tolerance(preset, stored, atol, rtol)
    stages = []
    batch_rank = {b: i for i, b in enumerate(batches)}
    # The model's final outputs must be in the reference: one it lacks fails ("missing in
    # reference") rather than passing uncompared. Per-layer stages are compared where present.
    required = {k for k in mine if k.partition(".")[2] in _REQUIRED_OUTPUTS}
    compared = {k for k in ref if _order(k) is not None and k in mine} | required
    for key in sorted(compared, key=lambda k: (batch_rank.get(k.partition(".")[0], 0), _order(k))):
        stages.append(compare_stage(_stage_name(key), mine[key], ref.get(key), tol.atol,
                                    tol.rtol, tol.scale))
    timings["pytorch"] = time.perf_counter() - start - sum(timings.values())
    first = next(iter(batches.values()))
    return ParityReport(
        checkpoint=preset_dir, model_dir=model_dir, head=head, num_labels=preset.num_labels,
        device=device, dtype=dtype, atol=tol.atol, rtol=tol.rtol, reference=source,
        stages=stages, inputs={"source": ", ".join(batches), "shape": list(first["token_ids"].shape)},
        timings=timings, notes=notes + list(preset.notes), weights=weights,
        gelu="tanh (KerasHub's encoder)", tolerance=tol)


def _tolerance(preset, stored, atol, rtol):
    """The run's :class:`Tolerance`: float32 defaults; the weights' rounding when MODEL_DIR
    stores them coarser than the preset does (``convert --dtype float16`` of a float32 preset:
    KerasHub computed over the unrounded ones); KerasHub's bfloat16 activations for a preset
    whose dtype policy is bfloat16 (its h5 weights are bfloat16 then)."""
    bf16_policy = any("bfloat16" in n for n in preset.notes)
    preset_dtype = "bfloat16" if bf16_policy else "float32"
    rounded = (stored,) if stored in REDUCED else ()
    same = not rounded or stored == preset_dtype
    tol = resolve_tolerance("float32", stored, atol, rtol,
                            reference_rounding=rounded if same else ())
    if bf16_policy and atol is None:
        why = ("KerasHub computed in bfloat16 (the preset's dtype policy): 16*eps(bfloat16) "
               "of each stage's largest value on top of float32's")
        tol = Tolerance(tol.atol, tol.rtol, tol.scale + 16 * EPS["bfloat16"],
                        why + (f"; {tol.why}" if tol.scale else ""))
    return tol


#: the outputs (after ``BATCH.``) a reference must hold whenever the model computes them
_REQUIRED_OUTPUTS = ("sequence_output", "logits", "mlm_logits", "embedding")

_OUTPUT_ORDER = ("embeddings", "layer_", "sequence_output", "pooled_output", "logits",
                 "mlm_logits", "embedding")


def _order(key):
    """Where stage ``BATCH.WHAT`` comes in the computation (None: not an output)."""
    what = key.partition(".")[2]
    if what.startswith("layer_") and what[6:].isdigit():
        return (1, int(what[6:]))
    return (_OUTPUT_ORDER.index(what), 0) if what in _OUTPUT_ORDER else None


def _stage_name(key):
    batch, _, what = key.partition(".")
    return f"{batch} {what.replace('_', ' ') if what.startswith('layer_') else what}"
