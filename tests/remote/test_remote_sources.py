"""The forms a remote source takes: directories (state file, one .index), archives, remote
--config/--vocab, checkpoints without slots (adjacent ranges coalesced), and verify."""
import os
import shutil
import zipfile

import pytest

from bertconvert.cli import main
from .helpers import serve, upload

FIXTURES = os.path.join(os.path.dirname(__file__), "..", "..", "fixtures", "checkpoints")


def convert(capsys, source, out, *extra):
    code = main(["convert", source, "--out", str(out), *extra])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def local_weights(prefix, tmp_path, name="local"):
    from bertconvert.convert.run import convert_checkpoint

    convert_checkpoint(prefix, tmp_path / name, progress=False)
    return (tmp_path / name / "model.safetensors").read_bytes()


def test_adjacent_tensors_are_read_in_few_requests(capsys, http_server, cache_env, tmp_path):
    """Without optimizer slots the model's tensors lie back to back: they are coalesced."""
    directory = os.path.join(FIXTURES, "pretraining")
    serve(http_server, directory, "/pre")
    code, _, err = convert(capsys, http_server.url("/pre/bert_model.ckpt"), tmp_path / "out")
    assert code == 0, err
    assert (tmp_path / "out" / "model.safetensors").read_bytes() == \
        local_weights(os.path.join(directory, "bert_model.ckpt"), tmp_path)
    from bertconvert.checkpoint import load_checkpoint
    with load_checkpoint(directory) as reader:
        tensors = len(reader)
    ranged = http_server.log("GET", "/pre/bert_model.ckpt.data-00000-of-00001")
    assert 1 <= len(ranged) < tensors / 4, (len(ranged), tensors)


def test_http_directory_with_a_state_file(capsys, http_server, cache_env, adam_checkpoint,
                                          tmp_path):
    directory, prefix, _ = adam_checkpoint
    url, _ = serve(http_server, directory, "/run")
    code, _, err = convert(capsys, url, tmp_path / "none")  # no state file: cannot list
    assert code == 2 and "state file" in err and "cannot be listed" in err, err
    http_server.add("/run/checkpoint", b'model_checkpoint_path: "/tpu/out/model.ckpt-1000"\n')
    code, out, err = convert(capsys, url, tmp_path / "out")
    assert code == 0, err
    assert (tmp_path / "out" / "model.safetensors").read_bytes() == local_weights(prefix, tmp_path)


def test_s3_directory_follows_the_state_file(capsys, s3_env, cache_env, adam_checkpoint,
                                             tmp_path):
    directory, prefix, _ = adam_checkpoint
    base = upload(s3_env, directory, "run")
    client = s3_env.client()
    client.upload_file(prefix + ".index", s3_env.bucket, "run/model.ckpt-500.index")
    for source in (base, base.rstrip("/")):
        code, _, err = convert(capsys, source, tmp_path / "two")
        assert code == 2 and "several checkpoints" in err, err
    client.put_object(Bucket=s3_env.bucket, Key="run/checkpoint",
                      Body=b'model_checkpoint_path: "model.ckpt-1000"\n')
    code, _, err = convert(capsys, base, tmp_path / "out")
    assert code == 0, err
    assert (tmp_path / "out" / "model.safetensors").read_bytes() == local_weights(prefix, tmp_path)


def test_remote_config_and_vocab_options(capsys, s3_env, http_server, cache_env, adam_checkpoint,
                                         tmp_path):
    directory, prefix, _ = adam_checkpoint
    bare = tmp_path / "bare"
    bare.mkdir()
    for name in os.listdir(directory):
        if "ckpt" in name:
            shutil.copy(os.path.join(directory, name), bare / name)
    base = upload(s3_env, str(bare), "bare")
    code, _, err = convert(capsys, base + "model.ckpt-1000", tmp_path / "noconfig")
    assert code == 2 and "bert_config.json" in err, err
    http_server.add("/side/bert_config.json", file=os.path.join(directory, "bert_config.json"))
    http_server.add("/side/vocab.txt", file=os.path.join(directory, "vocab.txt"))
    code, _, err = convert(capsys, base + "model.ckpt-1000", tmp_path / "out",
                           "--config", http_server.url("/side/bert_config.json"),
                           "--vocab", http_server.url("/side/vocab.txt"))
    assert code == 0, err
    for name in ("bert_config.json", "vocab.txt"):
        assert (tmp_path / "out" / name).read_bytes() == open(os.path.join(directory, name), "rb").read()


