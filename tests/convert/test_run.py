"""convert_checkpoint / load_converted_model on the TensorFlow-written fixtures.

Exactness is checked against the fixture npz (values TensorFlow itself wrote), the test's own
table of Google's names and layouts (tests/convert/google_names.py, not the converter's rules), TF's own reader
(tf-marked), and by loading the directory into our classes and into transformers'.
"""
import errno
import hashlib
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from bertconvert import layout
from bertconvert.convert import rules as mapping
from bertconvert.checkpoint import load_checkpoint, save_checkpoint
from bertconvert.convert.run import ConversionReport, convert_checkpoint, detect_head, load_converted_model
from bertconvert.errors import (ChecksumMismatchError, CheckpointNotFoundError, ConfigError,
                                HeadError, MappingError, OutputExistsError,
                                OutputNotReplaceableError, OutputWriteError)
from bertconvert.models.heads import HEADS
from . import google_names

FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, os.pardir, "fixtures")
CKPTS = os.path.join(FIXTURES, "checkpoints")

#: fixture -> (head to ask for, num_labels in the checkpoint)
LAYOUTS = {
    "base": ("base", None), "pretraining": ("pretraining", None),
    "masked-lm": ("masked-lm", None), "next-sentence": ("next-sentence", None),
    "sequence-classification": ("sequence-classification", 3),
    "token-classification": ("token-classification", 5),
    "multiple-choice": ("multiple-choice", 1),
    "question-answering": ("question-answering", None),
    "pretraining-adam": ("pretraining", None), "pretraining-lamb": ("pretraining", None),
    "tf2-pretraining": ("pretraining", None),
}


def ckpt(name):
    return os.path.join(CKPTS, name)


def npz(name):
    with np.load(os.path.join(FIXTURES, "variables", f"{name}.npz")) as z:
        return {k: z[k] for k in z.files}


#: Heads whose transformers class has no pooler: converted without keep_pooler, no pooler.
POOLERLESS = {"masked-lm", "token-classification", "question-answering"}


def expected_state(fixture, head, keep_pooler=False):
    """PyTorch state dict computed from the npz with the test's own table of Google's names
    (tests/convert/google_names.py), never with the converter's rule table; the pooler is
    left out for the heads whose transformers class has none, unless ``keep_pooler``."""
    arrays = npz(fixture)
    if head in POOLERLESS and not keep_pooler:
        arrays = {k: v for k, v in arrays.items() if not k.startswith("bert/pooler/")}
    return google_names.expected_state(arrays, head)


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    """Every fixture converted once (format both), keyed by fixture name."""
    root = tmp_path_factory.mktemp("converted")
    out = {}
    for name, (head, _) in LAYOUTS.items():
        report = convert_checkpoint(ckpt(name), root / name, head=head, format="both", progress=False)
        out[name] = (root / name, report)
    return out


@pytest.mark.parametrize("fixture", sorted(LAYOUTS))
def test_weights_are_bit_exact_to_what_tensorflow_wrote(converted, fixture):
    out_dir, report = converted[fixture]
    head, labels = LAYOUTS[fixture]
    assert report.head == head and report.num_labels == (labels if head in layout.CLASSIFIER_HEADS else None)
    expected = expected_state(fixture, head)
    safe = load_file(os.path.join(out_dir, "model.safetensors"))
    pickled = torch.load(os.path.join(out_dir, "pytorch_model.bin"), weights_only=True)
    assert set(safe) == set(expected)
    assert set(pickled) == set(expected) | set(report.tied)
    for key, value in expected.items():
        assert safe[key].dtype == torch.float32
        np.testing.assert_array_equal(safe[key].numpy(), value, err_msg=key)
        assert torch.equal(pickled[key], safe[key])
    for alias, target in report.tied.items():  # torch.save-style tie: one storage
        assert pickled[alias].data_ptr() == pickled[target].data_ptr()


