"""``verify --json`` / ``--record`` never write onto a file the run reads, ``--text`` is read
with a bound, and inputs that are not regular files are named as such.

Every refusal happens before any work (TensorFlow is never imported for them), so these
tests need no TensorFlow except the ones that run a full check.
"""
import hashlib
import json
import os
import shutil

import pytest

from bertconvert.cli import main
from bertconvert.errors import UnsafeOutputError, VerificationError

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FIXTURE = os.path.join(ROOT, "fixtures", "checkpoints", "next-sentence")


def _digests(*directories):
    """sha256 of every file under ``directories``: what must stay byte for byte the same."""
    out = {}
    for directory in directories:
        for base, _, names in os.walk(directory):
            for name in names:
                path = os.path.join(base, name)
                with open(path, "rb") as f:
                    out[path] = hashlib.sha256(f.read()).hexdigest()
    return out


@pytest.fixture
def work(tmp_path, converted_fixtures):
    """A private copy of the checkpoint and of its converted model directory."""
    ck = tmp_path / "ck"
    shutil.copytree(FIXTURE, ck)
    model = tmp_path / "model"
    shutil.copytree(converted_fixtures["next-sentence"], model)
    text = tmp_path / "text.txt"
    text.write_text("the old house\tmusic was played\n", encoding="utf-8")
    return ck, model, text


def _refused(capsys, args, flag):
    code = main(["verify", *map(str, args), "-q"])
    err = capsys.readouterr().err
    assert code == 2, (args, err)
    assert err.startswith("bertconvert verify: error:") and flag in err, err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    return err


def test_outputs_refuse_every_input_file(work, tmp_path, capsys):
    ck, model, text = work
    before = _digests(ck, model, text)
    prefix = ck / "bert_model.ckpt"
    targets = [ck / "vocab.txt", ck / "bert_config.json", ck / "bert_model.ckpt.index",
               ck / "bert_model.ckpt.data-00000-of-00001",
               model / "vocab.txt", model / "config.json", model / "bert_config.json",
               model / "model.safetensors", model / "conversion.json",
               model / "tokenizer_config.json", text]
    for flag in ("--json", "--record"):
        for target in targets:
            _refused(capsys, [prefix, model, "--text", text, flag, target], flag)
        # The model directory itself, and the checkpoint's directory, are refused too.
        _refused(capsys, [prefix, model, flag, model], flag)
        _refused(capsys, [prefix, model, flag, ck], flag)
    # The checkpoint directory given as CKPT: its state file is an input too.
    (ck / "checkpoint").write_text('model_checkpoint_path: "bert_model.ckpt"\n')
    before[str(ck / "checkpoint")] = hashlib.sha256((ck / "checkpoint").read_bytes()).hexdigest()
    _refused(capsys, [ck, model, "--json", ck / "checkpoint"], "--json")
    assert _digests(ck, model, text) == before


def test_in_memory_run_spares_config_and_vocabulary(work, tmp_path, capsys):
    """Without MODEL_DIR (converted in memory) the checkpoint's config and vocabulary are
    still inputs: ``--record ck/vocab.txt`` used to leave a zip archive there."""
    ck, _, _ = work
    before = _digests(ck)
    for flag, name in (("--record", "vocab.txt"), ("--json", "bert_config.json"),
                       ("--record", "bert_config.json"), ("--json", "vocab.txt")):
        _refused(capsys, [ck / "bert_model.ckpt", flag, ck / name], flag)
        _refused(capsys, [ck / "bert_model.ckpt", "-", flag, ck / name], flag)
    assert _digests(ck) == before


def test_links_to_inputs_are_refused(work, tmp_path, capsys):
    ck, model, _ = work
    before = _digests(ck, model)
    sym = tmp_path / "sym.json"
    sym.symlink_to(ck / "vocab.txt")
    hard = tmp_path / "hard.npz"
    os.link(ck / "bert_config.json", hard)
    linked_dir = tmp_path / "linked-model"
    linked_dir.symlink_to(model)
    _refused(capsys, [ck / "bert_model.ckpt", "--json", sym], "--json")
    _refused(capsys, [ck / "bert_model.ckpt", "--record", hard], "--record")
    _refused(capsys, [ck / "bert_model.ckpt", model, "--json", linked_dir / "config.json"],
             "--json")
    _refused(capsys, [ck / "bert_model.ckpt", model, "--record", linked_dir], "--record")
    assert _digests(ck, model) == before
    assert os.path.islink(sym) and os.path.samefile(hard, ck / "bert_config.json")


def test_reference_and_other_output_are_refused(work, tmp_path, capsys):
    ck, model, _ = work
    golden = tmp_path / "golden.npz"
    golden.write_bytes(b"not really a golden file")
    _refused(capsys, [ck / "bert_model.ckpt", model, "--reference", golden, "--json", golden],
             "--json")
    assert golden.read_bytes() == b"not really a golden file"
    same = tmp_path / "same"
    err = _refused(capsys, [ck / "bert_model.ckpt", model, "--json", same, "--record", same],
                   "--record")
    assert "--json" in err and not same.exists()


def test_error_path_json_never_lands_on_an_input(work, tmp_path, capsys):
    """Exit 2 still writes the JSON error report -- but never onto an input."""
    ck, model, _ = work
    before = _digests(ck)
    # The run would fail (no such model directory) and write its error JSON: refused first.
    _refused(capsys, [ck / "bert_model.ckpt", tmp_path / "absent", "--json", ck / "vocab.txt"],
             "--json")
    assert _digests(ck) == before
    # A harmless path gets the error report, as before.
    report = tmp_path / "error.json"
    assert main(["verify", str(ck / "bert_model.ckpt"), str(tmp_path / "absent"), "-q",
                 "--json", str(report)]) == 2
    assert json.loads(report.read_text())["exit_code"] == 2
    capsys.readouterr()


