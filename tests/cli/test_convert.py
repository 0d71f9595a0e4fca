"""The convert / inspect / export / convert_tf_checkpoint_to_pytorch commands."""
import json
import os
import resource
import subprocess
import sys

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from bertconvert.cli import main

FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, os.pardir, "fixtures")


def ckpt(name):
    return os.path.join(FIXTURES, "checkpoints", name)


def test_convert_writes_the_directory_and_a_summary(tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["convert", ckpt("pretraining-lamb"), "--out", str(out), "--quiet"]) == 0
    captured = capsys.readouterr()
    assert "pretraining (BertForPreTraining)" in captured.out
    assert "94 converted, 191 skipped" in captured.out
    assert "converting" not in captured.err  # --quiet: no progress bar
    assert sorted(os.listdir(out)) == ["bert_config.json", "config.json", "conversion.json",
                                       "model.safetensors", "tokenizer_config.json", "vocab.txt"]


def test_source_hash_index_flag(tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["convert", ckpt("pretraining-adam"), "--out", str(out), "--quiet",
                 "--source-hash", "index"]) == 0
    assert "skipped (never read)" in capsys.readouterr().out
    record = json.load(open(out / "conversion.json"))
    assert record["source_hash"] == "index"
    digests = {os.path.basename(e["path"]): e["sha256"] for e in record["source_files"]}
    assert digests["bert_model.ckpt.data-00000-of-00001"] is None
    assert digests["bert_model.ckpt.index"] and digests["bert_config.json"]
    with pytest.raises(SystemExit) as exit_info:  # argparse: usage line and exit 2
        main(["convert", ckpt("base"), "--out", str(tmp_path / "x"), "--source-hash", "no"])
    assert exit_info.value.code == 2


def test_progress_bar_only_on_a_terminal_or_with_progress(tmp_path, capsys):
    # pytest's captured stderr is no terminal: no bar (tests/cli/test_progress.py has more)
    assert main(["convert", ckpt("base"), "--out", str(tmp_path / "o")]) == 0
    assert "converting" not in capsys.readouterr().err
    assert main(["convert", ckpt("base"), "--out", str(tmp_path / "p"), "--progress"]) == 0
    assert "converting" in capsys.readouterr().err


def test_convert_flags(tmp_path, capsys):
    out = tmp_path / "out"
    args = ["convert", ckpt("token-classification"), "--config",
            os.path.join(ckpt("token-classification"), "bert_config.json"), "--out", str(out),
            "--head", "token-classification", "--num-labels", "5", "--format", "both",
            "--dtype", "float16", "--quiet"]
    assert main(args) == 0
    config = json.load(open(out / "config.json"))
    assert config["architectures"] == ["BertForTokenClassification"] and config["num_labels"] == 5
    assert load_file(out / "model.safetensors")["classifier.weight"].dtype == torch.float16
    assert torch.load(out / "pytorch_model.bin", weights_only=True)["classifier.weight"].shape == (5, 32)
    # Existing output: refused with exit 2, then replaced with --overwrite.
    assert main(args) == 2
    assert "already exists" in capsys.readouterr().err
    assert main(args[:-1] + ["--overwrite", "--format", "pytorch", "--quiet"]) == 0
    assert "model.safetensors" not in os.listdir(out)


