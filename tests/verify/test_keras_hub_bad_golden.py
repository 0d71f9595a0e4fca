"""A KerasHub preset's golden file whose inputs cannot be fed to the model (ids past the
vocabulary, mismatched shapes, float ids) or that is not a whole .npz is an input error
naming the file (exit 2), never an IndexError/RuntimeError traceback from the forward pass."""
import os

import numpy as np
import pytest

from bertconvert.cli import main
from bertconvert.convert.run import convert_checkpoint
from bertconvert.errors import VerificationError
from bertconvert.verify import verify

pytest.importorskip("h5py")

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
KH = os.path.join(ROOT, "fixtures", "keras_hub")
PRESET = os.path.join(KH, "classifier")
GOLDEN = PRESET + ".outputs.npz"


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    out = tmp_path_factory.mktemp("kh-bad-golden") / "m"
    convert_checkpoint(PRESET, out, progress=False)
    return str(out)


def _ids_past_vocab(d):
    d["single.token_ids"] = d["single.token_ids"] + 100000


def _short_segments(d):
    d["single.segment_ids"] = d["single.segment_ids"][:, :3]


def _float_ids(d):
    d["single.token_ids"] = d["single.token_ids"].astype(np.float32)


def _segment_past_types(d):
    d["single.segment_ids"] = d["single.segment_ids"] + 7


def _no_mask(d):
    del d["single.padding_mask"]


@pytest.mark.parametrize("spoil", [_ids_past_vocab, _short_segments, _float_ids,
                                   _segment_past_types, _no_mask])
def test_inputs_the_model_cannot_take_are_an_input_error(model, tmp_path, spoil, capsys):
    with np.load(GOLDEN) as data:
        d = {k: data[k] for k in data.files}
    spoil(d)
    path = tmp_path / "bad.npz"
    np.savez(path, **d)
    with pytest.raises(VerificationError, match="bad.npz"):
        verify(PRESET, model, reference=str(path))
    assert main(["verify", PRESET, model, "--reference", str(path)]) == 2
    err = capsys.readouterr().err
    assert "cannot be fed to the model" in err and "Traceback" not in err


def test_a_truncated_golden_file_is_an_input_error(model, tmp_path):
    path = tmp_path / "cut.npz"
    path.write_bytes(open(GOLDEN, "rb").read()[:3000])
    with pytest.raises(VerificationError, match="cannot read golden file"):
        verify(PRESET, model, reference=str(path))
