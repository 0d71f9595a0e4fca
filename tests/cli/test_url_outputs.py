"""`export` and the legacy command write local files only: a URL as their output is refused
(exit 2, one line) instead of becoming a local folder named `s3:` or `https:` while the
summary shows the URL as if the files had been uploaded."""
import os

import pytest

from .test_overwrite import CKPT, cli, refused


@pytest.mark.parametrize("url", ["s3://bucket/x/bert_model.ckpt", "https://host/x/bert_model.ckpt"])
def test_export_to_a_url_is_refused(tmp_path, url):
    code, _, err = cli("convert", CKPT, "--out", "model", cwd=tmp_path)
    assert code == 0, err
    code, _, err = cli("export", "model", "--out", url, cwd=tmp_path)
    refused(code, err, "is a URL", "export writes local files only")
    assert sorted(os.listdir(tmp_path)) == ["model"]


def test_the_legacy_command_refuses_a_url_output(tmp_path):
    code, _, err = cli("convert_tf_checkpoint_to_pytorch", os.path.join(CKPT, "bert_model.ckpt"),
                       os.path.join(CKPT, "bert_config.json"), "s3://bucket/x/pytorch_model.bin",
                       cwd=tmp_path)
    refused(code, err, "PYTORCH_DUMP_OUTPUT", "is a URL")
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("url", ["s3://bucket/models/x/", "https://host/models/x/"])
def test_convert_preset_refuses_a_url_output(tmp_path, monkeypatch, url):
    from bertconvert.convert import convert_preset
    from bertconvert.errors import UnsupportedURLError

    from .test_overwrite import ROOT

    monkeypatch.chdir(tmp_path)
    with pytest.raises(UnsupportedURLError, match="writes local files only"):
        convert_preset(os.path.join(ROOT, "fixtures", "keras_hub", "classifier"), url,
                       progress=False)
    assert os.listdir(tmp_path) == []