@pytest.mark.parametrize("head", list(HEADS))
def test_output_loads_into_ours_and_transformers_with_same_logits(converted, head, tiny_batch):
    transformers = pytest.importorskip("transformers")
    transformers.logging.set_verbosity_error()
    fixture = {"token-classification": "token-classification",
               "multiple-choice": "multiple-choice"}.get(head, head)
    out_dir, _ = converted[fixture]
    ours, info = HEADS[head].from_pretrained(str(out_dir), output_loading_info=True)
    assert info["missing_keys"] == []
    config = json.load(open(out_dir / "config.json"))
    hf_cls = getattr(transformers, config["architectures"][0])
    hf, hf_info = hf_cls.from_pretrained(str(out_dir), output_loading_info=True)
    assert list(hf_info["missing_keys"]) == [] and list(hf_info.get("mismatched_keys", [])) == []
    hf.eval()
    batch = {k: v for k, v in tiny_batch.items()}
    if head == "multiple-choice":
        batch = {k: v[:12].view(4, 3, -1) for k, v in batch.items()}
    with torch.no_grad():
        mine = ours(batch["input_ids"], batch["token_type_ids"], batch["attention_mask"])
        theirs = hf(**batch)
    mine = mine if isinstance(mine, tuple) else (mine,)
    if head == "base":
        pairs = [(mine[0][-1], theirs.last_hidden_state), (mine[1], theirs.pooler_output)]
    else:
        pairs = list(zip(mine, theirs.to_tuple()))
    for a, b in pairs:
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


def test_output_directory_contents(converted):
    out_dir, report = converted["sequence-classification"]
    src = ckpt("sequence-classification")
    assert sorted(os.listdir(out_dir)) == ["bert_config.json", "config.json", "conversion.json",
                                           "model.safetensors", "pytorch_model.bin",
                                           "tokenizer_config.json", "vocab.txt"]
    config = json.load(open(out_dir / "config.json"))
    assert config["model_type"] == "bert" and config["architectures"] == ["BertForSequenceClassification"]
    assert config["num_labels"] == 3 and len(config["id2label"]) == 3 and config["dtype"] == "float32"
    for name in ("bert_config.json", "vocab.txt"):
        assert open(out_dir / name, "rb").read() == open(os.path.join(src, name), "rb").read()
    record = json.load(open(out_dir / "conversion.json"))
    assert record == json.loads(json.dumps(report.to_dict()))
    sources = {os.path.basename(s["path"]): s for s in record["source_files"]}
    assert set(sources) == {"bert_model.ckpt.index", "bert_model.ckpt.data-00000-of-00001",
                            "bert_config.json", "vocab.txt"}
    for name, entry in sources.items():
        data = open(os.path.join(src, name), "rb").read()
        assert entry["size"] == len(data)
        if name.startswith("bert_model.ckpt.data"):  # mostly Adam slots: never read, not hashed
            assert entry["sha256"] is None and record["source_hash"] == "auto"
        else:
            assert entry["sha256"] == hashlib.sha256(data).hexdigest()
    assert any("never read" in n for n in record["notes"])
    rules = {v["name"]: v for v in record["variables"]}
    assert rules["bert/encoder/layer_2/intermediate/dense/kernel"]["key"] == \
        "bert.encoder.layer.2.intermediate.dense.weight"
    assert rules["bert/encoder/layer_2/intermediate/dense/kernel"]["transform"] == "transpose"
    assert rules["output_weights"]["key"] == "classifier.weight"
    assert {s["name"] for s in record["skipped"]} == set(load_checkpoint(src).get_variable_to_shape_map()) - set(rules)
    assert all(s["name"].endswith(("adam_m", "adam_v")) or s["name"] == "global_step"
               for s in record["skipped"])
    assert record["dtype"] == "float32" and record["head"] == "sequence-classification"


def test_tf2_rules_and_skips_are_recorded(converted):
    _, report = converted["tf2-pretraining"]
    flavours = {v["flavour"] for v in report.variables}
    assert flavours == {"tf2"}
    transforms = {v["transform"] for v in report.variables}
    assert {"reshape_out+transpose", "reshape_in+transpose", "reshape", "transpose", "none"} == transforms
    reasons = {s["reason"] for s in report.skipped}
    assert "optimizer slot (TF2)" in reasons and "object graph (TF2 bookkeeping)" in reasons


