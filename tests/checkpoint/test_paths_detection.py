"""Directory detection one level down (checkpoint/paths.py): a case directory holding one
SavedModel or checkpoint in a subdirectory, TF Serving base directories, several candidates."""
import os
import shutil
import subprocess
import sys

import pytest

from bertconvert.checkpoint import load_checkpoint
from bertconvert.checkpoint.paths import resolve_checkpoint, resolve_prefix
from bertconvert.errors import AmbiguousCheckpointError, CheckpointNotFoundError

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BASE = os.path.join(ROOT, "fixtures", "checkpoints", "base")
EXPORT = os.path.join(ROOT, "fixtures", "tf1_serving", "export")
SAVED_MODEL = os.path.join(EXPORT, "1700000000")


def _checkpoint_copy(dst):
    shutil.copytree(BASE, dst)
    return os.path.join(dst, "bert_model.ckpt")


def test_case_directory_with_one_saved_model(tmp_path):
    case = tmp_path / "case"
    case.mkdir()
    shutil.copytree(SAVED_MODEL, case / "saved_model")
    (case / "README.md").write_text("a TF Hub download\n")
    (case / "notes").mkdir()  # a subdirectory without a checkpoint is not a candidate
    prefix, notes = resolve_checkpoint(str(case))
    assert prefix == os.path.join(str(case), "saved_model", "variables", "variables")
    assert len(notes) == 1 and "SavedModel in" in notes[0] and "saved_model" in notes[0]
    with load_checkpoint(str(case)) as reader:
        assert reader.prefix == prefix and reader.resolution_notes == notes


def test_case_directory_with_one_checkpoint_subdirectory(tmp_path):
    prefix = _checkpoint_copy(str(tmp_path / "case" / "ckpt"))
    found, notes = resolve_checkpoint(str(tmp_path / "case"))
    assert found == prefix and "checkpoint in" in notes[0]
    assert resolve_prefix(str(tmp_path / "case")) == prefix


def test_hidden_subdirectories_are_not_candidates(tmp_path):
    prefix = _checkpoint_copy(str(tmp_path / "case" / "model"))
    _checkpoint_copy(str(tmp_path / "case" / ".backup"))
    assert resolve_prefix(str(tmp_path / "case")) == prefix


def test_several_candidates_are_listed(tmp_path):
    case = tmp_path / "case"
    _checkpoint_copy(str(case / "a"))
    shutil.copytree(SAVED_MODEL, case / "b")
    with pytest.raises(AmbiguousCheckpointError) as info:
        resolve_prefix(str(case))
    message = str(info.value)
    assert os.path.join(str(case), "a") in message and os.path.join(str(case), "b") in message
    assert "pass the one you mean" in message


def test_numbered_versions_mixed_with_other_models_are_ambiguous(tmp_path):
    base = tmp_path / "export"
    shutil.copytree(SAVED_MODEL, base / "1")
    shutil.copytree(SAVED_MODEL, base / "2")
    _checkpoint_copy(str(base / "other"))
    with pytest.raises(AmbiguousCheckpointError):
        resolve_prefix(str(base))


def test_serving_base_takes_highest_version_and_says_so():
    prefix, notes = resolve_checkpoint(EXPORT)
    assert prefix == os.path.join(EXPORT, "1700000000", "variables", "variables")
    assert "TF Serving base directory" in notes[0] and "1700000000" in notes[0]
    assert "1699990000" in notes[0]


def test_single_numbered_version_is_a_plain_subdirectory(tmp_path):
    shutil.copytree(SAVED_MODEL, tmp_path / "export" / "5")
    prefix, notes = resolve_checkpoint(str(tmp_path / "export"))
    assert prefix == os.path.join(str(tmp_path / "export"), "5", "variables", "variables")
    assert "SavedModel in" in notes[0]


def test_empty_directory_gives_no_wrong_advice(tmp_path):
    (tmp_path / "docs").mkdir()
    (tmp_path / "x.txt").write_text("x")
    with pytest.raises(CheckpointNotFoundError) as info:
        resolve_prefix(str(tmp_path))
    message = str(info.value)
    assert not isinstance(info.value, AmbiguousCheckpointError)
    assert "neither itself nor in a subdirectory" in message and "x.txt" in message


def test_only_one_level_down(tmp_path):
    shutil.copytree(SAVED_MODEL, tmp_path / "a" / "b" / "saved_model")
    with pytest.raises(CheckpointNotFoundError):
        resolve_prefix(str(tmp_path / "a"))


def test_a_directory_with_its_own_checkpoint_is_not_looked_into(tmp_path):
    prefix = _checkpoint_copy(str(tmp_path / "case"))
    shutil.copytree(SAVED_MODEL, tmp_path / "case" / "saved_model")
    assert resolve_checkpoint(str(tmp_path / "case")) == (prefix, [])


def _cli(*args):
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run([sys.executable, "-m", "bertconvert", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)


def test_cli_converts_case_directory_and_says_which(tmp_path):
    case = tmp_path / "case"
    shutil.copytree(SAVED_MODEL, case / "saved_model")
    (case / "case.json").write_text("{}")
    out = tmp_path / "out"
    proc = _cli("convert", str(case), "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    assert f"using the SavedModel in {os.path.join(str(case), 'saved_model')}" in proc.stdout
    assert (out / "model.safetensors").is_file()
    inspect = _cli("inspect", str(case))
    assert inspect.returncode == 0 and "bert.embeddings.word_embeddings.weight" in inspect.stdout


def test_cli_several_candidates_exit_2_listing_them(tmp_path):
    case = tmp_path / "case"
    shutil.copytree(SAVED_MODEL, case / "first")
    shutil.copytree(SAVED_MODEL, case / "second")
    out = tmp_path / "out"
    proc = _cli("convert", str(case), "--out", str(out))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert "first" in last and "second" in last
    assert "pass the checkpoint prefix instead" not in proc.stderr
    assert not out.exists()


def test_unfinished_estimator_export_is_not_a_version(tmp_path):
    """estimator.export_saved_model writes temp-<time>/ and renames it when complete; one
    left behind by an interrupted export is ignored, as TF Serving ignores it."""
    base = tmp_path / "export"
    shutil.copytree(SAVED_MODEL, base / "1700000000")
    shutil.copytree(SAVED_MODEL, base / "temp-1700000500")
    prefix, notes = resolve_checkpoint(str(base))
    assert prefix == os.path.join(str(base), "1700000000", "variables", "variables")
    assert "TF Serving base directory" in notes[0] and "temp-1700000500" in notes[0]
