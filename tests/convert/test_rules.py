"""The declarative rule table: every rule, every skip pattern, every transform, head detection."""
import os

import numpy as np
import pytest

from bertconvert import layout
from bertconvert.convert import rules as mapping
from bertconvert.errors import cli_spelling
from bertconvert.convert.rules import (RULES, TF1_RULES, TF2_RULES, TF2_SUFFIX,
                                 detect_head, invert_transform, resolve, reverse_rule,
                                 skip_reason, transformed_shape, unknown_name_hint)
from .layouts import to_torch_layout

FIXTURES = os.path.join(os.path.dirname(__file__), os.pardir, os.pardir, "fixtures")


def fixture_names(name):
    """Model-variable names of a fixture (from the npz written next to the checkpoints)."""
    with np.load(os.path.join(FIXTURES, "variables", f"{name}.npz")) as z:
        return list(z.files)


def tf_name(rule):
    return rule.example + (TF2_SUFFIX if rule.flavour == "tf2" else "")


@pytest.mark.parametrize("rule", RULES, ids=lambda r: f"{r.flavour}:{r.source}")
def test_each_rule_matches_its_example_and_nothing_else_does(rule):
    found = mapping.matching_rules(tf_name(rule))
    assert [r for r, _ in found] == [rule]
    res = resolve(tf_name(rule), trunk="bert.")
    assert res.rule is rule
    assert "{" not in res.key and res.key == rule.target_key(res.groups, "bert.")
    assert skip_reason(tf_name(rule)) is None


@pytest.mark.parametrize("rule", TF1_RULES, ids=lambda r: r.source)
@pytest.mark.parametrize("trunk", ["bert.", ""])
def test_tf1_rules_invert_for_export(rule, trunk):
    res = resolve(rule.example, trunk=trunk)
    back = reverse_rule(res.key)
    assert back is not None and back[0] is rule and back[1] == rule.example


def test_trunk_prefix_only_on_trunk_and_pooler():
    assert resolve("bert/pooler/dense/kernel", trunk="").key == "pooler.dense.weight"
    assert resolve("cls/predictions/output_bias", trunk="").key == "cls.predictions.bias"
    assert resolve("output_weights", trunk="bert.").key == "classifier.weight"
    assert resolve("cls/squad/output_bias").key == "qa_outputs.bias"


def test_no_two_rules_of_a_flavour_share_a_source_template():
    for table in (TF1_RULES, TF2_RULES):
        sources = [r.source for r in table]
        assert len(sources) == len(set(sources))


@pytest.mark.parametrize("fixture", ["pretraining", "question-answering", "sequence-classification",
                                     "tf2-pretraining"])
def test_every_fixture_weight_resolves_to_a_distinct_key(fixture):
    names = fixture_names(fixture)
    keys = [resolve(n).key for n in names]
    assert all(skip_reason(n) is None for n in names)
    assert len(set(keys)) == len(keys)


SLOT_NAMES = [
    "bert/encoder/layer_0/attention/self/query/kernel/adam_m",
    "bert/encoder/layer_0/attention/self/query/kernel/adam_v",
    "bert/embeddings/word_embeddings/LAMB",
    "bert/embeddings/word_embeddings/LAMB_1",
    "output_weights/AdamWeightDecayOptimizer",
    "output_weights/AdamWeightDecayOptimizer_1",
    "bert/pooler/dense/bias/Momentum",
    "bert/pooler/dense/bias/Adam_1",
    "beta1_power", "beta2_power", "global_step", "_CHECKPOINTABLE_OBJECT_GRAPH",
    "save_counter" + TF2_SUFFIX,
    "optimizer/iter" + TF2_SUFFIX,
    "encoder/_pooler_layer/kernel/.OPTIMIZER_SLOT/optimizer/m" + TF2_SUFFIX,
]


@pytest.mark.parametrize("name", SLOT_NAMES)
def test_optimizer_and_bookkeeping_names_are_skipped(name):
    assert skip_reason(name)
    # A skipped name must never also look like a weight to the rule table's users.
    assert detect_head([name]) == ("base", "")


def test_slot_fixtures_only_add_skipped_names():
    import json
    for fixture in ("pretraining-adam", "pretraining-lamb"):
        weights = set(fixture_names(fixture))
        assert weights == set(fixture_names("pretraining"))
    # The LAMB slot names are the ones ppb 0.6.2's pointer walk wrote into real weights.
    assert skip_reason("bert/encoder/layer_4/output/dense/kernel/LAMB_1")
    assert json.load(open(os.path.join(FIXTURES, "checkpoints", "pretraining-lamb", "bert_config.json")))


# --- transforms --------------------------------------------------------------------------
def test_transpose_matches_dense_math():
    rng = np.random.default_rng(0)
    x, kernel = rng.standard_normal((3, 5)), rng.standard_normal((5, 7))
    weight = to_torch_layout("transpose", kernel)  # torch Linear: y = x @ W.T
    assert weight.shape == (7, 5) and weight.flags.c_contiguous
    np.testing.assert_array_equal(x @ weight.T, x @ kernel)
    np.testing.assert_array_equal(invert_transform("transpose", weight), kernel)