@pytest.mark.tf
@pytest.mark.parametrize("fixture", ["question-answering", "tf2-pretraining", "pretraining-lamb"])
def test_bit_exact_against_tensorflows_own_reader(converted, fixture):
    tf = pytest.importorskip("tensorflow")
    reader = tf.train.load_checkpoint(os.path.join(ckpt(fixture), "bert_model.ckpt"))
    out_dir, report = converted[fixture]
    safe = load_file(os.path.join(out_dir, "model.safetensors"))
    head = LAYOUTS[fixture][0]
    assert report.variables
    for v in report.variables:
        key, value = google_names.expected_entry(v["name"], reader.get_tensor(v["name"]), head)
        assert v["key"] == key
        np.testing.assert_array_equal(safe[key].numpy(), value, err_msg=v["name"])


# --- slots are never read -------------------------------------------------------------------
def _corrupt(prefix, names):
    """Flip bytes of the named tensors inside the data shard (their crc no longer matches)."""
    reader = load_checkpoint(prefix)
    with open(reader.files[1], "r+b") as f:
        for name in names:
            entry = reader.entry(name)
            if entry.size:
                f.seek(entry.offset)
                raw = bytearray(f.read(entry.size))
                f.seek(entry.offset)
                f.write(bytes(b ^ 0xFF for b in raw))


def test_optimizer_slots_are_never_read(tmp_path):
    src = tmp_path / "ckpt"
    shutil.copytree(ckpt("pretraining-adam"), src)
    names = load_checkpoint(str(src)).get_variable_to_shape_map()
    slots = [n for n in names if mapping.skip_reason(n)]
    assert len(slots) == 2 * len(npz("pretraining-adam")) + 1
    _corrupt(str(src / "bert_model.ckpt"), slots)
    report = convert_checkpoint(str(src), tmp_path / "out", progress=False)  # crc checks are on
    assert len(report.skipped) == len(slots)
    safe = load_file(tmp_path / "out" / "model.safetensors")
    for key, value in expected_state("pretraining-adam", "pretraining").items():
        np.testing.assert_array_equal(safe[key].numpy(), value)
    # The same corruption in one weight is caught, and nothing is published.
    _corrupt(str(src / "bert_model.ckpt"), ["bert/encoder/layer_1/output/dense/bias"])
    with pytest.raises(ChecksumMismatchError):
        convert_checkpoint(str(src), tmp_path / "out2", progress=False)
    assert not (tmp_path / "out2").exists()


# --- heads and labels -------------------------------------------------------------------------
def test_detect_head_is_exported_here():
    assert detect_head(npz("question-answering")) == ("question-answering", "")


def test_auto_head_on_root_output_weights_defaults_and_explains(tmp_path):
    report = convert_checkpoint(ckpt("token-classification"), tmp_path / "o", progress=False)
    assert report.head == "sequence-classification" and report.num_labels == 5
    assert any("head='token-classification'" in n for n in report.notes)


def test_num_labels_must_agree(tmp_path):
    with pytest.raises(HeadError, match="disagrees.*3 rows"):
        convert_checkpoint(ckpt("sequence-classification"), tmp_path / "o", num_labels=4, progress=False)
    with pytest.raises(HeadError, match="1 output per choice"):
        convert_checkpoint(ckpt("multiple-choice"), tmp_path / "o", head="multiple-choice",
                           num_labels=3, progress=False)
    with pytest.raises(HeadError, match="3 rows"):
        convert_checkpoint(ckpt("sequence-classification"), tmp_path / "o", head="multiple-choice",
                           progress=False)
    with pytest.raises(HeadError, match="question-answering has exactly 2 outputs"):
        convert_checkpoint(ckpt("question-answering"), tmp_path / "o", num_labels=3, progress=False)
    with pytest.raises(HeadError, match="unknown head"):
        convert_checkpoint(ckpt("base"), tmp_path / "o", head="ner", progress=False)
    assert not (tmp_path / "o").exists()
    report = convert_checkpoint(ckpt("sequence-classification"), tmp_path / "o", num_labels=3, progress=False)
    assert report.num_labels == 3


