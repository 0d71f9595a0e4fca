"""The weights stage of ``verify`` and the input errors it reports before TensorFlow runs:
tensors compared bit for bit (checkpoint or golden-file digests), a model directory from
another checkpoint, a --head the checkpoint lacks, corrupt checkpoints (exit 2, one line)."""
import json
import os
import shutil

import numpy as np
import pytest
import torch

from bertconvert.checkpoint import load_checkpoint
from bertconvert.checkpoint.proto import encode_entry
from bertconvert.checkpoint.table import build_table, read_table
from bertconvert.cli import main
from bertconvert.convert.run import convert_checkpoint
from bertconvert.errors import (ChecksumMismatchError, HeadNotInCheckpointError,
                                ModelSourceMismatchError, TFReferenceError)
from bertconvert.verify.model_source import check_model_source, heads_in_checkpoint
from bertconvert.verify.weights import compare_weights, plan_for_directory

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FIXTURES = os.path.join(ROOT, "fixtures", "checkpoints")
#: The tensor of the issue: a uniform shift of it is removed exactly by the LayerNorm after it.
SHIFTED = "bert.encoder.layer.3.attention.output.dense.weight"


def ckpt(name):
    return os.path.join(FIXTURES, name)


def edited(src, dst, key, edit, name="model.safetensors"):
    """A copy of model directory ``src`` whose tensor ``key`` went through ``edit``."""
    from safetensors.torch import load_file, save_file
    shutil.copytree(src, dst)
    path = os.path.join(dst, name)
    state = load_file(path)
    state[key] = edit(state[key]).contiguous()
    save_file(state, path, metadata={"format": "pt"})
    return str(dst)


def one_error_line(err):
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("bertconvert verify: error: "), err
    assert "Traceback" not in err
    return lines[0]


# --- the comparison itself (no TensorFlow) -----------------------------------------------------
def test_faithful_directory_is_bit_exact_and_a_changed_tensor_is_named(converted_fixtures,
                                                                       tmp_path):
    model_dir = converted_fixtures["pretraining"]
    with load_checkpoint(ckpt("pretraining"), mmap=False) as reader:
        result, _ = compare_weights(reader, model_dir)
        planned = len(plan_for_directory(reader, model_dir).tensors)
    assert result.passed and result.tensors == planned and result.differing_count == 0
    bad = edited(model_dir, tmp_path / "bad", "bert.pooler.dense.bias", _one_ulp)
    with load_checkpoint(ckpt("pretraining"), mmap=False) as reader:
        result, _ = compare_weights(reader, bad)
    assert not result.passed and result.differing_count == 1
    assert result.first_differing == "bert.pooler.dense.bias"
    assert result.differing[0]["name"] == "bert/pooler/dense/bias"
    assert "1 of 32 float32 values differ" in result.differing[0]["reason"]
    assert 0 < result.max_abs < 1e-6  # one ulp of a small bias


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_reduced_precision_directories_compare_after_the_converters_cast(tmp_path, dtype):
    out = tmp_path / dtype
    convert_checkpoint(ckpt("pretraining"), out, dtype=dtype, format="both", progress=False)
    with load_checkpoint(ckpt("pretraining"), mmap=False) as reader:
        result, _ = compare_weights(reader, str(out))
    assert result.passed, result.note
    os.remove(out / "model.safetensors")  # pytorch_model.bin: the tied decoder alias too
    with load_checkpoint(ckpt("pretraining"), mmap=False) as reader:
        bin_result, _ = compare_weights(reader, str(out))
    assert bin_result.passed and bin_result.tensors == result.tensors + 1
    # One unit in the last place of one element is a difference.
    convert_checkpoint(ckpt("pretraining"), tmp_path / "again", dtype=dtype, progress=False)
    bad = edited(tmp_path / "again", tmp_path / "bad", SHIFTED, _one_ulp)
    with load_checkpoint(ckpt("pretraining"), mmap=False) as reader:
        result, _ = compare_weights(reader, bad)
    assert result.first_differing == SHIFTED and f"1 of 1024 {dtype} values" in \
        result.differing[0]["reason"]


