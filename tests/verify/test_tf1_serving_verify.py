"""``bertconvert verify`` over TF1 serving exports (fixtures/tf1_serving): the same directories
``convert`` accepts, the TensorFlow reference computing them as TF1 (exact GELU), its config
read off the export's own tensors and graph (with TensorFlow's protobuf classes)."""
import os
import shutil
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
EXPORT = os.path.join(ROOT, "fixtures", "tf1_serving", "export")
NEWEST = "1700000000"
VOCAB = "".join(f"[unused{i}]\n" for i in range(94)) + "[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\n"

pytestmark = pytest.mark.tf


@pytest.fixture(autouse=True)
def _tf():
    pytest.importorskip("tensorflow", reason="TensorFlow is needed for the reference")


def cli(*args):
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run([sys.executable, "-m", "bertconvert", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)


def test_verify_versioned_directory_against_its_conversion(tmp_path):
    vocab = tmp_path / "vocab.txt"
    vocab.write_text(VOCAB)
    out = tmp_path / "model"
    proc = cli("convert", EXPORT, "--vocab", str(vocab), "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    proc = cli("verify", EXPORT, str(out))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"{NEWEST}/variables/variables (SavedModel)" in proc.stdout
    assert "gelu:       exact" in proc.stdout
    assert "PASS" in proc.stdout


def test_verify_export_without_any_vocabulary(tmp_path):
    """A TF Serving export has no vocab.txt, and a conversion of it none either: verify
    checks parity on a deterministic batch of pseudo-random ids instead of refusing."""
    out = tmp_path / "model"
    assert cli("convert", EXPORT, "--out", str(out)).returncode == 0
    proc = cli("verify", EXPORT, str(out))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "pseudo-random token ids" in proc.stdout and "PASS" in proc.stdout
    text = tmp_path / "t.txt"
    text.write_text("a sentence\n")
    proc = cli("verify", EXPORT, str(out), "--text", str(text))  # text needs a vocabulary
    assert proc.returncode == 2 and "vocab.txt" in proc.stderr


def test_synthetic_inputs_are_deterministic_and_mixed():
    from bertconvert.verify.inputs import synthetic_inputs
    a, b = synthetic_inputs(99, max_position_embeddings=24), synthetic_inputs(99, max_position_embeddings=24)
    assert (a.input_ids == b.input_ids).all() and a.input_ids.shape == (6, 24)
    assert a.input_ids.max() < 99 and len(set(a.attention_mask.sum(-1).tolist())) > 1
    assert a.token_type_ids.max() == 1 and (a.input_ids[a.attention_mask == 0] == 0).all()
    mc = synthetic_inputs(99, head="multiple-choice", max_position_embeddings=24)
    assert mc.input_ids.shape == (6, 3, 24)


def test_verify_in_memory_reads_the_head_count_from_the_graph(tmp_path):
    export = tmp_path / "export"
    shutil.copytree(EXPORT, export)
    (export / NEWEST / "assets").mkdir()
    (export / NEWEST / "assets" / "vocab.txt").write_text(VOCAB)
    proc = cli("verify", str(export))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "PASS" in proc.stdout and "exact" in proc.stdout


def test_reference_config_from_tensors_and_graph(tmp_path):
    from bertconvert.errors import VerificationError
    from bertconvert.verify.tf_side import TFReference
    ref = TFReference(EXPORT)
    assert ref.layout == "tf1" and ref.saved_model and ref.gelu == "exact"
    assert ref.config_file is None
    assert (ref.config["num_attention_heads"], ref.config["hidden_size"],
            ref.config["num_hidden_layers"]) == (4, 32, 2)
    version = tmp_path / "v"
    shutil.copytree(os.path.join(EXPORT, NEWEST), version)
    (version / "saved_model.pb").write_bytes(b"")
    with pytest.raises(VerificationError, match="config"):
        TFReference(str(version))