def test_new_head_needs_allow_new_head_and_is_initialised_properly(tmp_path):
    with pytest.raises(MappingError, match="allow_new_head=True") as info:
        convert_checkpoint(ckpt("pretraining"), tmp_path / "o", head="sequence-classification",
                           num_labels=4, progress=False)
    assert "classifier.weight: not in the checkpoint" in str(info.value)
    assert not (tmp_path / "o").exists()
    torch.manual_seed(0)
    report = convert_checkpoint(ckpt("pretraining"), tmp_path / "o", head="sequence-classification",
                                num_labels=4, allow_new_head=True, progress=False)
    assert report.new_keys == ["classifier.bias", "classifier.weight"]
    assert {d["name"] for d in report.dropped} == {n for n in npz("pretraining") if n.startswith("cls/")}
    safe = load_file(tmp_path / "o" / "model.safetensors")
    assert safe["classifier.weight"].shape == (4, 32)
    assert torch.count_nonzero(safe["classifier.bias"]) == 0
    std = safe["classifier.weight"].std().item()
    assert 0.01 < std < 0.03  # normal(0, initializer_range=0.02)
    assert json.load(open(tmp_path / "o" / "conversion.json"))["new_keys"] == report.new_keys


def test_pretraining_checkpoint_into_base_drops_heads(tmp_path):
    report = convert_checkpoint(ckpt("pretraining"), tmp_path / "o", head="base", progress=False)
    assert {d["name"] for d in report.dropped} == {n for n in npz("pretraining") if n.startswith("cls/")}
    assert set(load_file(tmp_path / "o" / "model.safetensors")) == set(expected_state("base", "base"))


# --- bad input: every problem, sorted, with hints; nothing published --------------------------
def _write_variant(tmp_path, fixture, change=None, config_change=None):
    """A copy of a fixture's weights (no slots), edited, written with the TF-free writer."""
    values = npz(fixture)
    if change:
        change(values)
    prefix = tmp_path / "variant" / "bert_model.ckpt"
    save_checkpoint(str(prefix), values)
    config = json.load(open(os.path.join(ckpt(fixture), "bert_config.json")))
    config.update(config_change or {})
    json.dump(config, open(prefix.parent / "bert_config.json", "w"))
    return str(prefix)


def test_all_problems_reported_together_sorted_with_hints(tmp_path):
    def change(v):
        v["bert/encoder/layer_0/attention/self/layer_normalization_3/gamma"] = np.ones(32, np.float32)
        v["bert/encoder/layer_9/output/dense/bias"] = np.ones(32, np.float32)
        del v["bert/encoder/layer_4/output/LayerNorm/beta"]

    prefix = _write_variant(tmp_path, "pretraining", change, {"vocab_size": 500})
    with pytest.raises(MappingError) as info:
        convert_checkpoint(prefix, tmp_path / "o", progress=False)
    text = str(info.value)
    problems = [line for line in text.split("problems:")[1].splitlines() if line.startswith("  - ")]
    assert problems == sorted(problems) and len(problems) == 5
    assert "unknown scope 'layer_normalization_3'" in text
    assert "the checkpoint has layer 9 but the model has only layers 0-4" in text
    assert "bert.encoder.layer.4.output.LayerNorm.bias: no checkpoint variable fills it" in text
    assert "vocab_size in" in text and "is 500 but the checkpoint's word_embeddings has 191 rows" in text
    assert "output_bias has 191 rows" in text
    assert not (tmp_path / "o").exists()


