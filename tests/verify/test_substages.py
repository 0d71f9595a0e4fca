"""Per-layer sub-stages of the parity check: a query or key weight off by 1e-2 barely moves a
layer's output (softmax over small scores is flat) but moves its projection by the full error,
so comparing the projections catches it and names the layer. Also: the report's nesting and
table, golden files with and without sub-stages, and the input batch's casing guess."""
import json
import logging
import os
import shutil

import numpy as np
import pytest
import torch

from bertconvert.errors import ParityError, VerificationError
from bertconvert.verify.stages import LAYER_SUBSTAGES, split_stage_name, substage_name
from bertconvert.verify import ParityReport, StageResult, assert_parity, compare_all, verify
from bertconvert.tokenizer.wordpiece import guess_do_lower_case as _guess_lower_case

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FIXTURES = os.path.join(ROOT, "fixtures", "checkpoints")
LAYERS = 5  # the fixtures' num_hidden_layers


def ckpt(name):
    return os.path.join(FIXTURES, name)


@pytest.fixture
def converted(converted_fixtures):
    return converted_fixtures


def nudged_copy(src, dst, key, index, delta=1e-2):
    """Copy a converted model directory with one weight element moved by ``delta``."""
    from safetensors.torch import load_file, save_file
    shutil.copytree(src, dst)
    path = os.path.join(dst, "model.safetensors")
    state = load_file(path)
    state[key][index] += delta
    save_file(state, path, metadata={"format": "pt"})
    return str(dst)


# --- names, nesting, table, JSON (no TensorFlow) ------------------------------------------
def test_stage_names_split_and_join():
    assert substage_name(3, "query") == "layer 3 query"
    for part in LAYER_SUBSTAGES:
        assert split_stage_name(substage_name(11, part)) == ("layer 11", part)
    for name in ("layer 3", "embeddings", "pooled", "mlm logits", "layer x query", "query"):
        assert split_stage_name(name) == (name, None)


def _ok(name, shape=(2, 3)):
    return StageResult(name, shape, 1e-7, 1e-7, True)


def test_failing_substage_fails_its_layer_in_report_table_and_json():
    layer3 = _ok("layer 3")
    layer3.substages = [_ok("layer 3 query"), StageResult("layer 3 key", (2, 3), 2e-2, 5e-2,
                                                          False, (1, 2))]
    layer3.substages += [_ok(substage_name(3, p)) for p in LAYER_SUBSTAGES[2:]]
    layer2 = _ok("layer 2")
    layer2.substages = [_ok(substage_name(2, p)) for p in LAYER_SUBSTAGES]
    report = ParityReport(checkpoint="c", model_dir="m", head="base", num_labels=None,
                          device="cpu", dtype="float32", atol=1e-4, rtol=1e-4, reference="r",
                          stages=[_ok("embeddings"), layer2, layer3, _ok("pooled")],
                          inputs={"source": "s", "shape": [2, 3]})
    assert not report.passed and layer3.passed and not layer3.all_passed
    assert report.first_failure == "layer 3" and report.first_failure_stage == "layer 3 key"
    assert report.stage("layer 3 key").worst_index == (1, 2)
    flat = [s.name for s in report.all_stages()]
    assert flat[:3] == ["embeddings", "layer 2 query", "layer 2 key"]
    assert flat.index("layer 3 intermediate") + 1 == flat.index("layer 3")
    assert "first stage over tolerance: layer 3 key" in report.summary()

    table = report.format_table()
    assert "layer 3 key" in table and "layer 3 query" in table  # the failing layer, whole
    assert "layer 2 query" not in table and "--verbose" in table  # a passing layer, folded
    assert "layer 2 query" in report.format_table(verbose=True)
    data = json.loads(json.dumps(report.to_dict()))
    assert data["first_failure"] == "layer 3" and data["first_failure_stage"] == "layer 3 key"
    assert [s["name"] for s in data["stages"]] == ["embeddings", "layer 2", "layer 3", "pooled"]
    assert [s["passed"] for s in data["stages"][2]["substages"]] == [True, False, True, True, True]
    with pytest.raises(ParityError, match="layer 3 key"):
        assert_parity(report)


