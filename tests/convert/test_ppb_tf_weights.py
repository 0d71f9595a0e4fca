"""``bertconvert.modeling.load_tf_weights_in_bert(model, tf_checkpoint_path)``: 0.6.2's
signature and result, on our TensorFlow-free converter."""
import os
import subprocess
import sys

import pytest
import torch

from bertconvert import modeling
from bertconvert.errors import BertConvertError

from ..conftest import fixture_checkpoint

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _prefix(name):
    return os.path.join(fixture_checkpoint(name), "bert_model.ckpt")


def _config(name):
    return modeling.BertConfig.from_json_file(os.path.join(fixture_checkpoint(name),
                                                           modeling.BERT_CONFIG_NAME))


def test_pretraining_checkpoint_loads_bit_exactly_as_0_6_2_loads_it(tf):
    ppb = pytest.importorskip("pytorch_pretrained_bert.modeling")
    config_file = os.path.join(fixture_checkpoint("pretraining"), modeling.BERT_CONFIG_NAME)
    torch.manual_seed(0)
    theirs = ppb.BertForPreTraining(ppb.BertConfig(config_file))
    assert ppb.load_tf_weights_in_bert(theirs, _prefix("pretraining")) is theirs
    ours = modeling.BertForPreTraining(modeling.BertConfig(config_file))
    assert modeling.load_tf_weights_in_bert(ours, _prefix("pretraining")) is ours
    expected = theirs.state_dict()
    got = ours.state_dict()
    assert set(got) == set(expected)
    for key, value in expected.items():
        assert torch.equal(got[key], value), key
    assert ours.cls.predictions.decoder.weight is ours.bert.embeddings.word_embeddings.weight


def test_a_new_classifier_keeps_the_models_own_values():
    """A pre-training checkpoint has no classifier: 0.6.2 left the model's; so do we."""
    torch.manual_seed(3)
    model = modeling.BertForSequenceClassification(_config("pretraining"), num_labels=4)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    modeling.load_tf_weights_in_bert(model, _prefix("pretraining"))
    after = model.state_dict()
    assert torch.equal(after["classifier.weight"], before["classifier.weight"])
    assert torch.equal(after["classifier.bias"], before["classifier.bias"])
    reference = modeling.BertForPreTraining(_config("pretraining"))
    modeling.load_tf_weights_in_bert(reference, _prefix("pretraining"))
    for key, value in reference.bert.state_dict().items():
        assert torch.equal(model.bert.state_dict()[key], value), key
        assert not torch.equal(before[f"bert.{key}"], value), key  # it did load


@pytest.mark.parametrize("name", ["sequence-classification", "question-answering", "base"])
def test_each_head_gets_what_from_tf_gives(name):
    from bertconvert.models.heads import HEADS

    model_class = HEADS[name]
    converted = model_class.from_pretrained(_prefix(name), from_tf=True,
                                            config=_config(name))
    kwargs = {"num_labels": converted.num_labels} if hasattr(converted, "num_labels") else {}
    model = model_class(_config(name), **kwargs)
    modeling.load_tf_weights_in_bert(model, _prefix(name))
    for key, value in converted.state_dict().items():
        assert torch.equal(model.state_dict()[key], value), key


def test_keeps_the_models_device_and_dtype():
    model = modeling.BertModel(_config("base")).to(torch.float64)
    modeling.load_tf_weights_in_bert(model, _prefix("base"))
    assert {p.dtype for p in model.parameters()} == {torch.float64}


def test_a_config_that_does_not_fit_is_a_named_error():
    config = _config("pretraining")
    config.hidden_size, config.num_attention_heads = 64, 4
    with pytest.raises(BertConvertError, match="hidden_size in the config is 64"):
        modeling.load_tf_weights_in_bert(modeling.BertForPreTraining(config), _prefix("pretraining"))
    with pytest.raises(BertConvertError, match="needs a bertconvert BERT model"):
        modeling.load_tf_weights_in_bert(torch.nn.Linear(2, 2), _prefix("pretraining"))


def test_no_tensorflow_is_imported():
    code = ("import sys; from bertconvert.modeling import BertForPreTraining, BertConfig, "
            "load_tf_weights_in_bert; import os; d = sys.argv[1]; "
            "m = BertForPreTraining(BertConfig(os.path.join(d, 'bert_config.json'))); "
            "load_tf_weights_in_bert(m, os.path.join(d, 'bert_model.ckpt')); "
            "print('tensorflow' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code, fixture_checkpoint("pretraining")],
                         capture_output=True, text=True, cwd=ROOT,
                         env=dict(os.environ, PYTHONPATH=ROOT))
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"


def test_from_tf_reads_0_6_2s_archive_layout(tmp_path):
    """0.6.2's ``from_pretrained(dir, from_tf=True)`` read ``<dir>/model.ckpt``
    (TF_WEIGHTS_NAME) beside ``bert_config.json``."""
    import shutil

    source = fixture_checkpoint("pretraining")
    for name in os.listdir(source):
        target = name.replace("bert_model.ckpt", modeling.TF_WEIGHTS_NAME)
        shutil.copy(os.path.join(source, name), tmp_path / target)
    assert (tmp_path / f"{modeling.TF_WEIGHTS_NAME}.index").exists()
    model = modeling.BertForPreTraining.from_pretrained(str(tmp_path), from_tf=True)
    reference = modeling.BertForPreTraining(_config("pretraining"))
    modeling.load_tf_weights_in_bert(reference, _prefix("pretraining"))
    for key, value in reference.state_dict().items():
        assert torch.equal(model.state_dict()[key], value), key