def test_python_api_refuses_before_any_work(work, tmp_path):
    from bertconvert import verify
    ck, model, text = work
    before = _digests(ck, model, text)
    for kwargs in ({"record": ck / "vocab.txt"}, {"record": model / "config.json"},
                   {"record": text, "text": str(text)}):
        model_dir = None if kwargs.get("record") != model / "config.json" else model
        with pytest.raises(UnsafeOutputError):
            verify(str(ck / "bert_model.ckpt"), model_dir, progress=False, **kwargs)
    with pytest.raises(UnsafeOutputError):
        verify.verify(str(ck / "bert_model.ckpt"), None, progress=False,
                      record=str(ck / "bert_config.json"))
    assert _digests(ck, model, text) == before


@pytest.mark.tf
def test_report_to_json_refuses_the_runs_inputs(work, tmp_path):
    pytest.importorskip("tensorflow", reason="TensorFlow is needed for the reference")
    from bertconvert.verify import verify
    ck, model, _ = work
    before = _digests(ck, model)
    report = verify(str(ck / "bert_model.ckpt"), None, progress=False)
    assert report.passed
    for target in (ck / "vocab.txt", ck / "bert_config.json", ck / "bert_model.ckpt.index"):
        with pytest.raises(UnsafeOutputError):
            report.to_json(target)
    assert _digests(ck, model) == before
    report.to_json(tmp_path / "fine.json")  # anywhere else is fine
    assert json.loads((tmp_path / "fine.json").read_text())["passed"] is True


# --- --text and non-regular inputs -------------------------------------------------------

def test_text_from_a_device_or_fifo_is_a_named_error(work, tmp_path, capsys):
    ck, model, _ = work
    err = _refused(capsys, [ck / "bert_model.ckpt", model, "--text", "/dev/zero"], "--text")
    assert "/dev/zero is a character device, not a regular file" in err
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    err = _refused(capsys, [ck / "bert_model.ckpt", model, "--text", fifo], "--text")
    assert "is a FIFO (named pipe), not a regular file" in err


def test_text_over_the_cap_is_a_named_error(work, tmp_path):
    from bertconvert.verify.inputs import MAX_TEXT_BYTES, read_text_file
    big = tmp_path / "big.txt"
    with open(big, "wb") as f:  # sparse: costs no disk
        f.truncate(MAX_TEXT_BYTES + 1)
    with pytest.raises(VerificationError, match=f"more than the {MAX_TEXT_BYTES} bytes"):
        read_text_file(str(big), "base")
    ok = tmp_path / "ok.txt"
    ok.write_text("one sentence\n" * 10, encoding="utf-8")
    assert read_text_file(str(ok), "base") == [("one sentence",)] * 10


def test_golden_file_that_is_a_device_says_so(work, capsys):
    ck, model, _ = work
    err = _refused(capsys, [ck / "bert_model.ckpt", model, "--reference", "/dev/null"],
                   "golden file")
    assert "/dev/null is a character device, not a regular file" in err
    assert "does not exist" not in err


def test_fifo_config_or_vocabulary_says_not_a_regular_file(work, tmp_path, capsys):
    ck, model, _ = work
    os.remove(model / "config.json")
    os.mkfifo(model / "config.json")
    err = _refused(capsys, [ck / "bert_model.ckpt", model], "config.json")
    assert "is a FIFO (named pipe), not a regular file" in err and "no model config" not in err
    os.remove(ck / "vocab.txt")
    os.mkfifo(ck / "vocab.txt")
    err = _refused(capsys, [ck / "bert_model.ckpt"], "vocab.txt")
    assert "vocabulary file" in err and "not a regular file" in err


def test_saved_model_files_are_inputs(tmp_path, capsys):
    """A SavedModel directory as CKPT: its saved_model.pb, fingerprint, variables and
    assets/vocab.txt are all read (or may be), so none of them may be an output."""
    saved = tmp_path / "saved"
    (saved / "variables").mkdir(parents=True)
    (saved / "assets").mkdir()
    shutil.copy(os.path.join(FIXTURE, "bert_model.ckpt.index"),
                saved / "variables" / "variables.index")
    shutil.copy(os.path.join(FIXTURE, "bert_model.ckpt.data-00000-of-00001"),
                saved / "variables" / "variables.data-00000-of-00001")
    (saved / "saved_model.pb").write_bytes(b"\x08\x01")
    (saved / "fingerprint.pb").write_bytes(b"\x08\x02")
    shutil.copy(os.path.join(FIXTURE, "vocab.txt"), saved / "assets" / "vocab.txt")
    shutil.copy(os.path.join(FIXTURE, "bert_config.json"), saved / "bert_config.json")
    before = _digests(saved)
    for target in (saved / "saved_model.pb", saved / "fingerprint.pb",
                   saved / "assets" / "vocab.txt", saved / "bert_config.json",
                   saved / "variables" / "variables.index",
                   saved / "variables" / "variables.data-00000-of-00001"):
        _refused(capsys, [saved, "--json", target], "--json")
        _refused(capsys, [saved / "saved_model.pb", "--record", target], "--record")
    _refused(capsys, [saved, "--json", saved], "--json")
    assert _digests(saved) == before
