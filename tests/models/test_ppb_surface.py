"""pytorch-pretrained-bert 0.6.2's ``modeling`` surface at 0.6.2's paths.

The facts 0.6.2's own tests/modeling_test.py checks -- a config of any numbers, its JSON round
trip, the output shapes of every head on Google's odd tiny config -- reproduced with our own
tests, and our classes compared with 0.6.2's own (installed for the tests only) holding the
same weights.
"""
import json

import pytest
import torch

import bertconvert
from bertconvert import modeling
from bertconvert.errors import AttentionHeadsError, ConfigError

from ..conftest import assert_fp32_close

ppb = pytest.importorskip("pytorch_pretrained_bert.modeling",
                          reason="pytorch-pretrained-bert 0.6.2 is the reference")

#: 0.6.2's modeling_test.py config: batch 13, seq 7, nothing divides evenly
BATCH, SEQ, VOCAB, HIDDEN, LAYERS, HEADS, INTERMEDIATE, TYPES, LABELS = 13, 7, 99, 32, 5, 4, 37, 16, 3
CONFIG_ARGS = dict(vocab_size_or_config_json_file=VOCAB, hidden_size=HIDDEN,
                   num_hidden_layers=LAYERS, num_attention_heads=HEADS,
                   intermediate_size=INTERMEDIATE, hidden_act="gelu", hidden_dropout_prob=0.1,
                   attention_probs_dropout_prob=0.1, max_position_embeddings=512,
                   type_vocab_size=TYPES, initializer_range=0.02)


def public_names(module):
    """The names 0.6.2's module offers ported code: its own classes and functions, what it
    imports from its own package, and its constants (imported modules, torch's classes and
    ``from __future__`` features left out)."""
    return sorted(n for n, v in vars(module).items() if not n.startswith("_") and (
        n.isupper() or (getattr(v, "__module__", None) or "").startswith("pytorch_pretrained_bert")))


def test_every_public_name_of_0_6_2_modeling_is_importable_from_bertconvert_modeling():
    names = public_names(ppb)
    assert {"BertConfig", "BertLayerNorm", "load_tf_weights_in_bert", "WEIGHTS_NAME"} <= set(names)
    missing = [n for n in names if not hasattr(modeling, n)]
    assert not missing
    namespace = {}
    exec(f"from bertconvert.modeling import {', '.join(names)}", namespace)  # the import form


def test_0_6_2_top_level_names_of_modeling_and_file_utils():
    import pytorch_pretrained_bert as top

    ours = ("BertConfig", "BertModel", "BertForPreTraining", "BertForMaskedLM",
            "BertForNextSentencePrediction", "BertForSequenceClassification",
            "BertForMultipleChoice", "BertForTokenClassification", "BertForQuestionAnswering",
            "load_tf_weights_in_bert", "PYTORCH_PRETRAINED_BERT_CACHE", "cached_path",
            "WEIGHTS_NAME", "CONFIG_NAME")
    assert all(hasattr(top, n) for n in ours)  # the list is 0.6.2's
    for name in ours:
        home = modeling if hasattr(ppb, name) else bertconvert.file_utils
        assert getattr(bertconvert, name) is getattr(home, name), name


def test_constants_are_0_6_2s():
    for name in ("WEIGHTS_NAME", "CONFIG_NAME", "BERT_CONFIG_NAME", "TF_WEIGHTS_NAME",
                 "PRETRAINED_MODEL_ARCHIVE_MAP"):
        assert getattr(modeling, name) == getattr(ppb, name), name
    assert set(ppb.ACT2FN) <= set(modeling.ACT2FN)
    x = torch.linspace(-6, 6, 101)
    for name, theirs in ppb.ACT2FN.items():
        assert_fp32_close(modeling.ACT2FN[name](x), theirs(x))
    assert_fp32_close(modeling.gelu(x), ppb.gelu(x))
    assert_fp32_close(modeling.swish(x), ppb.swish(x))


