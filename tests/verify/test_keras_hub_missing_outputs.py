"""A KerasHub preset's golden file that lacks one of the model's final outputs (the head's
logits, the sequence output) fails verify on that stage, "missing in reference", instead of
passing without comparing it."""
import os

import numpy as np
import pytest

from bertconvert.cli import main
from bertconvert.convert.run import convert_checkpoint
from bertconvert.verify import verify

pytest.importorskip("h5py")

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
KH = os.path.join(ROOT, "fixtures", "keras_hub")
PRESET = os.path.join(KH, "classifier")


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    out = tmp_path_factory.mktemp("kh-missing") / "m"
    convert_checkpoint(PRESET, out, progress=False)
    return str(out)


def golden_without(tmp_path, what):
    with np.load(PRESET + ".outputs.npz") as data:
        kept = {k: data[k] for k in data.files if k.partition(".")[2] != what}
    path = tmp_path / f"no-{what}.npz"
    np.savez(path, **kept)
    return str(path)


def test_the_full_golden_file_passes(model):
    assert verify(PRESET, model, reference=PRESET + ".outputs.npz").passed


@pytest.mark.parametrize("what", ["logits", "sequence_output"])
def test_a_golden_file_without_a_final_output_fails_on_it(model, tmp_path, what):
    report = verify(PRESET, model, reference=golden_without(tmp_path, what))
    assert not report.passed
    failed = [s for s in report.stages if not s.passed]
    assert failed and all(s.name.endswith(what) for s in failed)
    assert all(s.note == "missing in reference" for s in failed)
    assert main(["verify", PRESET, model, "--reference", golden_without(tmp_path, what)]) == 1


def test_per_layer_stages_may_be_absent(model, tmp_path):
    with np.load(PRESET + ".outputs.npz") as data:
        kept = {k: data[k] for k in data.files if ".layer_" not in k}
    path = tmp_path / "no-layers.npz"
    np.savez(path, **kept)
    report = verify(PRESET, model, reference=str(path))
    assert report.passed and not any(" layer " in s.name for s in report.stages)