def test_convert_errors_exit_2_with_one_line(tmp_path, capsys):
    out = str(tmp_path / "out")
    assert main(["convert", ckpt("sequence-classification"), "--out", out, "--num-labels", "2", "-q"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("bertconvert convert: error: --num-labels 2 disagrees")
    assert main(["convert", ckpt("pretraining"), "--out", out, "--head", "question-answering", "-q"]) == 2
    assert "--allow-new-head" in capsys.readouterr().err
    assert main(["convert", str(tmp_path / "missing"), "--out", out, "-q"]) == 2
    assert not os.path.exists(out)
    assert main(["convert", ckpt("pretraining"), "--out", out, "--head", "question-answering",
                 "--allow-new-head", "-q"]) == 0
    assert "qa_outputs.bias, qa_outputs.weight" in capsys.readouterr().out


def test_disk_full_in_a_real_process_leaves_nothing(tmp_path):
    """RLIMIT_FSIZE makes the kernel refuse writes past 64 KiB (EFBIG), as a full disk would."""
    def limit():
        resource.setrlimit(resource.RLIMIT_FSIZE, (64 << 10, 64 << 10))

    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, "-m", "bertconvert", "convert", ckpt("pretraining"),
                           "--out", str(out), "--quiet"], preexec_fn=limit,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert "nothing was published" in proc.stderr and "File too large" in proc.stderr
    assert os.listdir(tmp_path) == []


_BLOCK_TORCH = ("import sys; sys.modules['torch'] = None  # any 'import torch' now fails\n"
                "from bertconvert.cli import main\n"
                "sys.exit(main(sys.argv[1:]))\n")


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_safetensors_conversion_needs_no_torch(tmp_path, dtype):
    """The default path (and inspect) run in a process where torch cannot be imported."""
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, "-c", _BLOCK_TORCH, "convert", ckpt("tf2-pretraining"),
                           "--out", str(out), "--dtype", dtype, "--quiet"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "pretraining (BertForPreTraining)" in proc.stdout
    loaded = load_file(out / "model.safetensors")
    assert loaded["bert.encoder.layer.4.attention.self.query.weight"].dtype == getattr(torch, dtype)
    proc = subprocess.run([sys.executable, "-c", _BLOCK_TORCH, "inspect", ckpt("tf2-pretraining")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and "detected head: pretraining" in proc.stdout, proc.stderr
    # The formats that are torch files do need it, and the error says so.
    proc = subprocess.run([sys.executable, "-c", _BLOCK_TORCH, "convert", ckpt("base"),
                           "--out", str(tmp_path / "pt"), "--format", "pytorch", "--quiet"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert "needs PyTorch" in proc.stderr and "--format safetensors" in proc.stderr
    assert not (tmp_path / "pt").exists()


def test_cli_registration_imports_nothing_heavy():
    code = ("import sys; from bertconvert.cli import build_parser; build_parser(); "
            "heavy = [m for m in ('numpy', 'torch', 'tensorflow', 'requests', 'boto3', "
            "'transformers') if m in sys.modules]; print(heavy); sys.exit(1 if heavy else 0)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_inspect_table_and_json(capsys):
    assert main(["inspect", ckpt("tf2-pretraining")]) == 0
    out = capsys.readouterr().out
    assert "encoder/_transformer_layers/4/_attention_layer/_query_dense/kernel/.ATTRIBUTES/VARIABLE_VALUE" in out
    assert "bert.encoder.layer.4.attention.self.query.weight  [reshape_out+transpose]" in out
    assert "skipped (optimizer slot (TF2))" in out
    assert "_CHECKPOINTABLE_OBJECT_GRAPH" in out and "DT_STRING" in out
    assert "detected head: pretraining" in out
    assert main(["inspect", ckpt("multiple-choice"), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["head"] == "sequence-classification" and info["num_labels"] == 1
    assert "multiple-choice" in info["note"]
    rows = {r["name"]: r for r in info["variables"]}
    assert rows["output_weights"] == {"name": "output_weights", "shape": [1, 32], "dtype": "float32",
                                      "target": "classifier.weight", "detail": "none"}


def test_inspect_flags_unknown_names(tmp_path, capsys):
    from bertconvert.checkpoint import save_checkpoint

    save_checkpoint(str(tmp_path / "m.ckpt"), {"bert/encoder/layer_0/dense_7/kernel": np.zeros((2, 2), np.float32),
                                               "global_step": np.array(3, np.int64)})
    # A checkpoint that cannot be converted is exit 2 (the table is still printed in full).
    assert main(["inspect", str(tmp_path / "m.ckpt")]) == 2
    out = capsys.readouterr().out
    assert "UNKNOWN (unknown scope 'dense_7')" in out and "skipped (training bookkeeping)" in out
    assert "cannot convert" in out and "bert/encoder/layer_0/dense_7/: kernel" in out
    # No head is announced as detected for a checkpoint that cannot be converted.
    assert "detected head: none" in out


def test_export_command_round_trip(tmp_path, capsys):
    # --keep-pooler: question-answering leaves the pooler out otherwise (tests/convert/test_pooler.py)
    assert main(["convert", ckpt("question-answering"), "--out", str(tmp_path / "pt"), "-q",
                 "--keep-pooler"]) == 0
    assert main(["export", str(tmp_path / "pt"), "--out", str(tmp_path / "tf" / "bert_model.ckpt"), "-q"]) == 0
    assert "bert_model.ckpt.index" in capsys.readouterr().out
    from bertconvert.checkpoint import load_checkpoint
    with np.load(os.path.join(FIXTURES, "variables", "question-answering.npz")) as z:
        reader = load_checkpoint(str(tmp_path / "tf"))
        assert sorted(reader.get_variable_to_shape_map()) == sorted(z.files)
        np.testing.assert_array_equal(reader.get_tensor("cls/squad/output_weights"), z["cls/squad/output_weights"])
    assert main(["export", str(tmp_path / "pt"), "--out", str(tmp_path / "tf" / "bert_model.ckpt"), "-q"]) == 2


def test_legacy_command_writes_one_state_dict_file(tmp_path, capsys):
    out = tmp_path / "pytorch_model.bin"
    assert main(["convert_tf_checkpoint_to_pytorch", ckpt("pretraining-adam"),
                 os.path.join(ckpt("pretraining-adam"), "bert_config.json"), str(out), "-q"]) == 0
    assert os.listdir(tmp_path) == ["pytorch_model.bin"]
    state = torch.load(out, weights_only=True)
    assert state["cls.predictions.decoder.weight"].data_ptr() == state["bert.embeddings.word_embeddings.weight"].data_ptr()
    # An existing directory gets pytorch_model.bin inside; fine-tuned heads work too (0.6.2 crashed).
    (tmp_path / "d").mkdir()
    assert main(["convert_tf_checkpoint_to_pytorch", ckpt("sequence-classification"),
                 os.path.join(ckpt("sequence-classification"), "bert_config.json"), str(tmp_path / "d"), "-q"]) == 0
    assert torch.load(tmp_path / "d" / "pytorch_model.bin", weights_only=True)["classifier.weight"].shape == (3, 32)


@pytest.mark.tf
@pytest.mark.slow
def test_legacy_output_equals_pytorch_pretrained_bert_062(tmp_path):
    """Same keys, same bytes as ppb 0.6.2's own converter on a checkpoint it can handle."""
    pytest.importorskip("tensorflow")
    pytest.importorskip("pytorch_pretrained_bert")
    config = os.path.join(ckpt("pretraining"), "bert_config.json")
    script = ("import sys; from pytorch_pretrained_bert.convert_tf_checkpoint_to_pytorch import "
              "convert_tf_checkpoint_to_pytorch as c; c(*sys.argv[1:])")
    subprocess.run([sys.executable, "-c", script, os.path.join(ckpt("pretraining"), "bert_model.ckpt"),
                    config, str(tmp_path / "ppb.bin")], check=True, capture_output=True, timeout=300,
                   env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
    assert main(["convert_tf_checkpoint_to_pytorch", ckpt("pretraining"), config,
                 str(tmp_path / "ours.bin"), "-q"]) == 0
    theirs = torch.load(tmp_path / "ppb.bin", weights_only=True)
    ours = torch.load(tmp_path / "ours.bin", weights_only=True)
    assert sorted(theirs) == sorted(ours)
    for key in theirs:
        assert torch.equal(theirs[key], ours[key]), key
