"""Values the output dtype cannot hold are refused, never written as infinity.

``--dtype float16`` of a weight of 1e6 is DtypeRangeError naming the tensor (exit status 2,
nothing published); bfloat16 holds it. Config numbers that float32 cannot hold are config
errors; a fresh head that would overflow is refused too. NaN or infinity already in the
checkpoint converts as it is, with a warning naming the tensor.
"""
import json
import logging
import os
import shutil

import numpy as np
import pytest
import torch
from safetensors.numpy import load_file

from bertconvert.checkpoint import load_checkpoint, save_checkpoint
from bertconvert.cli import main
from bertconvert.convert.tensors import TensorCopier
from bertconvert.errors import ConversionError, DtypeRangeError
from .test_tensors import planned

FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, os.pardir,
                        "fixtures", "checkpoints")
KERNEL = "bert/encoder/layer_0/attention/self/query/kernel"   # transposed when converted
KERNEL_KEY = "encoder.layer.0.attention.self.query.weight"
TABLE = "bert/embeddings/word_embeddings"                     # copied element-wise
TABLE_KEY = "embeddings.word_embeddings.weight"


def edited_checkpoint(tmp_path, changes, config_changes=None, name="base", where="ckpt"):
    """A copy of fixture ``name`` in ``tmp_path/where``, written with our own writer,
    ``changes`` applied: ``{variable: function(array) -> array}``."""
    source = os.path.join(FIXTURES, name)
    out = tmp_path / where
    out.mkdir()
    reader = load_checkpoint(os.path.join(source, "bert_model.ckpt"))
    tensors = {n: reader.get_tensor(n) for n in reader.get_variable_to_shape_map()}
    for variable, change in changes.items():
        tensors[variable] = change(tensors[variable].copy())
    save_checkpoint(str(out / "bert_model.ckpt"), tensors)
    shutil.copy(os.path.join(source, "vocab.txt"), out)
    with open(os.path.join(source, "bert_config.json")) as f:
        config = json.load(f)
    config.update(config_changes or {})
    (out / "bert_config.json").write_text(json.dumps(config))
    return out


def put(value, at=(3, 1)):
    def change(array):
        array[at] = value
        return array
    return change


def convert(capsys, ckpt, out, *extra):
    code = main(["convert", str(ckpt), "--out", str(out), "--quiet", *extra])
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return code, err


@pytest.mark.parametrize("variable, key", [(KERNEL, KERNEL_KEY), (TABLE, TABLE_KEY)])
def test_float16_overflow_is_an_error_naming_the_tensor(tmp_path, capsys, variable, key):
    ckpt = edited_checkpoint(tmp_path, {variable: put(1e6)})
    code, err = convert(capsys, ckpt, tmp_path / "half", "--dtype", "float16")
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    for fragment in (repr(variable), key, "1e+06", "65504", "--dtype bfloat16", "--dtype float32"):
        assert fragment in lines[0], err
    assert not (tmp_path / "half").exists()
    # bfloat16 has float32's range: 1e6 converts (rounded to 8 bits of mantissa)
    code, _ = convert(capsys, ckpt, tmp_path / "bf16", "--dtype", "bfloat16")
    assert code == 0
    value = load_file(str(tmp_path / "bf16" / "model.safetensors"))[key]
    assert float(np.abs(value.astype(np.float32)).max()) == float(torch.tensor(1e6).bfloat16())


def test_values_near_the_float16_limit_round_as_before(tmp_path, capsys):
    # 65519 rounds to 65504 (the largest float16), 65520 would round to infinity
    ckpt = edited_checkpoint(tmp_path, {TABLE: put(65519.0)})
    assert convert(capsys, ckpt, tmp_path / "ok", "--dtype", "float16")[0] == 0
    value = load_file(str(tmp_path / "ok" / "model.safetensors"))[TABLE_KEY]
    assert value[3, 1] == np.float16(65504)
    ckpt2 = edited_checkpoint(tmp_path, {TABLE: put(-65520.0)}, where="ckpt2")
    code, err = convert(capsys, ckpt2, tmp_path / "no", "--dtype", "float16")
    assert code == 2 and "65520" in err


