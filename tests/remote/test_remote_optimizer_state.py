"""``convert --optimizer-state`` from a checkpoint read in place: the slots are fetched too,
byte-identical to a local conversion, and the summary does not claim they were never read."""
import numpy as np
from safetensors.numpy import load_file

from bertconvert.cli import main
from .helpers import serve

OPTIMIZER = "optimizer.safetensors"


def test_http_source_with_optimizer_state(capsys, http_server, cache_env, adam_checkpoint,
                                          tmp_path):
    directory, prefix, _ = adam_checkpoint
    serve(http_server, directory, "/run")
    url = f"http://127.0.0.1:{http_server.port}/run/model.ckpt-1000"
    assert main(["convert", prefix, "--out", str(tmp_path / "local"), "--optimizer-state"]) == 0
    capsys.readouterr()
    code = main(["convert", url, "--out", str(tmp_path / "remote"), "--optimizer-state"])
    out, err = capsys.readouterr()
    assert code == 0, err
    remote = load_file(str(tmp_path / "remote" / OPTIMIZER))
    local = load_file(str(tmp_path / "local" / OPTIMIZER))
    assert sorted(remote) == sorted(local)
    assert all(np.array_equal(remote[k], local[k]) for k in local)
    tensors = next(line for line in out.splitlines() if line.strip().startswith("tensors"))
    assert "skipped" in tensors and "never read" not in tensors  # the slots were read


def test_the_slots_are_fetched_ahead_with_the_weights(capsys, http_server, cache_env,
                                                      adam_checkpoint, tmp_path):
    """Scheduled with the weights, adjacent slots and variables go up in a few coalesced
    parts; read on demand, each slot would be a request of its own, one after the other."""
    directory, _, _ = adam_checkpoint
    serve(http_server, directory, "/ahead")
    url = f"http://127.0.0.1:{http_server.port}/ahead/model.ckpt-1000"
    code = main(["convert", url, "--out", str(tmp_path / "out"), "--optimizer-state"])
    assert code == 0, capsys.readouterr().err
    slots = len(load_file(str(tmp_path / "out" / OPTIMIZER))) - 1  # global_step aside
    gets = http_server.log("GET", "/ahead/model.ckpt-1000.data-00000-of-00001")
    assert slots > 40 and len(gets) < slots / 4, (len(gets), slots)
