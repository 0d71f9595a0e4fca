"""A converted model computes what Google's modeling.py computes on the checkpoint's raw arrays.

The reference (tests/convert/google_names.py) is Google's forward pass in float64 numpy over the
variables under their TF1 names, as TensorFlow wrote them (fixtures/variables/*.npz): no rule
table, no PyTorch key, no transform of the converter is involved. A transform dropped or wrong
anywhere (even on a square kernel, where the shapes cannot tell) moves the outputs by O(1).
"""
import os

import numpy as np
import pytest
import torch

from bertconvert.convert.run import convert_checkpoint
from bertconvert.models.heads import HEADS
from . import google_names
from ..conftest import assert_fp32_close, fixture_checkpoint

FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, os.pardir, "fixtures")


def raw_variables(fixture):
    with np.load(os.path.join(FIXTURES, "variables", f"{fixture}.npz")) as z:
        return {k: z[k] for k in z.files}


def config_of(fixture):
    import json
    with open(os.path.join(fixture_checkpoint(fixture), "bert_config.json")) as f:
        return json.load(f)


def _batch(tiny_batch):
    # tiny_batch's ids are below 99; every fixture's vocabulary is larger
    return [tiny_batch[k] for k in ("input_ids", "token_type_ids", "attention_mask")]


@pytest.mark.parametrize("fixture,head", [("base", "base"), ("pretraining", "base"),
                                          ("sequence-classification", "sequence-classification")])
def test_converted_model_matches_googles_forward_pass(tmp_path, tiny_batch, fixture, head):
    out = tmp_path / "model"
    convert_checkpoint(fixture_checkpoint(fixture), out, head=head, progress=False)
    config = config_of(fixture)
    ids, types, mask = _batch(tiny_batch)
    weights = raw_variables(fixture)
    sequence, pooled = google_names.google_forward(weights, config, ids.numpy(), types.numpy(), mask.numpy())
    model = HEADS[head].from_pretrained(str(out))
    model.eval()
    with torch.no_grad():
        if head == "base":
            layers, ours_pooled = model(ids, types, mask)
            assert_fp32_close(layers[-1], torch.from_numpy(sequence).float())
            assert_fp32_close(ours_pooled, torch.from_numpy(pooled).float())
        else:
            logits = model(ids, types, mask)
            expected = google_names.google_classifier_logits(weights, pooled)
            assert_fp32_close(logits, torch.from_numpy(expected).float())


def test_the_reference_is_sensitive_to_one_transposed_square_kernel(tiny_batch):
    """The reference itself can fail: the attention-output kernel (square: 32 x 32) used
    untransposed changes the outputs far beyond the fp32 tolerance."""
    weights = raw_variables("base")
    config = config_of("base")
    ids, types, mask = (t.numpy() for t in _batch(tiny_batch))
    good, _ = google_names.google_forward(weights, config, ids, types, mask)
    name = "bert/encoder/layer_2/attention/output/dense/kernel"
    assert weights[name].shape[0] == weights[name].shape[1]
    weights[name] = weights[name].T
    bad, _ = google_names.google_forward(weights, config, ids, types, mask)
    assert np.abs(good - bad).max() > 1e-2