def test_compare_all_nests_and_tolerates_references_without_substages():
    rng = np.random.default_rng(0)
    ref = {"embeddings": rng.standard_normal((2, 3))}
    for part in LAYER_SUBSTAGES:
        ref[substage_name(0, part)] = rng.standard_normal((2, 3))
    ref["layer 0"] = rng.standard_normal((2, 3))
    torch_out = dict(ref)
    stages, notes = compare_all(torch_out, ref, "base", 1e-4, 1e-4)
    assert [s.name for s in stages] == ["embeddings", "layer 0"] and not notes
    assert [s.name for s in stages[1].substages] == [substage_name(0, p) for p in LAYER_SUBSTAGES]
    # A golden file from before sub-stages: they are skipped with a note, not failed.
    old = {k: v for k, v in ref.items() if split_stage_name(k)[1] is None}
    stages, notes = compare_all(torch_out, old, "base", 1e-4, 1e-4)
    assert all(s.all_passed and not s.substages for s in stages)
    assert any("no per-layer sub-stages" in n for n in notes)
    # A reference that has sub-stages but lacks one: that one fails as missing.
    partial = dict(ref)
    del partial["layer 0 value"]
    stages, _ = compare_all(torch_out, partial, "base", 1e-4, 1e-4)
    missing = [s for s in stages[1].substages if not s.passed]
    assert [s.name for s in missing] == ["layer 0 value"]
    assert "missing in reference" in missing[0].note


# --- the nudges the layer output cannot show ------------------------------------------------
@pytest.mark.tf
@pytest.mark.parametrize("part, index", [("query", (5, 7)), ("key", (11, 2))])
def test_attention_weight_nudge_is_caught_in_float32(tf, converted, tmp_path, part, index):
    key = f"bert.encoder.layer.3.attention.self.{part}.weight"
    bad = nudged_copy(converted["pretraining"], tmp_path / "bad", key, index)
    report = verify(ckpt("pretraining"), bad, progress=False)
    assert (report.atol, report.rtol) == (1e-4, 1e-4)  # the float32 defaults
    assert not report.passed, report.format_table()
    assert report.first_failure == "layer 3"
    assert report.first_failure_stage == f"layer 3 {part}"
    assert all(report.stage(f"layer {i}").all_passed for i in range(3))
    assert report.stage(f"layer 3 {part}").max_abs > 1e-3  # the full 1e-2 times an input
    # Why the sub-stage is needed: the layer's own output stays within tolerance.
    assert report.stage("layer 3").max_abs < 1e-4
    with pytest.raises(ParityError, match=f"layer 3 {part}"):
        assert_parity(ckpt("pretraining"), bad)


# Where a 1e-2 error in each of a layer's 16 tensors must first show: mapping as data.
FIRST_STAGE = [
    ("attention.self.query.", "query"), ("attention.self.key.", "key"),
    ("attention.self.value.", "value"), ("attention.output.", "attention output"),
    ("intermediate.", "intermediate"), ("output.", None),  # None: the layer's own output
]


@pytest.mark.tf
def test_every_encoder_tensor_nudge_is_caught_at_its_own_stage(tf):
    """All 16 tensors of layer 3, one element each +1e-2, in memory (one TF forward)."""
    from bertconvert.convert.run import load_converted_model
    from bertconvert.verify.tf_side import TFReference
    from bertconvert.verify.inputs import load_inputs
    from bertconvert.verify.torch_side import run_torch
    model, _ = load_converted_model(ckpt("pretraining"), head="pretraining")
    inputs = load_inputs(os.path.join(ckpt("pretraining"), "vocab.txt"), "pretraining",
                         max_position_embeddings=64)
    ref = TFReference(ckpt("pretraining")).forward(*inputs.arrays().values(),
                                                   head="pretraining", substages=True)
    params = {k: v for k, v in model.named_parameters() if ".encoder.layer.3." in k}
    assert len(params) == 16
    for name, param in params.items():
        local = name.split(".encoder.layer.3.", 1)[1]
        part = next(p for prefix, p in FIRST_STAGE if local.startswith(prefix))
        index = (5, 7) if param.dim() == 2 else (5,)
        with torch.no_grad():
            param[index] += 1e-2
        try:
            out = run_torch(model, inputs, "pretraining", substages=True)
        finally:
            with torch.no_grad():
                param[index] -= 1e-2
        stages, _ = compare_all(out, ref, "pretraining", 1e-4, 1e-4)
        flat = [s for stage in stages for s in stage.flat()]
        first = next((s for s in flat if not s.passed), None)
        expected = "layer 3" if part is None else substage_name(3, part)
        assert first is not None and first.name == expected, (name, first)
        assert first.max_abs > 1e-3, (name, first.max_abs)  # >10x atol, not a near miss