# --- BertConfig -----------------------------------------------------------------------------
def test_config_takes_any_numbers_and_the_attention_layer_refuses_them():
    config = modeling.BertConfig(vocab_size_or_config_json_file=99, hidden_size=37)
    assert (config.vocab_size, config.hidden_size, config.num_attention_heads) == (99, 37, 12)
    obj = json.loads(config.to_json_string())
    assert obj["vocab_size"] == 99 and obj["hidden_size"] == 37
    with pytest.raises(ValueError) as theirs:
        ppb.BertSelfAttention(ppb.BertConfig(99, hidden_size=37))
    with pytest.raises(AttentionHeadsError) as ours:
        modeling.BertSelfAttention(config)
    assert isinstance(ours.value, ValueError) and isinstance(ours.value, ConfigError)
    assert str(ours.value) == str(theirs.value)
    with pytest.raises(ValueError, match=r"hidden size \(37\)"):
        modeling.BertModel(config)
    for bad in ({"num_attention_heads": 0}, {"hidden_size": "32"}):  # named, not ZeroDivision
        with pytest.raises(ConfigError, match=f"{next(iter(bad))} must be a positive integer"):
            modeling.BertSelfAttention(modeling.BertConfig(99, **bad))


def test_config_json_file_round_trips_to_dict_exactly(tmp_path):
    first = modeling.BertConfig(vocab_size_or_config_json_file=99, hidden_size=37)
    path = tmp_path / "config.json"
    first.to_json_file(str(path))
    second = modeling.BertConfig.from_json_file(str(path))
    assert second.to_dict() == first.to_dict()
    written = json.loads(path.read_text())
    assert written == first.to_dict()  # transformers' bookkeeping is not added
    assert "model_type" not in written and "pad_token_id" not in written
    # what 0.6.2 writes for the same arguments, and reads back from our file
    theirs = ppb.BertConfig(vocab_size_or_config_json_file=99, hidden_size=37).to_dict()
    assert theirs.items() <= first.to_dict().items()
    assert theirs.items() <= ppb.BertConfig.from_json_file(str(path)).to_dict().items()
    assert modeling.BertConfig(str(path)).to_dict() == first.to_dict()  # 0.6.2's path form


def test_to_json_string_is_sorted_json_like_0_6_2s():
    ours = modeling.BertConfig(**CONFIG_ARGS)
    theirs = ppb.BertConfig(**CONFIG_ARGS)
    ours_data = json.loads(ours.to_json_string())
    assert theirs.to_dict().items() <= ours_data.items()
    assert list(ours_data) == sorted(ours_data) and ours.to_json_string().endswith("}\n")


# --- the heads: shapes, and outputs equal to 0.6.2's with the same weights ------------------
def _inputs(seed=0):
    gen = torch.Generator().manual_seed(seed)
    return {
        "input_ids": torch.randint(0, VOCAB, (BATCH, SEQ), generator=gen),
        "token_type_ids": torch.randint(0, TYPES, (BATCH, SEQ), generator=gen),
        "input_mask": torch.randint(0, 2, (BATCH, SEQ), generator=gen),
        "sequence_labels": torch.randint(0, 2, (BATCH,), generator=gen),
        "token_labels": torch.randint(0, LABELS, (BATCH, SEQ), generator=gen),
    }


#: class name -> (constructor keywords, positional labels of the loss call, output shapes)
HEAD_CASES = {
    "BertForMaskedLM": ({}, ("token_labels",), [(BATCH, SEQ, VOCAB)]),
    "BertForNextSentencePrediction": ({}, ("sequence_labels",), [(BATCH, 2)]),
    "BertForPreTraining": ({}, ("token_labels", "sequence_labels"),
                           [(BATCH, SEQ, VOCAB), (BATCH, 2)]),
    "BertForQuestionAnswering": ({}, ("sequence_labels", "sequence_labels"),
                                 [(BATCH, SEQ), (BATCH, SEQ)]),
    "BertForSequenceClassification": ({"num_labels": LABELS}, ("sequence_labels",),
                                      [(BATCH, LABELS)]),
    "BertForTokenClassification": ({"num_labels": LABELS}, ("token_labels",),
                                   [(BATCH, SEQ, LABELS)]),
}


def _pair(class_name, **kwargs):
    """0.6.2's model and ours, in eval mode, holding the same (0.6.2-initialised) weights."""
    torch.manual_seed(0)
    theirs = getattr(ppb, class_name)(ppb.BertConfig(**CONFIG_ARGS), **kwargs).eval()
    ours = getattr(modeling, class_name)(modeling.BertConfig(**CONFIG_ARGS), **kwargs).eval()
    state = theirs.state_dict()
    assert set(state) == set(ours.state_dict())  # 0.6.2's keys, every one
    ours.load_state_dict(state)
    return theirs, ours


