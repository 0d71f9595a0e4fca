"""`--overwrite` with a KerasHub preset as the source follows the same rule as a TF
checkpoint: only a previous model directory is replaced; the current directory and a
directory of other files are refused, every byte kept."""
import os

from .test_overwrite import ROOT, cli, refused, snapshot

PRESET = os.path.join(ROOT, "fixtures", "keras_hub", "classifier")


def test_a_preset_never_replaces_the_current_directory(tmp_path):
    proj = tmp_path / "proj"
    proj.mkdir()
    (proj / "notes.txt").write_text("mine\n")
    before = snapshot(tmp_path)
    code, _, err = cli("convert", PRESET, "--out", ".", "--overwrite", cwd=proj)
    refused(code, err, "--out . is the current directory", "nothing was changed")
    assert snapshot(tmp_path) == before


def test_a_preset_never_replaces_a_directory_of_other_files(tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "keep.txt").write_text("keep\n")
    before = snapshot(tmp_path)
    code, _, err = cli("convert", PRESET, "--out", "data", "--overwrite", cwd=tmp_path)
    refused(code, err, "--out data holds files a conversion does not write: keep.txt")
    assert snapshot(tmp_path) == before


def test_a_preset_replaces_a_previous_model_directory(tmp_path):
    code, _, err = cli("convert", PRESET, "--out", "model", cwd=tmp_path)
    assert code == 0, err
    code, _, err = cli("convert", PRESET, "--out", "model", cwd=tmp_path)
    refused(code, err, "--out model already exists", "--overwrite")
    code, _, err = cli("convert", PRESET, "--out", "model", "--overwrite", "--dtype", "float16",
                       cwd=tmp_path)
    assert code == 0, err
    assert '"dtype": "float16"' in (tmp_path / "model" / "conversion.json").read_text()


def test_a_failed_write_is_named_by_its_cause_as_for_a_checkpoint(tmp_path):
    (tmp_path / "file.txt").write_text("a file\n")
    for source in (PRESET, os.path.join(ROOT, "fixtures", "checkpoints", "base")):
        code, _, err = cli("convert", source, "--out", "file.txt/sub/model", cwd=tmp_path)
        refused(code, err, "a part of its path is not a directory", "nothing was published")
        assert "Free space" not in err and "disk" not in err, err
    assert os.listdir(tmp_path) == ["file.txt"]


def test_a_preset_conversion_records_each_input_sha256(tmp_path):
    import hashlib
    import json

    code, _, err = cli("convert", PRESET, "--out", "model", cwd=tmp_path)
    assert code == 0, err
    entries = json.loads((tmp_path / "model" / "conversion.json").read_text())["source_files"]
    paths = [e["path"] for e in entries]
    assert any(p.endswith(".weights.h5") for p in paths) and any(
        p.endswith("vocabulary.txt") for p in paths)
    for entry in entries:
        with open(entry["path"], "rb") as f:
            data = f.read()
        assert (entry["size"], entry["sha256"]) == (len(data), hashlib.sha256(data).hexdigest())
