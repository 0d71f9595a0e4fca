"""resume_from_tf continues Google's run: losses and weights equal TensorFlow's continuation
(fixtures/resume, made with bert-tensorflow's create_optimizer) within 1e-5 in float32."""
import numpy as np
import pytest

import bertconvert
from bertconvert.errors import ScheduleError

from .resume_fixture import (REF, RESOURCE, checkpoint, continue_run, expected, resume_kwargs,
                             run_of)

TOL = 1e-5


def _continuation(fixture=REF, **over):
    run, exp = run_of(fixture), expected(fixture)
    model, optimizer, scheduler = bertconvert.resume_from_tf(checkpoint(fixture),
                                                             **resume_kwargs(fixture, **over))
    steps = range(run["K"], run["K"] + run["M"])
    return exp, steps, continue_run(model, optimizer, scheduler, exp, steps)


def test_the_fixture_was_trained_past_warmup_with_the_schedule_read_after_the_increment():
    run = run_of()
    assert run["lr_read_at"] == "global_step + 1" and run["variables"] == "ref (TF1)"
    assert run["K"] < run["num_warmup_steps"] < run["K"] + run["M"] <= run["num_train_steps"]
    assert run_of(RESOURCE)["lr_read_at"] == "global_step"


def test_continuing_from_the_checkpoint_matches_tensorflow():
    exp, steps, results = _continuation()
    for i, (loss, lr, weights) in zip(steps, results):
        assert abs(loss - float(exp[f"loss_{i}"])) <= TOL
        assert lr == pytest.approx(float(exp[f"lr_{i}"]), rel=1e-6)
        assert weights <= TOL, f"step {i}: weights {weights:.3g} off TensorFlow's"


def test_reading_the_schedule_before_the_increment_would_not():
    # Pins why the scheduler is positioned at global_step + 1 for TF1 variables: the first
    # continued update sits on the warmup/decay boundary.
    exp, steps, results = _continuation(read_offset=0)
    assert results[0][1] == pytest.approx(float(exp["lr_3"]) * 1.25, rel=1e-6)
    assert max(w for _, _, w in results) > 1e-4


def test_a_resource_variable_run_resumes_with_read_offset_0():
    exp, steps, results = _continuation(RESOURCE, read_offset=0)
    for i, (loss, lr, weights) in zip(steps, results):
        assert abs(loss - float(exp[f"loss_{i}"])) <= TOL
        assert weights <= TOL


def test_the_clipping_norm_counts_looked_up_rows_as_tf_gather_does():
    # The fixture's gradients are clipped (global norm > 1) and ids repeat in its batches, so
    # counting the word-embedding gradient densely (a TPU's one-hot lookup) drifts.
    _, _, results = _continuation(use_one_hot_embeddings=True)
    assert max(w for _, _, w in results) > 1e-6


def test_the_optimizer_holds_the_checkpoints_slots_in_pytorch_layout():
    from bertconvert.checkpoint import load_checkpoint

    model, optimizer, scheduler = bertconvert.resume_from_tf(checkpoint(), **resume_kwargs())
    params = dict(model.named_parameters())
    with load_checkpoint(checkpoint()) as reader:
        kernel_m = reader.get_tensor("bert/encoder/layer_1/attention/self/query/kernel/adam_m")
        step = int(reader.get_tensor("global_step"))
    state = optimizer.state[params["bert.encoder.layer.1.attention.self.query.weight"]]
    np.testing.assert_array_equal(state["adam_m"].numpy(), kernel_m.T)
    assert optimizer.global_step == step == scheduler.last_epoch == run_of()["K"]
    assert model.training


@pytest.mark.parametrize("steps, warmup, match", [
    (3, 0, "past the end"),          # the checkpoint is at step 3
    (2, 1, "past the end"),
    (10, 11, "beyond num_train_steps"),
    (0, 0, "at least 1"),
    (10, -1, "non-negative"),
])
def test_a_schedule_that_does_not_fit_the_step_is_a_named_error(steps, warmup, match):
    with pytest.raises(ScheduleError, match=match):
        bertconvert.resume_from_tf(checkpoint(), **resume_kwargs(num_train_steps=steps,
                                                                 num_warmup_steps=warmup))


def test_the_gelu_form_is_chosen_as_convert_chooses_it():
    # The fixture computes the exact (erf) GELU, convert's default for TF1 names (its small
    # activations cannot tell the forms apart); a run made with bert-tensorflow 1.0.4's own
    # modeling.py (tanh form) resumes with gelu="tanh".
    for gelu, hidden_act in ((None, "gelu"), ("tanh", "gelu_new")):
        model, _, _ = bertconvert.resume_from_tf(checkpoint(), gelu=gelu, **resume_kwargs())
        assert model.config.hidden_act == hidden_act