def _one_ulp(t):
    """``t`` with element 17 moved to the next representable value (its bits + 1)."""
    t = t.clone()
    bits = t.view(torch.int16 if t.element_size() == 2 else torch.int32)
    bits.view(-1)[17] += 1
    return t


def test_model_directory_of_another_checkpoint_is_named(converted_fixtures):
    with pytest.raises(ModelSourceMismatchError, match="converted from a different checkpoint"
                       ".*next-sentence.*pretraining") as info:
        check_model_source(converted_fixtures["next-sentence"],
                           load_checkpoint(ckpt("pretraining")).prefix, ckpt("pretraining"))
    assert info.value.exit_code == 2
    assert check_model_source(converted_fixtures["pretraining"],
                              load_checkpoint(ckpt("pretraining")).prefix,
                              ckpt("pretraining")) == []


def test_heads_in_checkpoint():
    with load_checkpoint(ckpt("next-sentence")) as reader:
        assert heads_in_checkpoint(reader) == ["base", "next-sentence"]
    with load_checkpoint(ckpt("sequence-classification")) as reader:  # 3 labels: not MC
        assert heads_in_checkpoint(reader) == ["base", "sequence-classification",
                                               "token-classification"]


# --- through the CLI (TensorFlow for the reference) -------------------------------------------
@pytest.mark.tf
def test_uniform_shift_hidden_by_layernorm_fails_at_the_weights(tf, converted_fixtures, tmp_path,
                                                                capsys):
    # +1e-2 on every element shifts the attention block's output uniformly; the LayerNorm
    # right after it removes that exactly, so every output stage passes. Only the weights
    # stage can see it.
    bad = edited(converted_fixtures["next-sentence"], tmp_path / "bad", SHIFTED,
                 lambda t: t + 1e-2)
    report = tmp_path / "report.json"
    code = main(["verify", ckpt("next-sentence"), bad, "-q", "--json", str(report)])
    captured = capsys.readouterr()
    assert code == 1
    table = captured.out.splitlines()
    header = next(i for i, line in enumerate(table) if line.startswith("stage"))
    assert table[header + 1].startswith("weights") and "FAIL" in table[header + 1]
    assert SHIFTED in table[header + 1] and "1 of 89 tensors differ" in table[header + 1]
    assert SHIFTED in captured.err
    data = json.loads(report.read_text())
    assert data["passed"] is False and data["first_failure"] == "weights"
    assert data["first_output_failure"] is None  # the outputs really cannot see it
    assert data["first_differing_tensor"] == SHIFTED and data["differing_tensors"] == 1
    assert data["weights"]["differing"][0]["name"] == \
        "bert/encoder/layer_3/attention/output/dense/kernel"
    # The faithful directory passes, its weights bit-exact.
    assert main(["verify", ckpt("next-sentence"), converted_fixtures["next-sentence"], "-q",
                 "--json", str(report)]) == 0
    data = json.loads(report.read_text())
    assert data["weights"]["passed"] and data["weights"]["tensors"] == 89