@pytest.mark.tf
def test_faithful_conversion_passes_every_substage(tf, converted):
    report = verify(ckpt("pretraining"), converted["pretraining"], progress=False)
    assert report.passed, report.format_table(verbose=True)
    flat = report.all_stages()
    assert len(flat) == len(report.stages) + LAYERS * len(LAYER_SUBSTAGES)
    assert max(s.max_abs for s in flat) < 1e-5
    assert report.stage("layer 4 intermediate").shape[-1] == 37  # intermediate_size
    assert report.stage("layer 0 query").shape == report.stage("layer 0").shape


# --- golden files -----------------------------------------------------------------------------
@pytest.mark.tf
def test_golden_files_carry_substages_and_old_ones_still_load(tf, converted, tmp_path):
    from bertconvert.verify.golden import load_golden
    name = "token-classification"
    golden = tmp_path / "golden.npz"
    assert verify(ckpt(name), converted[name], record=golden, progress=False).passed
    loaded = load_golden(golden)
    assert loaded.meta["version"] == 2 and "layer 2 query" in loaded.outputs
    bad = nudged_copy(converted[name], tmp_path / "bad",
                      "bert.encoder.layer.2.attention.self.query.weight", (3, 4))
    report = verify(ckpt(name), bad, reference=golden, progress=False)
    assert report.first_failure == "layer 2" and report.first_failure_stage == "layer 2 query"

    # Rewrite it as a version-1 file (layer outputs only), as an older bertconvert wrote.
    with np.load(golden, allow_pickle=False) as data:
        arrays = {k: data[k] for k in data.files}
    meta = json.loads(str(arrays.pop("meta")))
    meta["version"] = 1
    meta["stages"] = [s for s in meta["stages"] if split_stage_name(s)[1] is None]
    arrays = {k: v for k, v in arrays.items() if split_stage_name(k.split("/", 1)[1])[1] is None}
    old = tmp_path / "old.npz"
    np.savez(old, meta=np.array(json.dumps(meta)), **arrays)
    report = verify(ckpt(name), converted[name], reference=old, progress=False)
    assert report.passed and all(not s.substages for s in report.stages)
    assert any("no per-layer sub-stages" in n for n in report.notes)

    meta["version"] = 99
    np.savez(old, meta=np.array(json.dumps(meta)), **arrays)
    with pytest.raises(VerificationError, match="record it again"):
        load_golden(old)


# --- the input batch's casing guess -----------------------------------------------------------
def _vocab(tmp_path, dirname, tokens, tokenizer_config=None):
    directory = tmp_path / dirname
    directory.mkdir()
    (directory / "vocab.txt").write_text("\n".join(tokens) + "\n", encoding="utf-8")
    if tokenizer_config is not None:
        (directory / "tokenizer_config.json").write_text(json.dumps(tokenizer_config))
    return str(directory / "vocab.txt"), tokens


SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "[unused0]"]
LOWER = SPECIALS + ["the", "dog", "##s", "a", "##b", "1", ",", "中"]
CASED = LOWER + ["The", "##A", "McDonald"]


def test_casing_follows_the_vocabulary(tmp_path, caplog):
    assert _guess_lower_case(*_vocab(tmp_path, "plain", LOWER)) is True
    assert _guess_lower_case(*_vocab(tmp_path, "plain-cased", CASED)) is False
    # The directory name loses to the vocabulary's own letters, with a warning.
    with caplog.at_level(logging.WARNING, logger="bertconvert.tokenizer.vocab"):
        assert _guess_lower_case(*_vocab(tmp_path, "cased_L-2_H-32", LOWER)) is True
    assert "following the vocabulary" in caplog.text
    # Bracketed specials are not evidence; a vocabulary without cased letters asks the name.
    caseless = SPECIALS + ["中", "国", "##的", "1", ","]
    assert _guess_lower_case(*_vocab(tmp_path, "cased_L-12", caseless)) is False
    assert _guess_lower_case(*_vocab(tmp_path, "unnamed", caseless)) is True
    # A few stray capitals in a big lower-cased vocabulary do not make it cased.
    big = LOWER + [f"w{i}" for i in range(5000)] + ["ϒ", "Ǆ"]
    assert _guess_lower_case(*_vocab(tmp_path, "big", big)) is True
    # An explicit tokenizer_config.json wins over everything.
    assert _guess_lower_case(*_vocab(tmp_path, "explicit", CASED,
                                     {"do_lower_case": True})) is True
    assert _guess_lower_case(*_vocab(tmp_path, "junk", CASED, ["not", "a", "dict"])) is False
