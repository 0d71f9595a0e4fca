"""``convert PRESET --dtype float16|bfloat16`` then ``verify PRESET MODEL_DIR``: a faithful
reduced-precision conversion passes. KerasHub's outputs were computed over the preset's
float32 weights, which a reference cannot re-round, so the weights' rounding is tolerated
(8*eps of the stored dtype, as for a golden file recorded over other weights); a float32
conversion keeps the plain float32 tolerances."""
import os

import pytest

from bertconvert.convert.run import convert_checkpoint
from bertconvert.verify import verify
from bertconvert.verify.tolerance import EPS, K_WEIGHTS

pytest.importorskip("h5py")

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
KH = os.path.join(ROOT, "fixtures", "keras_hub")
PRESET = os.path.join(KH, "classifier")


@pytest.mark.parametrize("dtype", ["float16", "bfloat16", "float32"])
def test_a_reduced_precision_conversion_of_a_float32_preset_passes(tmp_path, dtype):
    model = tmp_path / dtype
    convert_checkpoint(PRESET, model, progress=False, dtype=dtype)
    report = verify(PRESET, str(model), reference=PRESET + ".outputs.npz")
    assert report.weights.passed
    assert report.passed, report.summary()
    want = 0.0 if dtype == "float32" else K_WEIGHTS * EPS[dtype]
    assert report.tolerance.scale == want
    assert report.atol == 1e-4 and report.rtol == 1e-4


def test_a_given_atol_replaces_the_scale(tmp_path):
    model = tmp_path / "m"
    convert_checkpoint(PRESET, model, progress=False, dtype="float16")
    report = verify(PRESET, str(model), reference=PRESET + ".outputs.npz", atol=1e-4)
    assert report.tolerance.scale == 0.0 and not report.passed