@pytest.mark.tf
@pytest.mark.slow
def test_golden_file_digests(tf, converted_fixtures, tmp_path, capsys):
    good = converted_fixtures["next-sentence"]
    golden = tmp_path / "golden.npz"
    assert main(["verify", ckpt("next-sentence"), good, "-q", "--record", str(golden)]) == 0
    bad = edited(good, tmp_path / "bad", SHIFTED, lambda t: t + 1e-2)
    capsys.readouterr()
    # No checkpoint here: the digests stand in for it.
    assert main(["verify", str(tmp_path / "absent"), good, "-q", "--reference", str(golden)]) == 0
    assert "bit-exact with the digests" in capsys.readouterr().out
    assert main(["verify", str(tmp_path / "absent"), bad, "-q", "--reference", str(golden)]) == 1
    out = capsys.readouterr().out
    assert f"first: {SHIFTED}" in out and "sha256" in out
    # A float16 directory is checked against the float16 digests.
    half = tmp_path / "half"
    convert_checkpoint(ckpt("next-sentence"), half, dtype="float16", progress=False)
    assert main(["verify", str(tmp_path / "absent"), str(half), "-q", "--dtype", "float16",
                 "--reference", str(golden)]) == 0
    assert "89 tensors bit-exact with the digests" in capsys.readouterr().out
    # An older golden file without digests: the stage is skipped with a note, not failed.
    with np.load(golden, allow_pickle=False) as data:
        arrays = {k: data[k] for k in data.files}
    meta = json.loads(str(arrays["meta"]))
    del meta["weights"]
    arrays["meta"] = np.array(json.dumps(meta))
    old = tmp_path / "old.npz"
    np.savez_compressed(old, **arrays)
    assert main(["verify", str(tmp_path / "absent"), bad, "-q", "--reference", str(old)]) == 0
    assert "holds no weight digests" in capsys.readouterr().out


@pytest.mark.tf
def test_head_the_checkpoint_lacks_exits_2(tf, converted_fixtures, capsys):
    for args in ([converted_fixtures["next-sentence"]], []):
        code = main(["verify", ckpt("next-sentence"), *args, "-q", "--head", "question-answering"])
        line = one_error_line(capsys.readouterr().err)
        assert code == 2
        assert "holds no question-answering head" in line and "base, next-sentence" in line


@pytest.mark.tf
def test_model_directory_from_another_checkpoint_exits_2(tf, converted_fixtures, tmp_path,
                                                         capsys):
    report = tmp_path / "report.json"
    code = main(["verify", ckpt("pretraining"), converted_fixtures["next-sentence"], "-q",
                 "--json", str(report)])
    line = one_error_line(capsys.readouterr().err)
    assert code == 2 and "converted from a different checkpoint" in line
    assert os.path.join("next-sentence", "bert_model.ckpt.index") in line
    assert os.path.join("pretraining", "bert_model.ckpt.index") in line
    assert json.loads(report.read_text())["error_type"] == "ModelSourceMismatchError"


# --- corrupt checkpoints: exit 2, one line, before TensorFlow ------------------------------------
def _copy(tmp_path, case):
    shutil.copytree(ckpt("next-sentence"), tmp_path / case)
    return str(tmp_path / case / "bert_model.ckpt")


def _flip_byte(prefix):
    entry = load_checkpoint(prefix).entry("bert/encoder/layer_2/attention/self/key/kernel")
    with open(prefix + ".data-00000-of-00001", "r+b") as f:
        f.seek(entry.offset + 10)
        byte = f.read(1)[0]
        f.seek(entry.offset + 10)
        f.write(bytes([byte ^ 0x10]))