def test_float64_beyond_float32_is_refused(tmp_path):
    prefix = str(tmp_path / "bert_model.ckpt")
    values = np.ones((4, 8), np.float64)
    values[1, 2] = -1e300
    save_checkpoint(prefix, {"bert/pooler/dense/kernel": values})
    reader = load_checkpoint(prefix)
    with TensorCopier(reader, "float32") as copier:
        with pytest.raises(DtypeRangeError, match="1e\\+300.*No output dtype holds it"):
            copier.array(planned(reader, "bert/pooler/dense/kernel"))
    with TensorCopier(reader, "float32", check_values=False) as copier:  # verify's digests
        assert np.isinf(copier.array(planned(reader, "bert/pooler/dense/kernel"))).any()
    assert issubclass(DtypeRangeError, ConversionError)


@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_nan_and_inf_in_the_checkpoint_are_reported(tmp_path, capsys, caplog, dtype):
    def spoil(array):
        array[0, 0], array[1, 1], array[2, 2] = np.nan, np.inf, -np.inf
        return array
    ckpt = edited_checkpoint(tmp_path, {KERNEL: spoil})
    with caplog.at_level(logging.WARNING, logger="bertconvert"):
        assert main(["convert", str(ckpt), "--out", str(tmp_path / "o"), "--dtype", dtype]) == 0
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any(KERNEL in m and KERNEL_KEY in m and "3 NaN or infinite" in m for m in warned), warned
    value = load_file(str(tmp_path / "o" / "model.safetensors"))[KERNEL_KEY].astype(np.float32)
    assert np.isnan(value[0, 0]) and value[1, 1] == np.inf and value[2, 2] == -np.inf
    assert np.isfinite(np.delete(value.reshape(-1), [0, value.shape[1] + 1, 2 * value.shape[1] + 2])).all()


@pytest.mark.parametrize("field, value", [("initializer_range", 1e39),
                                          ("layer_norm_eps", 1e39),
                                          ("layer_norm_eps", 1e-46)])
def test_config_numbers_float32_cannot_hold(tmp_path, capsys, field, value):
    ckpt = edited_checkpoint(tmp_path, {}, {field: value})
    code, err = convert(capsys, ckpt, tmp_path / "o", "--head", "sequence-classification",
                        "--allow-new-head")
    assert code == 2
    assert f"config field {field} is {value!r}" in err and "float32" in err, err
    assert not (tmp_path / "o").exists()


def test_fresh_head_that_overflows_is_refused(tmp_path, capsys):
    # Finite in float32, but normal(0, it) draws beyond float32 (any |z| > 1 does)
    ckpt = edited_checkpoint(tmp_path, {}, {"initializer_range": 3.4e38})
    torch.manual_seed(0)
    code, err = convert(capsys, ckpt, tmp_path / "o", "--head", "sequence-classification",
                        "--allow-new-head")
    assert code == 2 and "initializer_range" in err and "overflow torch.float32" in err, err
    assert not (tmp_path / "o").exists()
    # 1e5 fits float32 but not float16: the fresh classifier is named
    ckpt2 = edited_checkpoint(tmp_path, {}, {"initializer_range": 1e5}, where="ckpt2")
    code, err = convert(capsys, ckpt2, tmp_path / "o", "--head", "sequence-classification",
                        "--allow-new-head", "--dtype", "float16")
    assert code == 2 and "classifier.weight" in err and "--dtype bfloat16" in err, err
    assert not (tmp_path / "o").exists()
    # and bfloat16 holds it
    code, err = convert(capsys, ckpt2, tmp_path / "o", "--head", "sequence-classification",
                        "--allow-new-head", "--dtype", "bfloat16")
    assert code == 0, err
    weight = load_file(str(tmp_path / "o" / "model.safetensors"))["classifier.weight"]
    assert np.isfinite(weight.astype(np.float32)).all()


def test_model_classes_refuse_an_initializer_range_that_overflows():
    from bertconvert import BertConfig, BertModel
    from bertconvert.errors import ConfigError
    sizes = dict(vocab_size=50, hidden_size=8, num_hidden_layers=1, num_attention_heads=2,
                 intermediate_size=8)
    torch.manual_seed(0)
    with pytest.raises(ConfigError, match="initializer_range .*overflow torch.float32"):
        BertModel(BertConfig.from_dict(dict(sizes, initializer_range=3.4e38)))
    model = BertModel(BertConfig.from_dict(dict(sizes, initializer_range=1e30)))  # fits
    assert all(torch.isfinite(p).all() for p in model.parameters())
