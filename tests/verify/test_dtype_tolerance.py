"""verify's default tolerances follow the model's stored dtype and the run's dtype.

A correct ``convert --dtype float16/bfloat16`` conversion passes ``verify CKPT DIR`` with no
flags; the same directory with a 0.05-sigma change to one attention-output kernel fails,
and not only at the (bit-exact) weights stage: its numeric stages fail too.
"""
import json
import os
import shutil

import numpy as np
import pytest

from bertconvert.cli import main
from bertconvert.verify.report import compare_stage
from bertconvert.verify.tolerance import (EPS, K_COMPUTE, K_WEIGHTS, resolve_tolerance,
                                          weight_rounding)

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CKPT = os.path.join(ROOT, "fixtures", "checkpoints", "next-sentence")
KERNEL = "bert.encoder.layer.3.attention.output.dense.weight"
HALF = ["float16", "bfloat16"]


# --- the rules, without TensorFlow ------------------------------------------------------

def test_unit_roundoffs_are_the_dtypes_own():
    # Test-side constants (spacing of numbers in [1, 2)): 10, 7 and 23 mantissa bits.
    assert EPS["float16"] == 1 / 1024 and EPS["bfloat16"] == 1 / 128
    assert EPS["float32"] == 2.0 ** -23


def test_defaults_by_stored_and_run_dtype():
    fp32 = resolve_tolerance("float32", "float32")
    assert (fp32.atol, fp32.rtol, fp32.scale) == (1e-4, 1e-4, 0.0)
    for half in HALF:
        # Stored in half precision, run in float32: the reference rounds its weights alike.
        stored = resolve_tolerance("float32", half)
        assert (stored.atol, stored.rtol, stored.scale) == (1e-4, 1e-4, 0.0)
        assert f"{half} model" in stored.why and f"{half}-rounded weights" in stored.why
        # Run in half precision: activation rounding, proportional to the stage's size.
        run = resolve_tolerance(half, half)
        assert run.scale == pytest.approx(16 * {"float16": 2 ** -10, "bfloat16": 2 ** -7}[half])
        assert run.scale == K_COMPUTE * EPS[half] and f"{half} run" in run.why
        # A golden file recorded over float32 weights cannot be re-rounded: weights term.
        golden = resolve_tolerance("float32", half, reference_rounding=())
        assert golden.scale == K_WEIGHTS * EPS[half] and "recorded over float32" in golden.why
        # A golden file recorded over the same rounding: no weights term.
        same = resolve_tolerance("float32", half, reference_rounding=(half,))
        assert same.scale == 0.0
    f64 = resolve_tolerance("float64", "float32")
    assert (f64.atol, f64.rtol, f64.scale) == (1e-10, 1e-9, 0.0)


def test_explicit_tolerances_override():
    given = resolve_tolerance("float16", "float16", atol=0.5, rtol=0.25)
    assert (given.atol, given.rtol, given.scale) == (0.5, 0.25, 0.0)
    assert given.why.startswith("atol and rtol as given")
    only_rtol = resolve_tolerance("float16", "float16", rtol=0.0)
    assert only_rtol.rtol == 0.0 and only_rtol.scale == K_COMPUTE * EPS["float16"]
    from bertconvert.errors import VerificationError
    with pytest.raises(VerificationError, match=">= 0"):
        resolve_tolerance("float32", atol=-1)
    with pytest.raises(VerificationError, match="dtype"):
        resolve_tolerance("int8")


def test_weight_rounding_chain():
    assert weight_rounding("float32", "float32") == ()
    assert weight_rounding("float16", "float32") == ("float16",)
    assert weight_rounding("float32", "bfloat16") == ("bfloat16",)
    assert weight_rounding("bfloat16", "float16") == ("bfloat16", "float16")


def test_stage_tolerance_scales_with_the_stage_magnitude():
    ref = np.zeros((2, 3), np.float32)
    ref[0, 0] = 4.0
    actual = ref.copy()
    actual[1, 2] = 2e-3  # an error where the reference is 0: only atol covers it
    scale = K_COMPUTE * EPS["float16"]
    loose = compare_stage("s", actual, ref, 1e-4, 1e-4, scale)
    assert loose.passed and loose.atol == pytest.approx(1e-4 + scale * 4.0)
    assert not compare_stage("s", actual, ref, 1e-4, 1e-4).passed
    # The same error on a stage a hundred times smaller is over tolerance.
    small, small_actual = ref / 100, actual.copy()
    small_actual[0, 0] = small[0, 0]
    assert not compare_stage("s", small_actual, small, 1e-4, 1e-4, scale).passed


def test_stored_dtype_read_from_the_weights(tmp_path):
    from bertconvert.convert.run import convert_checkpoint
    from bertconvert.verify.torch_side import stored_dtype
    for dtype in ["float32"] + HALF:
        out = tmp_path / dtype
        convert_checkpoint(CKPT, out, dtype=dtype, progress=False)
        assert stored_dtype(str(out)) == dtype
        bin_only = tmp_path / f"{dtype}-bin"
        convert_checkpoint(CKPT, bin_only, dtype=dtype, format="pytorch", progress=False)
        config = json.loads((bin_only / "config.json").read_text())
        config.pop("dtype", None), config.pop("torch_dtype", None)
        (bin_only / "config.json").write_text(json.dumps(config))
        assert stored_dtype(str(bin_only)) == dtype  # from the tensors, not the config
        # The safetensors header decides, not what config.json claims.
        config = json.loads((out / "config.json").read_text())
        config["dtype"] = "float32" if dtype != "float32" else "float16"
        (out / "config.json").write_text(json.dumps(config))
        assert stored_dtype(str(out)) == dtype