def _truncate(prefix):
    shard = prefix + ".data-00000-of-00001"
    os.truncate(shard, os.path.getsize(shard) // 2)


def _remove_shard(prefix):
    os.remove(prefix + ".data-00000-of-00001")


def _absurd_shape(prefix):
    entry = load_checkpoint(prefix).entry("bert/pooler/dense/bias")
    bad = encode_entry(1, (2 ** 40, 2 ** 20), 0, entry.offset, entry.size, entry.crc32c)
    with open(prefix + ".index", "rb") as f:
        items = read_table(f.read())
    with open(prefix + ".index", "wb") as f:
        f.write(build_table([(k, bad if k == b"bert/pooler/dense/bias" else v)
                             for k, v in items]))


CORRUPTIONS = {
    "flipped byte": (_flip_byte, "fails its crc32c check"),
    "truncated shard": (_truncate, "truncated"),
    "missing shard": (_remove_shard, "missing data shard"),
    "absurd shape": (_absurd_shape, "the index is corrupt"),
}


@pytest.mark.tf
@pytest.mark.parametrize("case", list(CORRUPTIONS))
def test_corrupt_checkpoint_exits_2_in_one_line(tf, converted_fixtures, tmp_path, capsys, case):
    corrupt, expected = CORRUPTIONS[case]
    prefix = _copy(tmp_path, case.replace(" ", "-"))
    corrupt(prefix)
    for model_dir in ([converted_fixtures["next-sentence"]], []):  # and converted in memory
        code = main(["verify", prefix, *model_dir, "-q"])
        line = one_error_line(capsys.readouterr().err)
        assert code == 2 and expected in line, line


@pytest.mark.tf
@pytest.mark.parametrize("case", ["flipped byte", "truncated shard"])
def test_tensorflow_errors_reading_the_reference_are_input_errors(tf, tmp_path, case):
    # Our reader catches these first; should TensorFlow still fail on a checkpoint (a damage
    # our checks do not look for), its error is an input error in one line too, not a
    # traceback with the mismatch exit code. TF raises OpError for the first, a bare
    # IndexError ("Read less bytes than requested") for the second.
    from bertconvert.verify import _reference_outputs
    from bertconvert.verify.inputs import load_inputs
    corrupt, _ = CORRUPTIONS[case]
    prefix = _copy(tmp_path, "tf-" + case.replace(" ", "-"))
    corrupt(prefix)
    inputs = load_inputs(os.path.join(ckpt("next-sentence"), "vocab.txt"), "next-sentence",
                         max_position_embeddings=64)
    with pytest.raises(TFReferenceError, match="TensorFlow cannot read checkpoint") as info:
        _reference_outputs(prefix, None, inputs, "next-sentence", "float32")
    assert info.value.exit_code == 2 and "\n" not in str(info.value)


def test_library_raises_named_errors_before_tensorflow(converted_fixtures, tmp_path):
    from bertconvert.verify import verify
    prefix = _copy(tmp_path, "flip")
    _flip_byte(prefix)
    with pytest.raises(ChecksumMismatchError):
        verify(prefix, converted_fixtures["next-sentence"], progress=False)
    with pytest.raises(HeadNotInCheckpointError):
        verify(ckpt("next-sentence"), None, head="masked-lm", progress=False)


@pytest.mark.tf
@pytest.mark.slow
def test_digests_follow_the_recorded_head(tf, converted_fixtures, tmp_path):
    # A pre-training directory checked as masked-lm: the golden file's digests are those of
    # the masked-lm keys, so a masked-lm directory verifies against it without "missing"
    # NSP tensors.
    from bertconvert.verify import verify
    golden = str(tmp_path / "mlm.npz")
    recorded = verify(ckpt("pretraining"), converted_fixtures["pretraining"], head="masked-lm",
                      record=golden, progress=False)
    assert recorded.passed and recorded.weights.tensors == 94, recorded.format_table()
    mlm = tmp_path / "mlm"
    convert_checkpoint(ckpt("pretraining"), mlm, head="masked-lm", progress=False)
    report = verify(str(tmp_path / "absent"), str(mlm), reference=golden, progress=False)
    assert report.passed and report.weights.differing_count == 0, report.format_table()
    # no cls.seq_relationship.{weight,bias}, and no pooler: masked-lm conversions leave it out,
    # so its recorded digests are not demanded (a note says so)
    assert report.weights.tensors == 90
    assert any("pooler not compared" in n for n in report.weights.notes)


def test_corrupt_checkpoint_from_a_shell_is_one_line_on_stderr(converted_fixtures, tmp_path):
    # As CI runs it: a separate process, stderr not a terminal, no -q. No progress bar
    # fragments, no traceback, TensorFlow never imported.
    import subprocess
    import sys
    prefix = _copy(tmp_path, "flip")
    _flip_byte(prefix)
    proc = subprocess.run([sys.executable, "-m", "bertconvert", "verify", prefix,
                           converted_fixtures["next-sentence"]], capture_output=True, text=True,
                          cwd=ROOT, timeout=240)
    assert proc.returncode == 2
    assert "fails its crc32c check" in one_error_line(proc.stderr) and proc.stdout == ""
