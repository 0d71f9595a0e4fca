"""``verify PRESET_DIR URL``: a published model directory (an http(s)/s3 model archive) is
fetched through the cache for a KerasHub preset as it is for a TF checkpoint, instead of
being looked up as a local directory that "does not exist"."""
import io
import os
import tarfile

import pytest

from bertconvert.cli import main
from bertconvert.convert.run import convert_checkpoint
from bertconvert.verify import verify
from ..cache.servers import cache_env, http_server  # noqa: F401 (fixtures)

pytest.importorskip("h5py")

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
KH = os.path.join(ROOT, "fixtures", "keras_hub")
PRESET = os.path.join(KH, "classifier")
GOLDEN = PRESET + ".outputs.npz"


def _tgz(directory):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as t:
        for name in sorted(os.listdir(directory)):
            t.add(os.path.join(directory, name), arcname=name)
    return buf.getvalue()


def test_a_model_archive_url_is_fetched_and_verified(cache_env, http_server, tmp_path):  # noqa: F811
    model = tmp_path / "m"
    convert_checkpoint(PRESET, model, progress=False)
    http_server.add("/m.tar.gz", _tgz(model))
    url = http_server.url("/m.tar.gz")
    report = verify(PRESET, url, reference=GOLDEN, progress=False)
    assert report.passed and report.weights.passed and report.weights.tensors > 0
    assert main(["-q", "verify", PRESET, url, "--reference", GOLDEN]) == 0


def test_progress_flags_reach_the_download(cache_env, http_server, tmp_path, capsys):  # noqa: F811
    model = tmp_path / "m"
    convert_checkpoint(PRESET, model, progress=False)
    http_server.add("/m.tar.gz", _tgz(model))
    url = http_server.url("/m.tar.gz")
    # --progress draws bars even on pytest's captured stderr: the flag reached the fetch
    assert main(["--progress", "verify", PRESET, url, "--reference", GOLDEN]) == 0
    assert "%|" in capsys.readouterr().err
