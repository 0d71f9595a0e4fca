"""What a conversion copies or reads from a hostile source (probe round 2, weak list):
a SavedModel's vocab.txt symlinked out of the SavedModel, sparse multi-GB vocabularies, and
data shards with a huge sparse tail that the default source hash would read whole."""
import hashlib
import json
import os
import shutil
import subprocess
import sys

import pytest

from bertconvert.convert.run import convert_checkpoint
from bertconvert.errors import VocabError
from bertconvert.safeio import MAX_VOCAB_BYTES, copy_regular_file

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SAVED_MODEL = os.path.join(ROOT, "fixtures", "tf1_serving", "export", "1700000000")
BASE = os.path.join(ROOT, "fixtures", "checkpoints", "base")
SHARD = "bert_model.ckpt.data-00000-of-00001"
VOCAB_LINES = "".join(f"[unused{i}]\n" for i in range(99))


def _saved_model(tmp_path):
    target = tmp_path / "sm"
    shutil.copytree(SAVED_MODEL, target)
    (target / "assets").mkdir()
    return target


def _cli(*args):
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run([sys.executable, "-m", "bertconvert", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)


def test_asset_symlink_out_of_the_saved_model_is_refused(tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text(VOCAB_LINES)  # a perfectly readable vocabulary, but not the model's
    sm = _saved_model(tmp_path)
    os.symlink(secret, sm / "assets" / "vocab.txt")
    out = tmp_path / "out"
    proc = _cli("convert", str(sm), "--out", str(out))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert "symlink" in last and "outside the SavedModel" in last and "--vocab" in last
    assert not out.exists()
    with pytest.raises(VocabError, match="outside the SavedModel"):
        convert_checkpoint(str(sm), str(out), progress=False)


def test_asset_symlink_to_etc_passwd_is_refused(tmp_path):
    sm = _saved_model(tmp_path)
    os.symlink("/etc/passwd", sm / "assets" / "vocab.txt")
    with pytest.raises(VocabError, match="outside the SavedModel"):
        convert_checkpoint(str(sm), str(tmp_path / "out"), progress=False)
    assert not (tmp_path / "out").exists()


def test_asset_symlink_inside_the_saved_model_is_copied(tmp_path):
    sm = _saved_model(tmp_path)
    (sm / "assets" / "real_vocab.txt").write_text(VOCAB_LINES)
    os.symlink("real_vocab.txt", sm / "assets" / "vocab.txt")
    out = tmp_path / "out"
    convert_checkpoint(str(sm), str(out), progress=False)
    assert (out / "vocab.txt").read_text() == VOCAB_LINES
    assert not (out / "vocab.txt").is_symlink()


def test_explicit_vocab_symlink_is_the_users_choice(tmp_path):
    real = tmp_path / "elsewhere.txt"
    real.write_text(VOCAB_LINES)
    link = tmp_path / "v.txt"
    os.symlink(real, link)
    out = tmp_path / "out"
    convert_checkpoint(SAVED_MODEL, str(out), vocab=str(link), progress=False)
    assert (out / "vocab.txt").read_text() == VOCAB_LINES


@pytest.mark.parametrize("where", ["asset", "explicit"])
def test_sparse_oversized_vocab_is_refused_not_copied(tmp_path, where):
    sm = _saved_model(tmp_path)
    big = sm / "assets" / "vocab.txt" if where == "asset" else tmp_path / "big.txt"
    with open(big, "wb") as f:
        f.write(VOCAB_LINES.encode())
    os.truncate(big, MAX_VOCAB_BYTES + 1)  # sparse: costs no disk
    out = tmp_path / "out"
    args = ["convert", str(sm), "--out", str(out)] + (["--vocab", str(big)] if where == "explicit" else [])
    proc = _cli(*args)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert f"more than the {MAX_VOCAB_BYTES} bytes" in proc.stderr
    assert not out.exists()


def test_non_regular_vocab_asset_is_never_copied(tmp_path):
    sm = _saved_model(tmp_path)
    os.mkfifo(sm / "assets" / "vocab.txt")  # reading it would hang
    report = convert_checkpoint(str(sm), str(tmp_path / "out"), progress=False)
    assert not (tmp_path / "out" / "vocab.txt").exists()
    assert any("no vocab.txt" in n for n in report.notes)
    with pytest.raises(VocabError, match="is not a file"):  # given explicitly: refused
        convert_checkpoint(str(sm), str(tmp_path / "out2"), progress=False,
                           vocab=str(sm / "assets" / "vocab.txt"))


def test_copy_regular_file_bounds(tmp_path):
    src = tmp_path / "a"
    src.write_bytes(b"x" * 10)
    assert copy_regular_file(src, tmp_path / "b", 10, VocabError, "vocabulary") == 10
    assert (tmp_path / "b").read_bytes() == b"x" * 10
    with pytest.raises(VocabError, match="more than the 9 bytes"):
        copy_regular_file(src, tmp_path / "c", 9, VocabError, "vocabulary")
    assert not (tmp_path / "c").exists()
    os.mkfifo(tmp_path / "fifo")
    with pytest.raises(VocabError, match="not a regular file"):
        copy_regular_file(tmp_path / "fifo", tmp_path / "d", 10, VocabError, "vocabulary")


# --- data shards with a tail no tensor is made of ------------------------------------------
def _shard_entry(report_dir):
    report = json.loads((report_dir / "conversion.json").read_text())
    entry = next(e for e in report["source_files"] if e["path"].endswith(SHARD))
    return report, entry


def test_shard_with_huge_sparse_tail_is_not_hashed_by_default(tmp_path):
    ckpt = tmp_path / "ckpt"
    shutil.copytree(BASE, ckpt)
    size = os.path.getsize(ckpt / SHARD)
    os.truncate(ckpt / SHARD, size + (1 << 30))  # 1 GiB of holes after the last tensor
    out = tmp_path / "out"
    convert_checkpoint(str(ckpt), str(out), progress=False)
    report, entry = _shard_entry(out)
    assert entry["sha256"] is None and entry["size"] == size + (1 << 30)
    note = next(n for n in report["notes"] if n.startswith(SHARD))
    assert f"tensors end at byte {size}" in note and "belongs to no tensor" in note
    assert "source_hash='full'" in note
    # The .index is still hashed: it pins every converted tensor's crc32c.
    index = next(e for e in report["source_files"] if e["path"].endswith(".index"))
    assert index["sha256"] == hashlib.sha256((ckpt / "bert_model.ckpt.index").read_bytes()).hexdigest()


def test_shard_with_small_tail_or_none_is_hashed_whole(tmp_path):
    ckpt = tmp_path / "ckpt"
    shutil.copytree(BASE, ckpt)
    out = tmp_path / "plain"
    convert_checkpoint(str(ckpt), str(out), progress=False)
    _, entry = _shard_entry(out)
    assert entry["sha256"] == hashlib.sha256((ckpt / SHARD).read_bytes()).hexdigest()
    with open(ckpt / SHARD, "ab") as f:
        f.write(b"\0" * 100)  # well under 1% of the shard: hashed as before
    out = tmp_path / "small-tail"
    convert_checkpoint(str(ckpt), str(out), progress=False)
    _, entry = _shard_entry(out)
    assert entry["sha256"] == hashlib.sha256((ckpt / SHARD).read_bytes()).hexdigest()


@pytest.mark.parametrize("case", ["saver_v1", "saver_sharded", "partitioned", "object_based",
                                  "object_sharded", "saved_model"])
def test_tensorflow_written_shards_have_no_unreferenced_tail(case):
    """TensorFlow writes tensors back to back, partitioned slices included: the index's
    entries reach exactly to the end of every shard, so no real checkpoint loses its hash."""
    from bertconvert.checkpoint import load_checkpoint
    with load_checkpoint(os.path.join(ROOT, "fixtures", "tf_checkpoints", case)) as reader:
        ends = reader.referenced_bytes()
        assert set(ends) == set(reader.files[1:])
        assert all(ends[path] == os.path.getsize(path) for path in ends)
