"""The declarative rule table: every rule, every skip pattern, every transform, head detection."""
import os
import re

import numpy as np
import pytest

from bertconvert import layout
from bertconvert.convert import rules as mapping
from bertconvert.errors import cli_spelling
from bertconvert.convert.rules import (RULES, TF1_RULES, TF2_RULES, TF2_SUFFIX,
                                 detect_head, invert_transform, resolve, reverse_rule,
                                 skip_reason, strip_tf2_suffix, transformed_shape,
                                 unknown_name_hint)
from . import google_names

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


# --- transforms: the converter's output against the test's own table ------------------------
def _shape_for(bare):
    """A shape for a variable of this name (kernels rectangular, so orientation shows)."""
    if re.search(r"_attention_layer/_(query|key|value)_dense/kernel$", bare):
        return (6, 2, 3)                      # EinsumDense [hidden, heads, head_dim]
    if re.search(r"_attention_layer/_(query|key|value)_dense/bias$", bare):
        return (2, 3)
    if bare.endswith("_attention_layer/_output_dense/kernel"):
        return (2, 3, 6)                      # [heads, head_dim, hidden]
    if bare.endswith(("kernel", "embeddings", "output_weights", "embedding_table")):
        return (5, 6)
    return (6,)


def _converted_by_the_copier(tmp_path, arrays):
    """{name: (key, array)} as the converter's rule table and TensorCopier produce them."""
    from bertconvert.checkpoint import load_checkpoint, save_checkpoint
    from bertconvert.convert.plan import PlannedTensor
    from bertconvert.convert.tensors import TensorCopier

    prefix = str(tmp_path / "bert_model.ckpt")
    save_checkpoint(prefix, arrays)
    reader = load_checkpoint(prefix)
    out = {}
    with TensorCopier(reader, "float32") as copier:
        for name in arrays:
            res = resolve(name, trunk="bert.")
            shape = tuple(reader.entry(name).shape)
            t = PlannedTensor(name, res.key, res.rule, shape,
                              transformed_shape(res.rule.transform, shape), reader.entry(name).dtype.name)
            out[name] = (res.key, copier.array(t, fresh=True))
    return out


def test_every_rule_converts_as_the_tests_table_says(tmp_path):
    """Each rule's example name, converted by the rule table + TensorCopier, lands under the key
    and in the layout the test's table of Google's names gives (bit for bit)."""
    rng = np.random.default_rng(7)
    arrays = {}
    for rule in RULES:
        name = tf_name(rule)
        if google_names.expected_entry(name, np.zeros(1), "pretraining") is None:
            assert rule.flavour == "tf2", f"the test's table lacks the TF1 name {name}"
            continue  # TF2 heads other than the pretraining fixture's: covered by test_model_garden
        arrays[name] = rng.standard_normal(_shape_for(strip_tf2_suffix(name))).astype(np.float32)
    assert len(arrays) > len(TF1_RULES)
    for name, (key, got) in _converted_by_the_copier(tmp_path, arrays).items():
        want_key, want = google_names.expected_entry(name, arrays[name], "pretraining")
        assert key == want_key, name
        assert got.shape == want.shape and got.tobytes() == want.tobytes(), name


def test_converted_dense_kernels_compute_the_dense_layer(tmp_path):
    """x @ W.T with the converter's W is TF's x @ kernel (square and rectangular kernels)."""
    rng = np.random.default_rng(0)
    arrays = {"bert/encoder/layer_0/attention/output/dense/kernel": rng.standard_normal((6, 6)),
              "bert/encoder/layer_0/intermediate/dense/kernel": rng.standard_normal((6, 9)),
              "bert/pooler/dense/kernel": rng.standard_normal((6, 6))}
    arrays = {k: v.astype(np.float32) for k, v in arrays.items()}
    x = rng.standard_normal((3, 6)).astype(np.float32)
    for name, (_, weight) in _converted_by_the_copier(tmp_path, arrays).items():
        np.testing.assert_allclose(x @ weight.T, x @ arrays[name], rtol=1e-5, atol=1e-5, err_msg=name)
        np.testing.assert_array_equal(invert_transform("transpose", weight), arrays[name])


def test_converted_einsum_kernels_compute_model_gardens_projections(tmp_path):
    """TF2's EinsumDense attention kernels, converted, compute the same projections."""
    rng = np.random.default_rng(1)
    hidden, heads, hd = 6, 2, 3
    blk = "encoder/_transformer_layers/0/_attention_layer/"
    names = {"qk": blk + "_query_dense/kernel" + TF2_SUFFIX, "qb": blk + "_query_dense/bias" + TF2_SUFFIX,
             "ok": blk + "_output_dense/kernel" + TF2_SUFFIX}
    arrays = {names["qk"]: rng.standard_normal((hidden, heads, hd)).astype(np.float32),
              names["qb"]: rng.standard_normal((heads, hd)).astype(np.float32),
              names["ok"]: rng.standard_normal((heads, hd, hidden)).astype(np.float32)}
    got = {name: a for name, (_, a) in _converted_by_the_copier(tmp_path, arrays).items()}
    x = rng.standard_normal((2, hidden))
    tf_q = np.einsum("bi,ihd->bhd", x, arrays[names["qk"]]) + arrays[names["qb"]]
    # PyTorch splits heads as view(batch, heads, head_dim): same order as TF's [heads, hd].
    ours_q = (x @ got[names["qk"]].T + got[names["qb"]]).reshape(2, heads, hd)
    np.testing.assert_allclose(ours_q, tf_q, rtol=1e-5, atol=1e-5)
    ctx = rng.standard_normal((2, heads, hd))
    tf_o = np.einsum("bhd,hdo->bo", ctx, arrays[names["ok"]])
    np.testing.assert_allclose(ctx.reshape(2, -1) @ got[names["ok"]].T, tf_o, rtol=1e-5, atol=1e-5)


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