# --- end to end, with TensorFlow --------------------------------------------------------

@pytest.fixture
def tf():
    return pytest.importorskip("tensorflow", reason="TensorFlow is needed for the reference")


def _convert(tmp_path, dtype):
    out = tmp_path / dtype
    assert main(["convert", CKPT, "--out", str(out), "--dtype", dtype, "-q"]) == 0
    return out


def _corrupt(src, dst, dtype):
    """A copy of ``src`` with 0.05 sigma of noise added to one attention-output kernel
    (sigma: that kernel's own standard deviation), stored back in ``dtype``."""
    shutil.copytree(src, dst)
    path = os.path.join(dst, "model.safetensors")
    rng = np.random.default_rng(17)
    if dtype == "float16":
        from safetensors.numpy import load_file, save_file
        state = load_file(path)
        kernel = state[KERNEL].astype(np.float32)
        noise = 0.05 * kernel.std() * rng.standard_normal(kernel.shape)
        state[KERNEL] = (kernel + noise).astype(np.float16)
    else:  # numpy has no bfloat16: edit through torch
        import torch
        from safetensors.torch import load_file, save_file
        state = load_file(path)
        kernel = state[KERNEL].float()
        noise = torch.from_numpy(0.05 * float(kernel.std()) * rng.standard_normal(kernel.shape))
        state[KERNEL] = (kernel + noise.float()).to(torch.bfloat16)
    save_file(state, path, metadata={"format": "pt"})
    return str(dst)


@pytest.mark.tf
@pytest.mark.parametrize("dtype", HALF)
def test_half_precision_conversion_passes_and_corruption_fails(tf, tmp_path, dtype, capsys):
    good = _convert(tmp_path, dtype)
    capsys.readouterr()
    report = tmp_path / "good.json"
    assert main(["verify", CKPT, str(good), "-q", "--json", str(report)]) == 0
    out = capsys.readouterr().out
    data = json.loads(report.read_text())
    summary = out.strip().splitlines()[-1]
    assert summary.startswith("PASS") and f"{dtype} model" in summary
    assert "atol=0.0001 rtol=0.0001" in summary  # float32 round-off: same rounded weights
    assert data["tolerance"]["scale"] == 0.0 and f"{dtype}-rounded" in data["tolerance"]["why"]
    # Both sides compute with the same rounded weights: float32 round-off remains.
    assert max(s["max_abs"] for s in data["stages"]) < 2e-5

    bad = _corrupt(good, tmp_path / "bad", dtype)
    report = tmp_path / "bad.json"
    assert main(["verify", CKPT, bad, "-q", "--json", str(report)]) == 1
    capsys.readouterr()
    data = json.loads(report.read_text())
    assert data["first_differing_tensor"] == KERNEL  # the weights stage sees it ...
    # ... and so do the numeric stages, from the corrupted layer on: first at its
    # attention output, by well over the tolerance.
    assert data["first_output_failure"] == "layer 3"
    assert data["first_failure_stage"] == "layer 3 attention output"
    layer3 = next(s for s in data["stages"] if s["name"] == "layer 3")
    attention = next(s for s in layer3["substages"] if s["name"] == "layer 3 attention output")
    assert not attention["passed"] and attention["max_abs"] > 5 * attention["atol"]
    assert all(s["passed"] for s in data["stages"][:4])  # embeddings, layers 0-2 untouched


@pytest.mark.tf
@pytest.mark.parametrize("dtype", HALF)
def test_half_precision_run_and_golden_file_of_float32_weights(tf, tmp_path, dtype, capsys):
    good = _convert(tmp_path, dtype)
    full = _convert(tmp_path, "float32")
    golden = tmp_path / "golden.npz"
    assert main(["verify", CKPT, str(full), "-q", "--record", str(golden)]) == 0
    capsys.readouterr()
    # Run in half precision: the activation-rounding term.
    report = tmp_path / "run.json"
    assert main(["verify", CKPT, str(good), "-q", "--dtype", dtype, "--json", str(report)]) == 0
    data = json.loads(report.read_text())
    assert data["tolerance"]["scale"] == pytest.approx(K_COMPUTE * EPS[dtype])
    assert f"{dtype} run" in capsys.readouterr().out.strip().splitlines()[-1]
    # Against outputs recorded over float32 weights: the weights-rounding term.
    report = tmp_path / "golden.json"
    assert main(["verify", CKPT, str(good), "-q", "--reference", str(golden),
                 "--json", str(report)]) == 0
    data = json.loads(report.read_text())
    assert data["tolerance"]["scale"] == pytest.approx(K_WEIGHTS * EPS[dtype])
    assert "recorded over float32 weights" in capsys.readouterr().out
    # The rounding is real: held to float32's tolerance, the same comparison fails.
    assert main(["verify", CKPT, str(good), "-q", "--reference", str(golden),
                 "--atol", "1e-4", "--rtol", "1e-4"]) == 1
    summary = capsys.readouterr().err
    assert "atol and rtol as given" in summary


@pytest.mark.tf
def test_golden_file_recorded_from_a_half_model_keeps_its_rounding(tf, tmp_path, capsys):
    good = _convert(tmp_path, "float16")
    golden = tmp_path / "golden16.npz"
    assert main(["verify", CKPT, str(good), "-q", "--record", str(golden)]) == 0
    with np.load(golden, allow_pickle=False) as data:
        meta = json.loads(str(data["meta"]))
    assert meta["weights_rounding"] == ["float16"]
    report = tmp_path / "r.json"
    assert main(["verify", CKPT, str(good), "-q", "--reference", str(golden),
                 "--json", str(report)]) == 0
    assert json.loads(report.read_text())["tolerance"]["scale"] == 0.0
    capsys.readouterr()