def _as_list(out):
    return list(out) if isinstance(out, (tuple, list)) else [out]


def test_base_model_shapes_and_outputs_equal_0_6_2s():
    theirs, ours = _pair("BertModel")
    x = _inputs()
    args = (x["input_ids"], x["token_type_ids"], x["input_mask"])
    with torch.no_grad():
        layers, pooled = ours(*args)
        their_layers, their_pooled = theirs(*args)
        last, _ = ours(*args, output_all_encoded_layers=False)
    assert [list(t.shape) for t in layers] == [[BATCH, SEQ, HIDDEN]] * LAYERS
    assert list(pooled.shape) == [BATCH, HIDDEN] and list(last.shape) == [BATCH, SEQ, HIDDEN]
    for a, b in zip(layers + [pooled], their_layers + [their_pooled]):
        assert_fp32_close(a, b)


@pytest.mark.parametrize("class_name", sorted(HEAD_CASES))
def test_head_shapes_losses_and_outputs_equal_0_6_2s(class_name):
    kwargs, label_names, shapes = HEAD_CASES[class_name]
    theirs, ours = _pair(class_name, **kwargs)
    x = _inputs()
    args = (x["input_ids"], x["token_type_ids"], x["input_mask"])
    with torch.no_grad():
        outputs = _as_list(ours(*args))
        their_outputs = _as_list(theirs(*args))
        # 0.6.2's question answering clamps the positions in place: each side gets its copy
        loss = ours(*args, *(x[n].clone() for n in label_names))
        their_loss = theirs(*args, *(x[n].clone() for n in label_names))
    assert [tuple(t.shape) for t in outputs] == shapes
    assert list(loss.shape) == []
    for a, b in zip(outputs, their_outputs):
        assert_fp32_close(a, b)
    assert_fp32_close(loss, their_loss)


def test_multiple_choice_takes_0_6_2s_constructor_and_matches_it():
    theirs, ours = _pair("BertForMultipleChoice", num_choices=3)
    x = _inputs()
    ids, types, mask = (x[k][:12].view(4, 3, SEQ) for k in ("input_ids", "token_type_ids", "input_mask"))
    labels = torch.tensor([0, 2, 1, 1])
    with torch.no_grad():
        assert_fp32_close(ours(ids, types, mask), theirs(ids, types, mask))
        assert_fp32_close(ours(ids, types, mask, labels), theirs(ids, types, mask, labels))
    assert tuple(ours(ids, types, mask).shape) == (4, 3)


# --- the layers ------------------------------------------------------------------------------
def test_layer_norm_is_0_6_2s_class_with_0_6_2s_math():
    torch.manual_seed(1)
    ours, theirs = modeling.BertLayerNorm(HIDDEN), ppb.BertLayerNorm(HIDDEN)
    assert ours.eps == ours.variance_epsilon == theirs.variance_epsilon == 1e-12
    with torch.no_grad():
        for p in (ours.weight, ours.bias):
            p.normal_()
        theirs.weight.copy_(ours.weight)
        theirs.bias.copy_(ours.bias)
        x = torch.randn(BATCH, SEQ, HIDDEN) * 3 + 1
        assert_fp32_close(ours(x), theirs(x))
    model = modeling.BertForPreTraining(modeling.BertConfig(**CONFIG_ARGS))
    norms = [n for n, m in model.named_modules() if n.endswith("LayerNorm")]
    assert len(norms) == 2 * LAYERS + 2
    assert all(isinstance(model.get_submodule(n), modeling.BertLayerNorm) for n in norms)


@pytest.mark.parametrize("class_name", ["BertLMPredictionHead", "BertOnlyMLMHead",
                                        "BertPreTrainingHeads"])
def test_prediction_heads_take_0_6_2s_embedding_weights_argument(class_name):
    config = modeling.BertConfig(**CONFIG_ARGS)
    embeddings = modeling.BertEmbeddings(config).word_embeddings.weight
    head = getattr(modeling, class_name)(config, embeddings)
    theirs = getattr(ppb, class_name)(ppb.BertConfig(**CONFIG_ARGS), embeddings)
    predictions = head if class_name == "BertLMPredictionHead" else head.predictions
    assert predictions.decoder.weight is embeddings  # tied, as in 0.6.2
    assert {k: v.shape for k, v in head.state_dict().items()} == \
        {k: v.shape for k, v in theirs.state_dict().items()}
    untied = getattr(modeling, class_name)(config)  # ours also builds without it
    assert set(untied.state_dict()) == set(head.state_dict())


