"""``verify PRESET_DIR MODEL_DIR --record GOLDEN``: the golden file is written whole, at the
path given, only once the reference is known good, and never onto what the run reads -- for
the Python API as for the CLI."""
import os

import numpy as np
import pytest

from bertconvert.cli import main
from bertconvert.convert.run import convert_checkpoint
from bertconvert.errors import UnsafeOutputError, VerificationError
from bertconvert.verify import verify
from bertconvert.verify.keras_side import keras_hub_available

pytest.importorskip("h5py")

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
KH = os.path.join(ROOT, "fixtures", "keras_hub")
PRESET = os.path.join(KH, "classifier")
BESIDE = PRESET + ".outputs.npz"


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    out = tmp_path_factory.mktemp("kh-record") / "m"
    convert_checkpoint(PRESET, out, progress=False)
    return str(out)


@pytest.mark.parametrize("reference", [None, BESIDE])
def test_record_from_a_golden_reference_writes_the_path_given(model, tmp_path, reference):
    if reference is None and keras_hub_available():
        pytest.skip("keras-hub is installed: the reference is its forward pass")
    record = tmp_path / "golden"  # no .npz suffix: written as named, not as golden.npz
    report = verify(PRESET, model, reference=reference, record=str(record))
    assert report.passed
    assert record.is_file() and not (tmp_path / "golden.npz").exists()
    assert os.listdir(tmp_path) == ["golden"]  # no temp file left beside it
    with np.load(BESIDE) as want, np.load(record) as got:
        assert sorted(got.files) == sorted(want.files)
        for key in want.files:
            np.testing.assert_array_equal(got[key], want[key])
    assert verify(PRESET, model, reference=str(record)).passed


def test_a_reference_without_inputs_records_nothing(model, tmp_path):
    empty = tmp_path / "empty.npz"
    np.savez(empty, **{"x.sequence_output": np.zeros((1, 2, 3), np.float32)})
    record = tmp_path / "out.npz"
    with pytest.raises(VerificationError, match="holds no inputs"):
        verify(PRESET, model, reference=str(empty), record=str(record))
    assert not record.exists()


@pytest.mark.parametrize("where", ["inside", "beside", "reference", "model"])
def test_record_never_lands_on_what_the_run_reads(model, tmp_path, where, capsys):
    reference = tmp_path / "ref.npz"
    reference.write_bytes(open(BESIDE, "rb").read())
    target = {"inside": os.path.join(PRESET, "golden.npz"), "beside": BESIDE,
              "reference": str(reference), "model": os.path.join(model, "config.json")}[where]
    before = open(target, "rb").read() if os.path.exists(target) else None
    with pytest.raises(UnsafeOutputError):
        verify(PRESET, model, reference=str(reference), record=target)
    after = open(target, "rb").read() if os.path.exists(target) else None
    assert before == after
    assert main(["verify", PRESET, model, "--reference", str(reference), "--json", target]) == 2
    assert "Traceback" not in capsys.readouterr().err
    assert (open(target, "rb").read() if os.path.exists(target) else None) == before
