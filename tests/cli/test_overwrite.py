"""`--overwrite` replaces only what bertconvert wrote before, run from real working directories.

Each case runs the command line in a subprocess whose working directory (and HOME) the test
chooses, then checks the exit status, the one-line message and that every byte, entry and
link under the directory at stake is as it was. A previous model directory -- and only that
-- is replaced. The same rule holds for `export --out` and the legacy command's output.
"""
import errno
import hashlib
import os
import subprocess
import sys

import pytest

from bertconvert.convert.destination import write_error
from bertconvert.errors import OutputExistsError, OutputNotReplaceableError, OutputWriteError

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CKPT = os.path.join(ROOT, "fixtures", "checkpoints", "base")
MODEL_FILES = ["bert_config.json", "config.json", "conversion.json", "model.safetensors",
               "tokenizer_config.json", "vocab.txt"]


def cli(*args, cwd, home=None):
    """Run ``bertconvert -q ARGS`` in ``cwd``; (exit status, stdout, stderr)."""
    env = dict(os.environ, PYTHONPATH=ROOT)
    if home is not None:
        env["HOME"] = str(home)
    proc = subprocess.run([sys.executable, "-m", "bertconvert", "-q", *map(str, args)],
                          cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    return proc.returncode, proc.stdout, proc.stderr


def snapshot(top):
    """Every entry under ``top`` (not following links): kind, link target or sha256."""
    out = {}
    for root, dirs, files in os.walk(top):
        for name in dirs + files:
            path = os.path.join(root, name)
            rel = os.path.relpath(path, top)
            if os.path.islink(path):
                out[rel] = ("link", os.readlink(path))
            elif os.path.isdir(path):
                out[rel] = ("dir",)
            else:
                with open(path, "rb") as f:
                    out[rel] = ("file", hashlib.sha256(f.read()).hexdigest())
    return out


def refused(code, err, *fragments):
    assert code == 2, err
    assert err.startswith("bertconvert ") and "error: " in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1, err
    for fragment in fragments:
        assert fragment in err, err
    return err


@pytest.fixture
def project(tmp_path):
    """tmp/proj holding notes, a .ssh/ directory, a converted model and a sub directory."""
    proj = tmp_path / "proj"
    (proj / "sub").mkdir(parents=True)
    (proj / ".ssh").mkdir()
    (proj / ".ssh" / "id_ed25519").write_text("secret\n")
    (proj / "notes.txt").write_text("mine\n")
    (proj / "sub" / "draft.txt").write_text("draft\n")
    code, _, err = cli("convert", CKPT, "--out", "model", cwd=proj)
    assert code == 0, err
    return proj


@pytest.mark.parametrize("overwrite", [["--overwrite"], []])
def test_the_current_directory_is_never_replaced(project, overwrite):
    before = snapshot(project.parent)
    code, _, err = cli("convert", CKPT, "--out", ".", *overwrite, cwd=project)
    refused(code, err, "--out . is the current directory", "nothing was changed")
    assert snapshot(project.parent) == before


@pytest.mark.parametrize("out", ["..", "../..", "../../.."])
def test_no_directory_above_the_current_one_is_replaced(project, out):
    cwd = project / "sub" / "deeper"
    cwd.mkdir()
    before = snapshot(project.parent)
    code, _, err = cli("convert", CKPT, "--out", out, "--overwrite", cwd=cwd)
    refused(code, err, f"--out {out} is a directory above the current directory")
    assert snapshot(project.parent) == before
    assert (project / "notes.txt").read_text() == "mine\n" and (project / "sub").is_dir()


def test_an_empty_current_directory_is_still_refused(tmp_path):
    """Nothing would be lost, but a run must not replace the directory the shell stands in."""
    (tmp_path / "empty").mkdir()
    code, _, err = cli("convert", CKPT, "--out", ".", "--overwrite", cwd=tmp_path / "empty")
    refused(code, err, "is the current directory")
    assert os.listdir(tmp_path / "empty") == []


def test_the_home_directory_is_never_replaced(tmp_path):
    home = tmp_path / "home" / "user"
    home.mkdir(parents=True)  # empty: refused for what it is, not for what it holds
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    code, _, err = cli("convert", CKPT, "--out", home, "--overwrite", cwd=elsewhere, home=home)
    refused(code, err, f"--out {home} is your home directory")
    code, _, err = cli("convert", CKPT, "--out", tmp_path / "home", "--overwrite",
                       cwd=elsewhere, home=home)
    refused(code, err, "is a directory above your home directory")
    assert os.listdir(home) == [] and os.listdir(tmp_path / "home") == ["user"]


def test_the_root_directory_is_never_replaced(tmp_path):
    code, _, err = cli("convert", CKPT, "--out", "/", "--overwrite", cwd=tmp_path)
    refused(code, err, "--out /")
    assert os.path.isdir("/tmp") and os.path.isfile(os.path.join(CKPT, "bert_model.ckpt.index"))


def test_a_regular_file_is_not_replaced_by_a_directory(tmp_path):
    (tmp_path / "report.txt").write_text("quarterly\n")
    code, _, err = cli("convert", CKPT, "--out", "report.txt", "--overwrite", cwd=tmp_path)
    refused(code, err, "--out report.txt is a regular file", "not a previous model directory")
    assert (tmp_path / "report.txt").read_text() == "quarterly\n"


def test_a_directory_of_other_files_is_refused_naming_them(project):
    before = snapshot(project.parent)
    code, _, err = cli("convert", CKPT, "--out", "sub", "--overwrite", cwd=project)
    refused(code, err, "--out sub holds files a conversion does not write: draft.txt")
    code, _, err = cli("convert", CKPT, "--out", project, "--overwrite", cwd=project.parent)
    refused(code, err, ".ssh/", "model/", "notes.txt")  # names the entries, dirs with a /
    assert snapshot(project.parent) == before


def test_a_long_listing_is_cut_short(tmp_path):
    out = tmp_path / "many"
    out.mkdir()
    for i in range(12):
        (out / f"f{i:02}.txt").write_text("x")
    code, _, err = cli("convert", CKPT, "--out", "many", "--overwrite", cwd=tmp_path)
    refused(code, err, "f00.txt, f01.txt, f02.txt, f03.txt, f04.txt ... (7 more)")
    assert len(os.listdir(out)) == 12


def test_a_model_directory_with_something_added_is_refused(project):
    (project / "model" / "README.md").write_text("my notes about this model\n")
    before = snapshot(project)
    code, _, err = cli("convert", CKPT, "--out", "model", "--overwrite", cwd=project)
    refused(code, err, "README.md")
    assert snapshot(project) == before


def test_a_directory_of_model_file_names_without_a_model_is_refused(tmp_path):
    """Only a vocabulary: every name is one a conversion writes, but it is no model."""
    out = tmp_path / "words"
    out.mkdir()
    (out / "vocab.txt").write_text("[PAD]\nhello\n")
    code, _, err = cli("convert", CKPT, "--out", "words", "--overwrite", cwd=tmp_path)
    refused(code, err, "is not a previous model directory", "vocab.txt")
    assert os.listdir(out) == ["vocab.txt"]
    # A directory where a model file name is a directory is not ours either.
    (out / "vocab.txt").unlink()
    (out / "config.json").mkdir()
    (out / "model.safetensors").write_bytes(b"x")
    code, _, err = cli("convert", CKPT, "--out", "words", "--overwrite", cwd=tmp_path)
    refused(code, err, "config.json/")


def test_a_symlink_is_refused_and_its_target_kept(project):
    (project / "link").symlink_to("sub", target_is_directory=True)
    (project / "model-link").symlink_to("model", target_is_directory=True)
    before = snapshot(project)
    for link in ("link", "model-link"):  # to other files, and even to a previous model
        code, _, err = cli("convert", CKPT, "--out", link, "--overwrite", cwd=project)
        refused(code, err, f"--out {link} is a symbolic link", "what it points to")
    assert snapshot(project) == before
    (project / "dangling").symlink_to("nowhere")
    code, _, err = cli("convert", CKPT, "--out", "dangling", "--overwrite", cwd=project)
    refused(code, err, "symbolic link")
    assert os.readlink(project / "dangling") == "nowhere"


def test_a_previous_model_directory_is_replaced(project):
    model = project / "model"
    (model / "model.safetensors").write_bytes(b"stale weights")
    code, _, err = cli("convert", CKPT, "--out", "model", cwd=project)
    refused(code, err, "already exists", "--overwrite")  # still needs the flag
    code, out, err = cli("convert", CKPT, "--out", "model", "--overwrite", cwd=project)
    assert code == 0, err
    assert "written     model:" in out
    assert sorted(os.listdir(model)) == MODEL_FILES
    assert (model / "model.safetensors").read_bytes() != b"stale weights"
    assert not [e for e in os.listdir(project) if e.startswith(".model.")]  # no temp left
    assert (project / "notes.txt").read_text() == "mine\n"


def test_a_model_directory_without_a_record_and_an_empty_directory_are_replaced(tmp_path):
    """config + weights (as save_pretrained writes them) is a model; an empty directory holds
    nothing to lose."""
    code, _, err = cli("convert", CKPT, "--out", "m", cwd=tmp_path)
    assert code == 0, err
    for name in ("conversion.json", "vocab.txt", "tokenizer_config.json", "bert_config.json"):
        os.unlink(tmp_path / "m" / name)
    (tmp_path / "empty").mkdir()
    for out in ("m", "empty"):
        code, _, err = cli("convert", CKPT, "--out", out, "--overwrite", cwd=tmp_path)
        assert code == 0, err
        assert sorted(os.listdir(tmp_path / out)) == MODEL_FILES


# --- export ----------------------------------------------------------------------------------
@pytest.fixture
def model(tmp_path):
    code, _, err = cli("convert", CKPT, "--out", "m", cwd=tmp_path)
    assert code == 0, err
    return tmp_path / "m"


@pytest.mark.parametrize("prefix", [".", "..", "d", "d/", "d/."])
def test_export_refuses_a_prefix_that_names_no_file(model, prefix):
    work = model.parent / "a" / "w"  # ".." holds no input: refused for naming no file
    (work / "d").mkdir(parents=True)
    before = snapshot(model.parent)
    code, _, err = cli("export", "../../m", "--out", prefix, "--overwrite", cwd=work)
    refused(code, err, f"--out {prefix} ", "bert_model.ckpt")
    assert snapshot(model.parent) == before  # no "..index" anywhere


def test_export_side_file_messages_name_the_prefix_the_user_gave(model):
    work = model.parent
    (work / "out" / "x").mkdir(parents=True)
    (work / "out" / "x" / "vocab.txt").write_text("not the model's vocabulary\n")
    code, _, err = cli("export", "m", "--out", "out/x/bert_model.ckpt", cwd=work)
    refused(code, err, "--out out/x/bert_model.ckpt", "side file out/x/vocab.txt", "--overwrite")
    assert "--out out/x/vocab.txt" not in err
    assert os.listdir(work / "out" / "x") == ["vocab.txt"]
    # A prefix inside the model directory: its side file would be the model's own vocab.txt.
    code, _, err = cli("export", "m", "--out", "m/tf.ckpt", "--overwrite", cwd=work)
    refused(code, err, "--out m/tf.ckpt (its side file m/vocab.txt) is the input file")
    assert "--out m/vocab.txt" not in err


def test_export_replaces_only_a_previous_export(model):
    work = model.parent
    (work / "tf").mkdir()
    (work / "tf" / "bert_model.ckpt.index").write_text("my index notes\n")
    code, _, err = cli("export", "m", "--out", "tf/bert_model.ckpt", "--overwrite", cwd=work)
    refused(code, err, "tf/bert_model.ckpt.index", "is not a TensorFlow checkpoint index")
    assert (work / "tf" / "bert_model.ckpt.index").read_text() == "my index notes\n"
    os.unlink(work / "tf" / "bert_model.ckpt.index")
    (work / "tf" / "bert_config.json").mkdir()  # a directory where a side file goes
    code, _, err = cli("export", "m", "--out", "tf/bert_model.ckpt", "--overwrite", cwd=work)
    refused(code, err, "tf/bert_config.json, which it would write, is a directory")
    assert os.listdir(work / "tf") == ["bert_config.json"]
    os.rmdir(work / "tf" / "bert_config.json")
    (work / "elsewhere.txt").write_text("keep\n")
    (work / "tf" / "vocab.txt").symlink_to("../elsewhere.txt")
    code, _, err = cli("export", "m", "--out", "tf/bert_model.ckpt", "--overwrite", cwd=work)
    refused(code, err, "tf/vocab.txt", "symbolic link")
    assert (work / "elsewhere.txt").read_text() == "keep\n"
    os.unlink(work / "tf" / "vocab.txt")
    # A previous export is replaced.
    for _ in range(2):
        code, _, err = cli("export", "m", "--out", "tf/bert_model.ckpt", "--overwrite", cwd=work)
        assert code == 0, err
    assert sorted(os.listdir(work / "tf")) == ["bert_config.json",
                                               "bert_model.ckpt.data-00000-of-00001",
                                               "bert_model.ckpt.index", "vocab.txt"]


# --- the legacy command --------------------------------------------------------------------
def test_legacy_output_replaces_only_a_previous_state_dict(tmp_path):
    args = ["convert_tf_checkpoint_to_pytorch", os.path.join(CKPT, "bert_model.ckpt"),
            os.path.join(CKPT, "bert_config.json")]
    (tmp_path / "notes.txt").write_text("mine\n")
    code, _, err = cli(*args, "notes.txt", cwd=tmp_path)
    refused(code, err, "PYTORCH_DUMP_OUTPUT notes.txt is not a PyTorch state dict")
    assert (tmp_path / "notes.txt").read_text() == "mine\n"
    (tmp_path / "link.bin").symlink_to("notes.txt")
    code, _, err = cli(*args, "link.bin", cwd=tmp_path)
    refused(code, err, "link.bin is a symbolic link")
    assert (tmp_path / "notes.txt").read_text() == "mine\n"
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "pytorch_model.bin").write_text("text\n")
    code, _, err = cli(*args, "d", cwd=tmp_path)
    refused(code, err, "PYTORCH_DUMP_OUTPUT d: d/pytorch_model.bin", "not a PyTorch state dict")
    os.unlink(tmp_path / "d" / "pytorch_model.bin")
    for _ in range(2):  # written, then a previous state dict replaced
        code, _, err = cli(*args, "d", cwd=tmp_path)
        assert code == 0, err
    assert os.listdir(tmp_path / "d") == ["pytorch_model.bin"]