def test_layers_take_0_6_2s_arguments_and_match():
    """Each layer class, built as 0.6.2 builds it, computes what 0.6.2's does."""
    torch.manual_seed(2)
    hidden = torch.randn(BATCH, SEQ, HIDDEN)
    mask = torch.zeros(BATCH, 1, 1, SEQ)
    mask[:, :, :, -2:] = -10000.0
    cases = {"BertSelfAttention": (hidden, mask), "BertAttention": (hidden, mask),
             "BertLayer": (hidden, mask), "BertIntermediate": (hidden,),
             "BertOutput": (torch.randn(BATCH, SEQ, INTERMEDIATE), hidden),
             "BertSelfOutput": (hidden, hidden), "BertPooler": (hidden,),
             "BertPredictionHeadTransform": (hidden,), "BertOnlyNSPHead": (hidden[:, 0],),
             "BertEmbeddings": (torch.randint(0, VOCAB, (BATCH, SEQ)),)}
    for name, args in cases.items():
        theirs = getattr(ppb, name)(ppb.BertConfig(**CONFIG_ARGS)).eval()
        ours = getattr(modeling, name)(modeling.BertConfig(**CONFIG_ARGS)).eval()
        ours.load_state_dict(theirs.state_dict())
        with torch.no_grad():
            assert_fp32_close(ours(*args), theirs(*args))
    encoder = modeling.BertEncoder(modeling.BertConfig(**CONFIG_ARGS))
    assert len(encoder(hidden, mask)) == LAYERS
    assert len(encoder(hidden, mask, output_all_encoded_layers=False)) == 1


def test_a_subclass_written_against_0_6_2_works():
    """The pattern of 0.6.2's README: subclass BertPreTrainedModel, build a BertModel,
    ``self.apply(self.init_bert_weights)``."""

    class Tagger(modeling.BertPreTrainedModel):
        def __init__(self, config, num_tags):
            super().__init__(config)
            self.bert = modeling.BertModel(config)
            self.tags = torch.nn.Linear(config.hidden_size, num_tags)
            self.apply(self.init_bert_weights)

        def forward(self, input_ids):
            sequence_output, _ = self.bert(input_ids, output_all_encoded_layers=False)
            return self.tags(sequence_output)

    model = Tagger(modeling.BertConfig(**CONFIG_ARGS), num_tags=5).eval()
    assert tuple(model(_inputs()["input_ids"]).shape) == (BATCH, SEQ, 5)
    assert float(model.tags.bias.detach().abs().max()) == 0.0  # biases zeroed, as 0.6.2 does
    for norm in (m for m in model.modules() if isinstance(m, modeling.BertLayerNorm)):
        assert bool((norm.weight == 1).all()) and bool((norm.bias == 0).all())
    with pytest.raises(ConfigError, match="needs a bertconvert BertConfig"):
        Tagger(object(), num_tags=2)


def test_run_classifier_save_and_reload_flow_both_ways(tmp_path):
    """0.6.2's run_classifier.py saves ``state_dict()`` as WEIGHTS_NAME and
    ``config.to_json_file(CONFIG_NAME)``, then reloads with ``from_pretrained(dir,
    num_labels=...)``: such a directory loads in both libraries to the same outputs."""
    from bertconvert.file_utils import CONFIG_NAME, WEIGHTS_NAME

    theirs, ours = _pair("BertForSequenceClassification", num_labels=LABELS)
    x = _inputs()
    args = (x["input_ids"], x["token_type_ids"], x["input_mask"])
    for model, directory in ((ours, tmp_path / "ours"), (theirs, tmp_path / "theirs")):
        directory.mkdir()
        torch.save(model.state_dict(), str(directory / WEIGHTS_NAME))
        model.config.to_json_file(str(directory / CONFIG_NAME))
    with torch.no_grad():
        expected = theirs(*args)
        for directory in (tmp_path / "ours", tmp_path / "theirs"):
            for library in (modeling, ppb):
                model = library.BertForSequenceClassification.from_pretrained(
                    str(directory), num_labels=LABELS).eval()
                assert_fp32_close(model(*args), expected)
