"""planning.expected_parameters: the target models' parameters as pure data (no torch at
conversion time) must stay exactly what the model classes build, for every head."""
import pytest

from bertconvert import BertConfig
from bertconvert.errors import ConfigError, HeadError
from bertconvert.models.heads import HEADS
from bertconvert.convert.plan import HEAD_LAYOUTS, expected_parameters, tied_parameters
from bertconvert.models.heads import target_model


def configs():
    odd = dict(hidden_size=32, num_hidden_layers=3, num_attention_heads=4, intermediate_size=37,
               max_position_embeddings=64, type_vocab_size=3)
    yield "tied", BertConfig(99, **odd)
    yield "untied", BertConfig(99, tie_word_embeddings=False, **odd)
    yield "config-labels", BertConfig(99, num_labels=6, **odd)


@pytest.mark.parametrize("head", list(HEADS))
@pytest.mark.parametrize("num_labels", [None, 3])
def test_expected_parameters_equal_the_models_state_dict(head, num_labels):
    for label, config in configs():
        model = target_model(head, config, num_labels)
        want = [(k, tuple(v.shape)) for k, v in model.state_dict().items()]
        assert list(expected_parameters(head, config, num_labels).items()) == want, label
        assert tied_parameters(head, config) == {
            alias: "bert.embeddings.word_embeddings.weight" for alias in model.tied_weight_keys()}, label
        for alias, target in tied_parameters(head, config).items():  # really shared
            state = model.state_dict(keep_vars=True)
            assert state[alias] is state[target]


@pytest.mark.parametrize("head", list(HEADS))
def test_head_layouts_name_the_class_and_pooler_use(head):
    model_class, pooler_used, _ = HEAD_LAYOUTS[head]
    assert HEADS[head].__name__ == model_class
    assert HEADS[head].pooler_used is pooler_used
    assert list(HEAD_LAYOUTS) == list(HEADS)


def test_bad_head_or_config():
    config = BertConfig(99, hidden_size=32, num_hidden_layers=1, num_attention_heads=4,
                        intermediate_size=37)
    with pytest.raises(HeadError, match="unknown head"):
        expected_parameters("ner", config)
    config.num_attention_heads = 5
    with pytest.raises(ConfigError, match="not a multiple"):
        expected_parameters("base", config)