def test_reshape_transforms_match_einsum_dense_math():
    """TF2's EinsumDense attention kernels, flattened, must compute the same projections."""
    rng = np.random.default_rng(1)
    hidden, heads, hd = 12, 3, 4
    x = rng.standard_normal((2, hidden))
    q_kernel, q_bias = rng.standard_normal((hidden, heads, hd)), rng.standard_normal((heads, hd))
    tf_q = np.einsum("bi,ihd->bhd", x, q_kernel) + q_bias
    w, b = to_torch_layout("reshape_out+transpose", q_kernel), to_torch_layout("reshape", q_bias)
    # PyTorch splits heads as view(batch, heads, head_dim): same order as TF's [heads, hd].
    np.testing.assert_allclose((x @ w.T + b).reshape(2, heads, hd), tf_q, rtol=1e-12)

    ctx = rng.standard_normal((2, heads, hd))
    o_kernel = rng.standard_normal((heads, hd, hidden))
    tf_o = np.einsum("bhd,hdo->bo", ctx, o_kernel)
    w = to_torch_layout("reshape_in+transpose", o_kernel)
    np.testing.assert_allclose(ctx.reshape(2, -1) @ w.T, tf_o, rtol=1e-12)


@pytest.mark.parametrize("transform,shape,expected", [
    ("none", (3, 4), (3, 4)), ("transpose", (3, 4), (4, 3)), ("reshape", (4, 8), (32,)),
    ("reshape_out+transpose", (32, 4, 8), (32, 32)), ("reshape_in+transpose", (4, 8, 16), (16, 32)),
    ("transpose", (3,), None), ("reshape", (3,), None),
])
def test_transformed_shape(transform, shape, expected):
    assert transformed_shape(transform, shape) == expected


def test_unknown_transform_is_rejected():
    with pytest.raises(ValueError):
        transformed_shape("rot90", (2, 2))
    with pytest.raises(ValueError):
        mapping.Rule("a", "b", "rot90", "encoder", "tf1")


# --- head detection ----------------------------------------------------------------------
@pytest.mark.parametrize("fixture,head", [
    ("base", "base"), ("pretraining", "pretraining"), ("masked-lm", "masked-lm"),
    ("next-sentence", "next-sentence"), ("question-answering", "question-answering"),
    ("sequence-classification", "sequence-classification"),
    ("token-classification", "sequence-classification"),
    ("multiple-choice", "sequence-classification"),
    ("pretraining-adam", "pretraining"), ("tf2-pretraining", "pretraining"),
])
def test_detect_head_on_fixtures(fixture, head):
    detected, note = detect_head(fixture_names(fixture))
    assert detected == head
    if fixture in layout.CLASSIFIER_HEADS:
        assert "token-classification" in note and "multiple-choice" in note
    else:
        assert note == ""


def test_detect_head_fine_tuned_head_wins_and_says_what_is_dropped():
    names = fixture_names("pretraining") + ["output_weights", "output_bias"]
    head, note = detect_head(names)
    assert head == "sequence-classification" and "predictions" in note and "dropped" in note


def test_detect_head_refuses_two_fine_tuned_heads():
    head, note = detect_head(["output_weights", "cls/squad/output_weights"])
    assert head is None and "head='question-answering'" in note and "--head" not in note
    with cli_spelling():  # what the command line says instead
        _, note = detect_head(["output_weights", "cls/squad/output_weights"])
    assert "--head question-answering" in note


@pytest.mark.parametrize("head", mapping.HEAD_NAMES)
def test_every_model_parameter_has_exactly_one_tf1_name(head, tiny_config):
    """Both directions: each key of each head model maps to a TF1 name that maps back to it."""
    from bertconvert.models.heads import target_model

    model = target_model(head, tiny_config, 3 if head in layout.CLASSIFIER_HEADS else None)
    tied = model.tied_weight_keys()
    trunk = mapping.trunk_prefix(head)
    names = []
    for key in model.state_dict():
        if key in tied:
            continue
        rule, name = reverse_rule(key)
        assert resolve(name, trunk=trunk).key == key
        assert rule.flavour == "tf1"
        names.append(name)
    assert len(set(names)) == len(names)
    assert detect_head(names)[0] == (head if head not in layout.CLASSIFIER_HEADS else "sequence-classification")


# --- hints -------------------------------------------------------------------------------
@pytest.mark.parametrize("name,hint", [
    ("bert/encoder/layer_0/attention/self/layer_normalization_3/gamma", "unknown scope 'layer_normalization_3'"),
    ("bert/embeddings/embedding_hidden_mapping_in/kernel", "factorized"),
    ("encoder/_transformer_layers/0/_ffn/kernel" + TF2_SUFFIX, "unknown scope '_ffn'"),
    ("bert/encoder/layer_0/output/kernel", "no rule"),
])
def test_unknown_name_hints(name, hint):
    assert resolve(name) is None and skip_reason(name) is None
    assert hint in unknown_name_hint(name)