def test_factorized_embeddings_and_layer_count_hints(tmp_path):
    def change(v):
        v["bert/embeddings/word_embeddings"] = np.zeros((191, 16), np.float32)

    prefix = _write_variant(tmp_path, "base", change, {"num_hidden_layers": 6})
    with pytest.raises(MappingError) as info:
        convert_checkpoint(prefix, tmp_path / "o", progress=False)
    text = str(info.value)
    assert "factorized (ALBERT-style) embeddings are not supported" in text
    assert "num_hidden_layers in" in text and "is 6 but the checkpoint has 5 layers" in text


def test_missing_config_and_checkpoint(tmp_path):
    src = tmp_path / "ckpt"
    shutil.copytree(ckpt("base"), src)
    os.unlink(src / "bert_config.json")
    with pytest.raises(ConfigError, match="config=PATH"):
        convert_checkpoint(str(src), tmp_path / "o", progress=False)
    with pytest.raises(CheckpointNotFoundError):
        convert_checkpoint(str(tmp_path / "nothing"), tmp_path / "o", progress=False)
    report = convert_checkpoint(str(src), tmp_path / "o", config=os.path.join(ckpt("base"), "bert_config.json"),
                                progress=False)
    assert report.head == "base"
    assert not any(name.startswith(".") for name in os.listdir(tmp_path))


def test_existing_output_refused_unless_overwrite(tmp_path):
    out = tmp_path / "o"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(OutputExistsError):
        convert_checkpoint(ckpt("base"), out, progress=False)
    assert os.listdir(out) == ["keep.txt"]
    # A file a conversion does not write: not a previous model directory, kept even then.
    with pytest.raises(OutputNotReplaceableError, match="keep.txt"):
        convert_checkpoint(ckpt("base"), out, overwrite=True, progress=False)
    assert os.listdir(out) == ["keep.txt"]
    (out / "keep.txt").unlink()
    convert_checkpoint(ckpt("base"), out, progress=False, overwrite=True)
    with pytest.raises(OutputExistsError):  # a previous model directory: overwrite needed
        convert_checkpoint(ckpt("base"), out, progress=False)
    (out / "model.safetensors").write_bytes(b"stale")
    convert_checkpoint(ckpt("base"), out, overwrite=True, progress=False)
    assert (out / "model.safetensors").read_bytes() != b"stale"


class _FullDisk:
    """An opener whose files raise ENOSPC once ``budget`` bytes have been written in total."""

    def __init__(self, budget):
        self.budget = budget

    def __call__(self, path, mode="r"):
        f = open(path, mode)
        opener = self

        class Limited:
            def write(self, data):
                size = len(data) if isinstance(data, str) else memoryview(data).nbytes
                opener.budget -= size
                if opener.budget < 0:
                    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), path)
                return f.write(data)

            def __getattr__(self, name):
                return getattr(f, name)

            def __enter__(self):
                return self

            def __exit__(self, *exc):
                f.close()

        return Limited()


@pytest.mark.parametrize("format", ["safetensors", "pytorch", "both"])
@pytest.mark.parametrize("budget", [100, 150_000, 181_000])
def test_disk_full_leaves_no_output(tmp_path, format, budget):
    with pytest.raises(OutputWriteError, match="disk is full") as info:
        convert_checkpoint(ckpt("pretraining"), tmp_path / "o", format=format,
                           opener=_FullDisk(budget), progress=False)
    assert isinstance(info.value.__cause__, OSError)
    assert os.listdir(tmp_path) == []  # no output, no temp directory


def test_disk_full_on_overwrite_keeps_the_old_directory(tmp_path):
    convert_checkpoint(ckpt("base"), tmp_path / "o", progress=False)
    before = open(tmp_path / "o" / "model.safetensors", "rb").read()
    with pytest.raises(OutputWriteError):
        convert_checkpoint(ckpt("pretraining"), tmp_path / "o", overwrite=True,
                           opener=_FullDisk(50_000), progress=False)
    assert open(tmp_path / "o" / "model.safetensors", "rb").read() == before
    assert os.listdir(tmp_path) == ["o"]


