"""The TensorFlow reference against Model Garden itself, and verify end to end on its files.

Part 1 checks the *independent* reference (:mod:`bertconvert.verify.tf_side`) against the
producer: for every case in ``fixtures/model_garden`` (checkpoints and SavedModels written
by TensorFlow Model Garden 2.20, see its README), the reference's forward pass on the
case's inputs equals the outputs Model Garden computed -- every layer, the sequence
output, the pooled output of the pooler the head uses, the head's logits. Model Garden's
``"gelu"`` is the tanh approximation; the exact form misses by ~3e-5, so 1e-5 tells them
apart (faithful float32 differences here are ~1e-6).

Part 2 runs ``convert`` then ``verify`` (and ``verify`` converting in memory) on every case.
"""
import json
import os

import numpy as np
import pytest

from bertconvert import layout
from bertconvert.errors import VerificationError

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MODEL_GARDEN = os.path.join(ROOT, "fixtures", "model_garden")
# Every case directory is committed with its case.json: a missing one fails, never drops the case.
CASES = sorted(d for d in os.listdir(MODEL_GARDEN) if os.path.isdir(os.path.join(MODEL_GARDEN, d)))
#: Model Garden's output arrays -> the reference's head stage names.
HEAD_OUTPUTS = {"mlm_logits": "mlm logits", "nsp_logits": "nsp logits",
                "classification_logits": "logits", "tagging_logits": "logits",
                "start_logits": "start logits", "end_logits": "end logits"}
#: float32 round-off between two implementations of the same network is ~1e-6 here.
ATOL = 1e-5

pytestmark = pytest.mark.tf


def case_meta(case):
    with open(os.path.join(MODEL_GARDEN, case, "case.json"), encoding="utf-8") as f:
        return json.load(f)


def source(case):
    """What a user passes: the case directory, or its SavedModel directory."""
    saved_model = os.path.join(MODEL_GARDEN, case, "saved_model")
    return saved_model if os.path.isdir(saved_model) else os.path.join(MODEL_GARDEN, case)


def outputs(case):
    with np.load(os.path.join(MODEL_GARDEN, case, "outputs.npz")) as f:
        return dict(f)


def run_reference(tf, case, head=None, gelu=None):
    from bertconvert.verify.tf_side import TFReference
    o = outputs(case)
    ref = TFReference(source(case), gelu=gelu)
    return ref, ref.forward(o["input_word_ids"], o["input_type_ids"], o["input_mask"], head=head)


def max_errors(case, out, base):
    """{Model Garden output: max abs error of the reference} for one case."""
    o = outputs(case)
    layers = sum(1 for name in base if name.startswith("layer ") and name[6:].isdigit())
    errors = {"sequence_output": np.abs(out[f"layer {layers - 1}"] - o["sequence_output"]).max()}
    if "encoder_outputs" in o:
        assert o["encoder_outputs"].shape[0] == layers
        for i in range(layers):
            errors[f"encoder_outputs[{i}]"] = np.abs(out[f"layer {i}"] - o["encoder_outputs"][i]).max()
    if "embedding_output" in o:
        errors["embedding_output"] = np.abs(out["embeddings"] - o["embedding_output"]).max()
    # pooled_output is the *encoder's* pooler: the head-less pass computes that one.
    errors["pooled_output"] = np.abs(base["pooled"] - o["pooled_output"]).max()
    for name, stage in HEAD_OUTPUTS.items():
        if name in o:
            assert stage in out, f"the reference produced no {stage!r} for {case}"
            errors[name] = np.abs(out[stage] - o[name]).max()
    return errors