# --- write errors, by errno ------------------------------------------------------------------
def test_an_out_under_proc_is_not_a_disk_space_problem(tmp_path):
    code, _, err = cli("convert", CKPT, "--out", "/proc/bertconvert-test", cwd=tmp_path)
    refused(code, err, "writing /proc/bertconvert-test failed", "does not allow new files")
    assert "space" not in err.lower() and "disk" not in err.lower()
    assert ".tmp-" not in err  # our temp names mean nothing to the user


def test_a_name_too_long_says_so(tmp_path):
    code, _, err = cli("convert", CKPT, "--out", "n" * 300, cwd=tmp_path)
    refused(code, err, "too long", "shorter --out")
    assert "space" not in err.lower()
    assert os.listdir(tmp_path) == []


_CODES = (errno.EBUSY, errno.EEXIST, errno.ENAMETOOLONG, errno.EINVAL, errno.EROFS,
          errno.EACCES, errno.EPERM, errno.ENOENT, errno.ENOTDIR, errno.EIO, errno.EFBIG)


@pytest.mark.parametrize("code", _CODES)
def test_each_errno_has_its_own_message_and_only_space_talks_of_space(code):
    e = OSError(code, os.strerror(code), "out/model")
    message = str(write_error(e, "out"))
    assert isinstance(write_error(e, "out"), OutputWriteError)
    assert message.startswith("writing out failed: ") and "\n" not in message
    assert "space" not in message.lower() and "disk is full" not in message
    assert os.strerror(code) in message


def test_errno_messages_are_distinct_and_full_disks_ask_for_space():
    messages = {c: str(write_error(OSError(c, os.strerror(c), "x"), "out")) for c in _CODES}
    words = {c: m.split(": ", 1)[1].split(" (")[0] for c, m in messages.items()}
    assert len(set(words.values())) == len(_CODES), words
    for code in (errno.ENOSPC, errno.EDQUOT):
        assert "Free space" in str(write_error(OSError(code, os.strerror(code)), "out"))


def test_the_library_refuses_with_a_named_error(tmp_path):
    from bertconvert.convert import convert_checkpoint

    (tmp_path / "o").mkdir()
    (tmp_path / "o" / "keep.txt").write_text("x")
    with pytest.raises(OutputNotReplaceableError, match="keep.txt") as info:
        convert_checkpoint(CKPT, tmp_path / "o", overwrite=True, progress=False)
    assert isinstance(info.value, OutputExistsError)  # callers catching that still do
    assert "overwrite=True" in str(info.value) and "--overwrite" not in str(info.value)
    assert os.listdir(tmp_path) == ["o"] and os.listdir(tmp_path / "o") == ["keep.txt"]