def test_an_archive_url_goes_through_the_cache(capsys, http_server, cache_env, tmp_path):
    """A release zip (a folder with bert_model.ckpt.*, bert_config.json, vocab.txt)."""
    directory = os.path.join(FIXTURES, "pretraining")
    archive = tmp_path / "uncased_L-2.zip"
    with zipfile.ZipFile(archive, "w") as z:
        for name in sorted(os.listdir(directory)):
            z.write(os.path.join(directory, name), f"uncased_L-2/{name}")
    http_server.add("/models/uncased_L-2.zip", archive.read_bytes())
    for i in range(2):
        code, _, err = convert(capsys, http_server.url("/models/uncased_L-2.zip"), tmp_path / f"o{i}")
        assert code == 0, err
    assert (tmp_path / "o0" / "model.safetensors").read_bytes() == \
        local_weights(os.path.join(directory, "bert_model.ckpt"), tmp_path)
    assert http_server.count("GET", "/models/uncased_L-2.zip") == 1  # fetched once, cached


def test_verify_a_remote_checkpoint(capsys, http_server, cache_env, tmp_path):
    pytest.importorskip("tensorflow")
    directory = os.path.join(FIXTURES, "pretraining")
    from bertconvert.convert.run import convert_checkpoint
    convert_checkpoint(os.path.join(directory, "bert_model.ckpt"), tmp_path / "model",
                       progress=False)
    serve(http_server, directory, "/pre")
    code = main(["verify", http_server.url("/pre/bert_model.ckpt"), str(tmp_path / "model")])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "PASS" in captured.out.upper()


def test_in_memory_conversion_from_a_url(s3_env, cache_env, adam_checkpoint):
    """``load_converted_model`` / ``from_pretrained(from_tf=True)``'s path reads remote too."""
    pytest.importorskip("torch")
    from bertconvert.convert.stream import state_dict_from_checkpoint

    directory, prefix, _ = adam_checkpoint
    base = upload(s3_env, directory, "mem")
    remote = state_dict_from_checkpoint(base + "model.ckpt-1000")
    local = state_dict_from_checkpoint(prefix)
    assert remote.state_dict.keys() == local.state_dict.keys()
    for key, value in local.state_dict.items():
        assert remote.state_dict[key].equal(value), key


def test_inspect_a_remote_checkpoint_reads_the_index_only(capsys, http_server, cache_env,
                                                          adam_checkpoint):
    directory, _, _ = adam_checkpoint
    serve(http_server, directory, "/run")
    code = main(["inspect", http_server.url("/run/model.ckpt-1000")])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "adam_m" in captured.out and "word_embeddings" in captured.out
    assert http_server.count("GET", "/run/model.ckpt-1000.data-00000-of-00001") == 0


def test_a_tf2_checkpoint_reads_its_object_graph_remotely(capsys, http_server, cache_env,
                                                          tmp_path):
    """TF2 names resolve through the object graph: a string tensor, read as a range too."""
    directory = os.path.join(FIXTURES, "tf2-pretraining")
    serve(http_server, directory, "/tf2")
    code, _, err = convert(capsys, http_server.url("/tf2/bert_model.ckpt"), tmp_path / "out")
    assert code == 0, err
    assert (tmp_path / "out" / "model.safetensors").read_bytes() == \
        local_weights(os.path.join(directory, "bert_model.ckpt"), tmp_path)
