"""resume_from_tf on checkpoints that cannot be continued: named errors that say what was found."""
import os

import numpy as np
import pytest

import bertconvert
from bertconvert.checkpoint import load_checkpoint
from bertconvert.checkpoint.writer import save_checkpoint
from bertconvert.errors import (MappingError, SlotShapeError, SlotsMissingError,
                                UnsupportedOptimizerError)

from ..conftest import fixture_checkpoint
from .resume_fixture import checkpoint, copy_fixture, resume_kwargs


def _rewritten(tmp_path, change):
    """The fixture checkpoint rewritten with ``change(tensors)`` applied."""
    directory = copy_fixture(tmp_path)
    with load_checkpoint(checkpoint()) as reader:
        tensors = {n: reader.get_tensor(n) for n in reader.get_variable_to_shape_map()}
    change(tensors)
    prefix = os.path.join(directory, "edited.ckpt")
    save_checkpoint(prefix, tensors)
    return prefix


def test_lamb_slots_are_refused_by_name():
    with pytest.raises(UnsupportedOptimizerError, match=r"LAMB slots .*LAMB_1.*AdamWeightDecay"):
        bertconvert.resume_from_tf(os.path.join(fixture_checkpoint("pretraining-lamb"), "bert_model.ckpt"),
                                   head="pretraining", learning_rate=1e-4, num_train_steps=10**9)


def test_a_checkpoint_without_slots_is_refused(tmp_path):
    def strip(tensors):
        for name in [n for n in tensors if n.endswith(("/adam_m", "/adam_v"))]:
            del tensors[name]
    with pytest.raises(UnsupportedOptimizerError, match="no optimizer slots"):
        bertconvert.resume_from_tf(_rewritten(tmp_path, strip), **resume_kwargs())


def test_keras_slots_are_refused_by_name():
    # Model Garden's tf.train.Checkpoint with a Keras optimizer (fixtures/make_fixtures.py)
    with pytest.raises(UnsupportedOptimizerError, match=r"Keras/TF2 optimizer slots.*OPTIMIZER_SLOT"):
        bertconvert.resume_from_tf(os.path.join(fixture_checkpoint("tf2-pretraining"), "bert_model.ckpt"),
                                   head="pretraining", learning_rate=1e-4, num_train_steps=10**9)


def test_a_slot_shaped_unlike_its_variable_is_named(tmp_path):
    def reshape(tensors):
        name = "bert/encoder/layer_0/intermediate/dense/kernel/adam_v"
        tensors[name] = np.zeros(tensors[name].shape[::-1], np.float32)
    with pytest.raises(SlotShapeError, match=r"intermediate/dense/kernel/adam_v float32 \[37, 32\]"):
        bertconvert.resume_from_tf(_rewritten(tmp_path, reshape), **resume_kwargs())


def test_a_head_the_slots_do_not_cover_is_named(tmp_path):
    def strip_head(tensors):
        for slot in ("adam_m", "adam_v"):
            del tensors[f"output_weights/{slot}"], tensors[f"output_bias/{slot}"]
    with pytest.raises(SlotsMissingError, match=r"classifier\.weight \(output_weights/adam_m\)"):
        bertconvert.resume_from_tf(_rewritten(tmp_path, strip_head), **resume_kwargs())


def test_a_head_the_checkpoint_does_not_have_is_refused():
    with pytest.raises(MappingError):
        bertconvert.resume_from_tf(checkpoint(), **resume_kwargs(head="question-answering",
                                                                 num_labels=None))


def test_a_model_directory_converted_without_the_slots_is_refused(tmp_path):
    out = tmp_path / "model"
    bertconvert.convert_checkpoint(checkpoint(), out, progress=False)
    with pytest.raises(UnsupportedOptimizerError, match="--optimizer-state"):
        bertconvert.resume_from_tf(str(out), **resume_kwargs())


def test_a_model_directorys_slots_shaped_unlike_the_model_are_named(tmp_path):
    from bertconvert.convert.optimizer_state import read_optimizer_file, save_optimizer_arrays
    from bertconvert.layout import OPTIMIZER_NAME

    out = tmp_path / "model"
    bertconvert.convert_checkpoint(checkpoint(), out, optimizer_state=True, progress=False)
    slots, step = read_optimizer_file(out / OPTIMIZER_NAME)
    m, v = slots["classifier.weight"]
    slots["classifier.weight"] = (m[:2], v[:2])
    save_optimizer_arrays(str(out / OPTIMIZER_NAME), slots, step)
    with pytest.raises(SlotShapeError, match=r"classifier\.weight: slots \[2, 32\], parameter \[3, 32\]"):
        bertconvert.resume_from_tf(str(out), **resume_kwargs())


def test_a_model_directory_whose_slots_miss_the_head_is_named(tmp_path):
    from bertconvert.convert.optimizer_state import read_optimizer_file, save_optimizer_arrays
    from bertconvert.layout import OPTIMIZER_NAME

    out = tmp_path / "model"
    bertconvert.convert_checkpoint(checkpoint(), out, optimizer_state=True, progress=False)
    slots, step = read_optimizer_file(out / OPTIMIZER_NAME)
    del slots["classifier.weight"], slots["classifier.bias"]
    save_optimizer_arrays(str(out / OPTIMIZER_NAME), slots, step)
    with pytest.raises(SlotsMissingError, match=r"classifier\.bias, classifier\.weight"):
        bertconvert.resume_from_tf(str(out), **resume_kwargs())
