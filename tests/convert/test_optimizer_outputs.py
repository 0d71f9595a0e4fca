"""``--optimizer-state`` outputs meet the output rules: a local model directory written with
``optimizer.safetensors`` is a previous model directory that ``--overwrite`` may replace, and
an ``s3://`` publication tells a conversion with the slots from one without them."""
import json
import os
import shutil

import pytest

from bertconvert import convert_checkpoint
from bertconvert.errors import OutputExistsError
from ..cache.servers import _moto_endpoint, s3_env  # noqa: F401 (fixtures)
from ..conftest import fixture_checkpoint

OPTIMIZER = "optimizer.safetensors"


@pytest.fixture
def ckpt(tmp_path):
    return str(shutil.copytree(fixture_checkpoint("pretraining-adam"), tmp_path / "ckpt"))


def test_overwrite_replaces_a_model_directory_with_optimizer_state(ckpt, tmp_path):
    out = tmp_path / "model"
    convert_checkpoint(ckpt, str(out), progress=False, optimizer_state=True)
    assert OPTIMIZER in os.listdir(out)
    report = convert_checkpoint(ckpt, str(out), progress=False, overwrite=True,
                                dtype="float16")
    assert report.dtype == "float16"
    assert sorted(os.listdir(out)) == sorted(report.files)
    assert OPTIMIZER not in os.listdir(out)
    with open(out / "conversion.json") as f:
        assert json.load(f)["dtype"] == "float16"


def test_s3_rerun_with_optimizer_state_is_not_taken_for_the_same_conversion(s3_env, ckpt):
    url = s3_env.url("opt/")
    convert_checkpoint(ckpt, url, progress=False)
    with pytest.raises(OutputExistsError, match="holds another conversion"):
        convert_checkpoint(ckpt, url, progress=False, optimizer_state=True)
    report = convert_checkpoint(ckpt, url, progress=False, optimizer_state=True, overwrite=True)
    assert report.publication["status"] == "replaced"
    client = s3_env.client()
    keys = {o["Key"] for o in client.list_objects_v2(Bucket=s3_env.bucket,
                                                     Prefix="opt/")["Contents"]}
    assert "opt/" + OPTIMIZER in keys
    again = convert_checkpoint(ckpt, url, progress=False, optimizer_state=True)
    assert again.publication["status"] == "unchanged"


def test_a_global_step_beyond_int64_is_a_named_error(tmp_path):
    import numpy as np

    from bertconvert.checkpoint import load_checkpoint, save_checkpoint
    from bertconvert.errors import SlotShapeError

    source = fixture_checkpoint("pretraining-adam")
    with load_checkpoint(source) as reader:
        tensors = {n: reader.get_tensor(n) for n in reader.get_variable_to_shape_map()}
    tensors["global_step"] = np.array(2 ** 64 - 1, np.uint64)
    (tmp_path / "ckpt").mkdir()
    save_checkpoint(str(tmp_path / "ckpt" / "bert_model.ckpt"), tensors)
    shutil.copy(os.path.join(source, "bert_config.json"), tmp_path / "ckpt")
    with pytest.raises(SlotShapeError, match="global_step is uint64"):
        convert_checkpoint(str(tmp_path / "ckpt"), str(tmp_path / "out"), progress=False,
                           optimizer_state=True)
    assert sorted(os.listdir(tmp_path)) == ["ckpt"]


def test_a_marker_recorded_before_optimizer_state_counted_still_matches(s3_env, ckpt):
    url = s3_env.url("older/")
    convert_checkpoint(ckpt, url, progress=False)
    client = s3_env.client()
    marker = json.loads(client.get_object(Bucket=s3_env.bucket,
                                          Key="older/conversion.json")["Body"].read())
    options = marker["publication"]["identity"]["options"]
    assert "optimizer_state" not in options  # not written: not part of the identity
    again = convert_checkpoint(ckpt, url, progress=False)
    assert again.publication["status"] == "unchanged"