# --- dtypes, in-memory conversion ---------------------------------------------------------
@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_reduced_precision_matches_torch_rounding(tmp_path, converted, dtype):
    report = convert_checkpoint(ckpt("tf2-pretraining"), tmp_path / "o", dtype=dtype, format="both",
                                progress=False)
    assert report.dtype == dtype
    full = load_file(converted["tf2-pretraining"][0] / "model.safetensors")
    half = load_file(tmp_path / "o" / "model.safetensors")
    pickled = torch.load(tmp_path / "o" / "pytorch_model.bin", weights_only=True)
    for key, value in full.items():
        assert half[key].dtype == getattr(torch, dtype)
        assert torch.equal(half[key], value.to(getattr(torch, dtype))), key
        assert torch.equal(pickled[key], half[key])
    assert json.load(open(tmp_path / "o" / "config.json"))["dtype"] == dtype


@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16"])
@pytest.mark.parametrize("fixture", ["tf2-pretraining", "sequence-classification"])
def test_safetensors_file_is_byte_identical_to_safetensors_own_output(tmp_path, fixture, dtype):
    """The numpy streaming path against a reference: layout from the test's table of Google's
    names, rounding with Tensor.to, the file written by safetensors itself -- byte for byte."""
    from safetensors import safe_open
    from safetensors.torch import save

    head, _ = LAYOUTS[fixture]
    convert_checkpoint(ckpt(fixture), tmp_path / "o", head=head, dtype=dtype, progress=False)
    # Keys and layouts from the test's own table; rounding by torch's Tensor.to.
    reference = {key: torch.from_numpy(value).to(getattr(torch, dtype))
                 for key, value in expected_state(fixture, head).items()}
    path = tmp_path / "o" / "model.safetensors"
    assert path.read_bytes() == save(reference, metadata={"format": "pt"})
    with safe_open(str(path), framework="pt") as f:
        assert sorted(f.keys()) == sorted(reference) and f.metadata() == {"format": "pt"}
        for key in f.keys():
            assert torch.equal(f.get_tensor(key), reference[key]), key


def test_bad_format_or_dtype(tmp_path):
    from bertconvert.errors import ConversionError
    with pytest.raises(ConversionError, match="format"):
        convert_checkpoint(ckpt("base"), tmp_path / "o", format="onnx", progress=False)
    with pytest.raises(ConversionError, match="dtype"):
        convert_checkpoint(ckpt("base"), tmp_path / "o", dtype="int8", progress=False)


def test_load_converted_model_matches_the_directory(converted, tiny_batch):
    model, report = load_converted_model(ckpt("tf2-pretraining"))
    assert isinstance(report, ConversionReport) and report.head == "pretraining"
    assert not model.training
    assert model.cls.predictions.decoder.weight is model.bert.embeddings.word_embeddings.weight
    loaded = HEADS["pretraining"].from_pretrained(str(converted["tf2-pretraining"][0]))
    args = (tiny_batch["input_ids"], tiny_batch["token_type_ids"], tiny_batch["attention_mask"])
    with torch.no_grad():
        for a, b in zip(model(*args), loaded(*args)):
            assert torch.equal(a, b)
    model16, _ = load_converted_model(ckpt("question-answering"), dtype="bfloat16")
    assert model16.qa_outputs.weight.dtype == torch.bfloat16


def test_target_model_is_built_on_meta_without_random_init():
    from bertconvert.models.config import BertConfig
    from bertconvert.models.heads import target_model

    big = BertConfig(30522, hidden_size=1024, num_hidden_layers=24, num_attention_heads=16,
                     intermediate_size=4096)
    model = target_model("pretraining", big, None)  # 335M parameters: free on meta
    assert all(p.is_meta for p in model.parameters())
    assert sum(p.numel() for p in model.parameters()) > 330_000_000