# --- part 1: the independent reference against Model Garden's own outputs -----------------------
@pytest.mark.parametrize("case", CASES)
def test_reference_equals_model_garden(tf, case):
    meta = case_meta(case)
    ref, out = run_reference(tf, case)  # head detected from the checkpoint's structure
    assert ref.layout == "tf2" and ref.gelu == "tanh"
    assert ref.detect_head() == meta["head"]
    assert ref.saved_model == os.path.isdir(os.path.join(MODEL_GARDEN, case, "saved_model"))
    _, base = run_reference(tf, case, head=layout.BASE)
    errors = max_errors(case, out, base)
    assert len(errors) >= 2
    assert max(errors.values()) <= ATOL, errors
    # The pooled stage is the pooler the head classifies: the head's own where it has one.
    if meta.get("head_has_own_pooler"):
        assert np.abs(out["pooled"] - outputs(case)["pooled_output"]).max() > 0.1
    else:
        np.testing.assert_allclose(out["pooled"], base["pooled"], rtol=0, atol=0)
    # The configuration was read off the tensors (no config file beside most cases).
    enc = meta["encoder"]
    assert (ref.config["hidden_size"], ref.config["num_hidden_layers"],
            ref.config["num_attention_heads"]) == (enc["hidden_size"], enc["num_layers"],
                                                   enc["num_attention_heads"])


@pytest.mark.parametrize("case", ["encoder_v1", "classifier_own_pooler", "pretrainer_mlm_nsp"])
def test_exact_gelu_is_not_what_model_garden_computed(tf, case):
    # The tolerance above can tell the GELU forms apart: the exact form misses by ~3e-5.
    ref, out = run_reference(tf, case, gelu="exact")
    assert ref.gelu == "exact"
    _, base = run_reference(tf, case, head=layout.BASE, gelu="exact")
    assert np.abs(out["layer 1"] - outputs(case)["sequence_output"]).max() > 2 * ATOL


def test_every_head_the_structure_does_not_hold_is_refused(tf):
    from bertconvert.verify.tf_side import TFReference
    ref = TFReference(source("token_classifier"))
    assert ref.head_problem(layout.TOKEN_CLASSIFICATION) is None
    for head in (layout.SEQUENCE_CLASSIFICATION, layout.PRETRAINING, layout.MASKED_LM,
                 layout.NEXT_SENTENCE, layout.QUESTION_ANSWERING):
        assert "carries no" in ref.head_problem(head)
    o = outputs("token_classifier")
    out = ref.forward(o["input_word_ids"], o["input_type_ids"], o["input_mask"],
                      head=layout.SEQUENCE_CLASSIFICATION)
    assert "logits" not in out  # left out, never made up
    own = TFReference(source("classifier_own_pooler"))
    assert own.pooler_of(layout.SEQUENCE_CLASSIFICATION) == ("classifier_pooler_kernel",
                                                            "classifier_pooler_bias")
    assert own.pooler_of(layout.BASE) == ("pooler_kernel", "pooler_bias")


def test_config_that_contradicts_the_tensors_is_refused(tf, tmp_path):
    from bertconvert.verify.tf_side import TFReference
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"hidden_size": 32, "num_hidden_layers": 2,
                                  "num_attention_heads": 8, "vocab_size": 99}))
    with pytest.raises(VerificationError, match="num_attention_heads=8"):
        TFReference(source("encoder_v2"), config_file=str(config))


def test_bad_gelu_is_an_input_error(tf):
    from bertconvert.verify.tf_side import TFReference
    with pytest.raises(VerificationError, match="exact, tanh") as info:
        TFReference(source("encoder_v1"), gelu="erf")
    assert info.value.exit_code == 2


# --- part 2: convert + verify end to end ----------------------------------------------------------
@pytest.mark.parametrize("case", CASES)
def test_convert_then_verify(tf, tmp_path, case):
    from bertconvert.convert import convert_checkpoint
    from bertconvert.verify import verify
    meta = case_meta(case)
    out = str(tmp_path / "model")
    convert_checkpoint(source(case), out, progress=False)
    # By default verify follows the model directory's config.json; Model Garden meant the
    # tanh GELU, so check that explicitly too: a converter that wrote "gelu" (exact) would
    # pass the default run against an exact reference but fail this one.
    for gelu in (None, "tanh"):
        report = verify(source(case), out, gelu=gelu, progress=False)
        assert report.passed, report.format_table()
        assert report.head == meta["head"] and report.gelu == "tanh"
        assert report.weights is not None and report.weights.passed


@pytest.mark.parametrize("case", CASES)
def test_verify_converting_in_memory(tf, case):
    from bertconvert.verify import verify
    meta = case_meta(case)
    report = verify(source(case), None, progress=False)
    assert report.passed, report.format_table()
    assert report.head == meta["head"] and report.gelu == "tanh"
    assert report.model_dir is None
