"""``bertconvert convert`` from s3:// and http:// sources on loopback servers: the output is
byte-identical to the local conversion and only the planned tensors' bytes are read."""
import json
import os

import pytest

from bertconvert.cli import main
from .helpers import serve, upload
from .proxy import CountingProxy

WEIGHTS = ("model.safetensors", "config.json", "bert_config.json", "vocab.txt",
           "tokenizer_config.json")


def convert(capsys, source, out, *extra):
    code = main(["convert", source, "--out", str(out), *extra])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture(scope="module")
def local_output(adam_checkpoint, tmp_path_factory):
    """The local conversion of the shared checkpoint: what every remote one must equal."""
    from bertconvert.convert.run import convert_checkpoint

    out = tmp_path_factory.mktemp("local") / "model"
    convert_checkpoint(adam_checkpoint[1], out, progress=False)
    return out


def assert_same_files(out, reference):
    for name in WEIGHTS:
        with open(out / name, "rb") as a, open(reference / name, "rb") as b:
            assert a.read() == b.read(), name


def test_http_prefix_reads_only_the_model_bytes(capsys, http_server, cache_env, adam_checkpoint,
                                                local_output, tmp_path):
    directory, prefix, model_bytes = adam_checkpoint
    serve(http_server, directory, "/run")
    with CountingProxy(http_server.port) as proxy:
        url = f"http://127.0.0.1:{proxy.port}/run/model.ckpt-1000"
        code, out, err = convert(capsys, url, tmp_path / "out")
        sent = proxy.sent
    assert code == 0, err
    assert_same_files(tmp_path / "out", local_output)
    shard = os.path.getsize(prefix + ".data-00000-of-00001")
    assert shard > 2.5 * model_bytes  # the slots are there ...
    assert sent <= 1.1 * model_bytes, (sent, model_bytes)  # ... and never read
    report = json.loads((tmp_path / "out" / "conversion.json").read_text())
    shards = [e for e in report["source_files"] if ".data-" in e["path"]]
    assert shards and all(e["etag"] and e["sha256"] is None for e in shards)
    assert all(e["path"].startswith("http://127.0.0.1") for e in shards)


def test_s3_prefix_and_directory_forms(capsys, counted_s3, cache_env, adam_checkpoint,
                                       local_output, tmp_path):
    s3_env, proxy = counted_s3
    directory, prefix, model_bytes = adam_checkpoint
    base = upload(s3_env, directory, "run")
    for i, source in enumerate([base + "model.ckpt-1000", base, base.rstrip("/")]):
        proxy.reset()
        out = tmp_path / f"out{i}"
        code, _, err = convert(capsys, source, out)
        assert code == 0, (source, err)
        assert_same_files(out, local_output)
        assert proxy.sent <= 1.1 * model_bytes, (source, proxy.sent, model_bytes)
