"""export of a directory with optimizer.safetensors: the slots and global_step go back into the
TF1 checkpoint, so a PyTorch continuation can return to Google's scripts."""
import numpy as np
import pytest

import bertconvert
from bertconvert.checkpoint import load_checkpoint
from bertconvert.convert.export import export_model_dir
from bertconvert.errors import SlotShapeError
from bertconvert.layout import OPTIMIZER_NAME
from bertconvert.optimization import save_optimizer_state

from .resume_fixture import checkpoint, continue_run, expected, resume_kwargs, run_of


def _names(reader):
    return set(reader.get_variable_to_shape_map())


def test_convert_then_export_gives_back_the_checkpoint_bit_for_bit(tmp_path):
    bertconvert.convert_checkpoint(checkpoint(), tmp_path / "m", optimizer_state=True, progress=False)
    export_model_dir(tmp_path / "m", str(tmp_path / "tf" / "model.ckpt"), progress=False)
    with load_checkpoint(checkpoint()) as a, load_checkpoint(str(tmp_path / "tf" / "model.ckpt")) as b:
        assert _names(a) == _names(b)
        for name in _names(a):
            want, have = a.get_tensor(name), b.get_tensor(name)
            assert want.dtype == have.dtype and np.array_equal(want, have), name


def test_without_optimizer_state_the_export_has_no_slots(tmp_path):
    bertconvert.convert_checkpoint(checkpoint(), tmp_path / "m", progress=False)
    export_model_dir(tmp_path / "m", str(tmp_path / "tf" / "model.ckpt"), progress=False)
    with load_checkpoint(str(tmp_path / "tf" / "model.ckpt")) as b:
        assert not any(n.endswith(("adam_m", "adam_v")) or n == "global_step" for n in _names(b))


def test_a_pytorch_continuation_goes_back_as_tensorflow_would_have_saved_it(tmp_path):
    run, exp = run_of(), expected()
    model, optimizer, scheduler = bertconvert.resume_from_tf(checkpoint(), **resume_kwargs())
    steps = range(run["K"], run["K"] + run["M"])
    continue_run(model, optimizer, scheduler, exp, steps)
    model.save_pretrained(tmp_path / "m")
    save_optimizer_state(optimizer, model, tmp_path / "m")
    export_model_dir(tmp_path / "m", str(tmp_path / "tf" / "model.ckpt-6"), progress=False)
    last = steps[-1]
    with load_checkpoint(str(tmp_path / "tf" / "model.ckpt-6")) as b:
        assert int(b.get_tensor("global_step")) == run["K"] + run["M"]
        for name in (n for n in _names(b) if f"after_{last}/{n}" in exp.files):
            np.testing.assert_allclose(b.get_tensor(name), exp[f"after_{last}/{name}"], atol=1e-5)
        assert b.get_tensor("output_weights/adam_v").shape == b.get_tensor("output_weights").shape
        kernel = "bert/encoder/layer_1/intermediate/dense/kernel"
        assert b.get_tensor(kernel + "/adam_m").shape == b.get_tensor(kernel).shape == (32, 37)


def test_slots_that_do_not_fit_the_weights_are_refused(tmp_path):
    from bertconvert.convert.optimizer_state import read_optimizer_file, save_optimizer_arrays

    bertconvert.convert_checkpoint(checkpoint(), tmp_path / "m", optimizer_state=True, progress=False)
    slots, step = read_optimizer_file(tmp_path / "m" / OPTIMIZER_NAME)
    m, v = slots["classifier.weight"]
    slots["classifier.weight"] = (m[:2], v[:2])
    save_optimizer_arrays(str(tmp_path / "m" / OPTIMIZER_NAME), slots, step)
    with pytest.raises(SlotShapeError, match="classifier.weight"):
        export_model_dir(tmp_path / "m", str(tmp_path / "tf" / "model.ckpt"), progress=False)
    assert not (tmp_path / "tf" / "model.ckpt.index").exists()
