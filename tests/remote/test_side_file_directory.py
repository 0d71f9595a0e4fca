"""``--config``/``--vocab`` of a remote conversion given as a directory URL (``.../model/``)
name no file: a one-line error (exit 2) naming the URL, before anything is fetched -- not an
IsADirectoryError traceback from copying the directory the cache had assembled."""
import os

import pytest

from bertconvert.cli import main
from .helpers import upload


@pytest.mark.parametrize("option", ["--config", "--vocab"])
def test_a_directory_url_for_a_side_file_is_refused(capsys, s3_env, http_server, cache_env,
                                                    adam_checkpoint, tmp_path, option):
    directory, _, _ = adam_checkpoint
    base = upload(s3_env, directory, "run")
    for name, data in {"config.json": b"{}", "model.safetensors": b"w" * 64,
                       "vocab.txt": b"[PAD]\n"}.items():
        http_server.add(f"/side/{name}", data)
    side = http_server.url("/side/")
    code = main(["convert", base + "model.ckpt-1000", "--out", str(tmp_path / "out"), option, side])
    err = capsys.readouterr().err
    assert code == 2, err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert side in err and "directory" in err
    assert not os.path.exists(tmp_path / "out")
    assert http_server.count("GET") == 0  # refused before the directory was fetched