def test_source_hasher_digests_errors_and_cancel(tmp_path):
    from bertconvert.errors import ConversionError
    from bertconvert.convert.provenance import SourceHasher

    data = os.urandom(3_000_001)
    (tmp_path / "a").write_bytes(data)
    hasher = SourceHasher([tmp_path / "a"])
    hasher.start()
    assert hasher.wait() == [{"path": str(tmp_path / "a"), "size": len(data),
                              "sha256": hashlib.sha256(data).hexdigest()}]
    hasher = SourceHasher([tmp_path / "a", tmp_path / "missing"])
    hasher.start()
    with pytest.raises(ConversionError, match="cannot hash source file"):
        hasher.wait()
    hasher = SourceHasher([tmp_path / "a"] * 300)  # ~1 GB to hash: cancel long before the end
    hasher.start()
    hasher.cancel()
    assert not hasher.is_alive() and len(hasher.result) < 300


def test_checkpoint_paths_import_without_numpy():
    code = ("import sys; import bertconvert.checkpoint.paths, bertconvert.convert.provenance; "
            "print('numpy' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def _rchar():
    with open("/proc/self/io") as f:
        return int(next(line for line in f if line.startswith("rchar:")).split()[1])


@pytest.mark.skipif(not os.path.exists("/proc/self/io"), reason="needs Linux /proc/self/io")
def test_optimizer_slots_are_never_read_unless_a_full_hash_is_asked_for(tmp_path):
    """By default ("auto") and with "index" the bytes of skipped variables are not read at all;
    with "full" they are read once, by the sha256 of the whole shard."""
    src = ckpt("pretraining")
    reader = load_checkpoint(src)
    values = {n: reader.get_tensor(n) for n in reader.get_variable_to_shape_map()}
    slot_bytes = 0
    for name in ("bert/embeddings/word_embeddings", "bert/pooler/dense/kernel"):
        for slot in ("adam_m", "adam_v"):
            values[f"{name}/{slot}"] = np.full((1024, 1024), 0.5, np.float32)  # 4 MiB each
            slot_bytes += 4 << 20
    ck = tmp_path / "ck"
    ck.mkdir()
    save_checkpoint(str(ck / "bert_model.ckpt"), values)
    for name in ("bert_config.json", "vocab.txt"):
        shutil.copy(os.path.join(src, name), ck / name)
    shard = str(ck / "bert_model.ckpt.data-00000-of-00001")
    size = os.path.getsize(shard)
    shard_sha = hashlib.sha256(open(shard, "rb").read()).hexdigest()

    def run(mode):
        before = _rchar()
        convert_checkpoint(ck, tmp_path / mode, source_hash=mode, progress=False)
        read = _rchar() - before
        record = json.load(open(tmp_path / mode / "conversion.json"))
        return read, record, {os.path.basename(e["path"]): e for e in record["source_files"]}

    for mode in ("auto", "index"):
        read, record, entries = run(mode)
        assert read < size - slot_bytes + (1 << 20), mode
        assert record["source_hash"] == mode
        assert entries["bert_model.ckpt.data-00000-of-00001"] == {
            "path": os.path.abspath(shard), "size": size, "sha256": None}
        for name in ("bert_model.ckpt.index", "bert_config.json", "vocab.txt"):
            assert entries[name]["sha256"] == hashlib.sha256(open(ck / name, "rb").read()).hexdigest()
        assert any("never read" in n for n in record["notes"]) == (mode == "auto")
    read, record, entries = run("full")
    assert read > size + (size - slot_bytes)  # the hash, plus the converted tensors
    assert entries["bert_model.ckpt.data-00000-of-00001"]["sha256"] == shard_sha
    outputs = [load_file(str(tmp_path / m / "model.safetensors")) for m in ("auto", "index", "full")]
    assert all(o.keys() == outputs[0].keys() for o in outputs)
    assert all(torch.equal(o[k], outputs[0][k]) for o in outputs for k in o)

    # A checkpoint without slots: "auto" hashes every file whole, as sha256sum would.
    plain = tmp_path / "plain"
    convert_checkpoint(src, plain, progress=False)
    for e in json.load(open(plain / "conversion.json"))["source_files"]:
        assert e["sha256"] == hashlib.sha256(open(e["path"], "rb").read()).hexdigest()

    from bertconvert.errors import ConversionError
    with pytest.raises(ConversionError, match="source_hash"):
        convert_checkpoint(ck, tmp_path / "bad", source_hash="some")
