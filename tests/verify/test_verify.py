"""Parity verification: the TF reference itself, the comparison, every fixture layout, and the
failures it must catch (a nudged weight, a transposed kernel, a wrong head)."""
import json
import math
import os
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

from bertconvert.errors import HeadNotInCheckpointError, ParityError, VerificationError
from bertconvert.verify.stages import HEAD_STAGES
from bertconvert.verify import (ParityReport, StageResult, assert_parity, compare_stage,
                                resolve_tolerance, verify)
from bertconvert.verify.inputs import (build_inputs, bundled_sentences, default_examples,
                                       load_inputs, make_tokenizer, read_text_file)

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FIXTURES = os.path.join(ROOT, "fixtures", "checkpoints")
LAYOUTS = list(HEAD_STAGES)  # the eight TF1 layouts, one fixture directory each


def ckpt(name):
    return os.path.join(FIXTURES, name)


@pytest.fixture
def converted(converted_fixtures):
    """Each fixture layout converted once per session with our converter (TF-free)."""
    for name in LAYOUTS + ["tf2-pretraining"]:
        converted_fixtures[name]
    return converted_fixtures


def edited_copy(src, dst, key, edit):
    """Copy a converted model directory, applying ``edit`` to one tensor of its weights."""
    from safetensors.torch import load_file, save_file
    shutil.copytree(src, dst)
    path = os.path.join(dst, "model.safetensors")
    state = load_file(path)
    state[key] = edit(state[key]).contiguous()
    save_file(state, path, metadata={"format": "pt"})
    return str(dst)


# --- comparison and report (no TensorFlow) ----------------------------------------------------
def test_compare_stage_tolerance_edges():
    ref = np.array([[0.0, 1.0], [-2.0, 10.0]], dtype=np.float32)
    ok = compare_stage("layer 0", ref + np.float32(5e-5), ref, 1e-4, 1e-4)
    assert ok.passed and ok.max_abs == pytest.approx(5e-5, rel=1e-2)
    bad = ref.copy()
    bad[0, 0] += 2e-4  # beyond atol where |ref| is 0
    res = compare_stage("layer 0", bad, ref, 1e-4, 1e-4)
    assert not res.passed and res.worst_index == (0, 0)
    assert res.max_rel == pytest.approx(2e-4 / 10.0, rel=1e-2)
    big = ref.copy()
    big[1, 1] += 9e-4  # within atol + rtol * 10
    assert compare_stage("x", big, ref, 1e-4, 1e-4).passed


def test_compare_stage_nan_shape_and_missing_fail():
    ref = np.ones((2, 3), dtype=np.float32)
    nan = ref.copy()
    nan[1, 2] = np.nan
    res = compare_stage("pooled", nan, ref, 1.0, 1.0)
    assert not res.passed and "non-finite" in res.note and res.worst_index == (1, 2)
    res = compare_stage("logits", np.ones((2, 4)), ref, 1.0, 1.0)
    assert not res.passed and "shape" in res.note
    res = compare_stage("logits", None, ref, 1.0, 1.0)
    assert not res.passed and "missing in PyTorch" in res.note
    res = compare_stage("logits", ref, None, 1.0, 1.0)
    assert not res.passed and "missing in reference" in res.note


def _report(stages):
    return ParityReport(checkpoint="c", model_dir="m", head="base", num_labels=None,
                        device="cpu", dtype="float32", atol=1e-4, rtol=1e-4, reference="r",
                        stages=stages, inputs={"source": "s", "shape": [1, 2]},
                        timings={"reference": 0.1, "total": 0.2})


def test_report_names_first_failure_and_serialises():
    stages = [StageResult("embeddings", (1, 2), 1e-7, 1e-7, True),
              StageResult("layer 0", (1, 2), 1e-7, 1e-7, True),
              StageResult("layer 1", (1, 2), 3e-3, 1e-3, False, (0, 1)),
              StageResult("layer 2", (1, 2), 4e-3, 1e-3, False, (0, 0)),
              StageResult("logits", (1,), math.inf, math.inf, False, note="missing in reference")]
    report = _report(stages)
    assert not report.passed and report.first_failure == "layer 1"
    assert "first stage over tolerance: layer 1" in report.summary()
    table = report.format_table()
    assert "layer 2" in table and "FAIL (missing in reference)" in table
    data = json.loads(json.dumps(report.to_dict()))  # strict JSON: no inf
    assert data["first_failure"] == "layer 1" and data["stages"][4]["max_abs"] == "inf"
    with pytest.raises(ParityError, match="layer 1") as info:
        assert_parity(report)
    assert isinstance(info.value, AssertionError) and info.value.exit_code == 1
    passing = _report(stages[:2])
    assert passing.passed and assert_parity(passing) is passing


def test_tolerance_defaults_and_errors():
    default = resolve_tolerance("float32")
    assert (default.atol, default.rtol, default.scale) == (1e-4, 1e-4, 0.0)
    given = resolve_tolerance("float16", atol=0.5)
    assert (given.atol, given.rtol, given.scale) == (0.5, 1e-4, 0.0)
    with pytest.raises(VerificationError, match="dtype"):
        resolve_tolerance("int8")
    with pytest.raises(VerificationError, match=">= 0"):
        resolve_tolerance("float32", rtol=-1)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error raised without CUDA")
def test_cuda_requested_without_cuda_is_a_clear_error():
    with pytest.raises(VerificationError, match="CUDA is not available"):
        verify(ckpt("base"), None, device="cuda", progress=False)


def test_record_and_reference_exclude_each_other(tmp_path):
    with pytest.raises(VerificationError, match="exclude"):
        verify(ckpt("base"), None, record=tmp_path / "a.npz", reference=tmp_path / "b.npz")


# --- inputs (no TensorFlow) ----------------------------------------------------------------
def test_default_batch_is_deterministic_padded_and_has_pairs():
    vocab = os.path.join(ckpt("base"), "vocab.txt")
    a = load_inputs(vocab, "base", max_position_embeddings=64)
    b = load_inputs(vocab, "base", max_position_embeddings=64)
    for key, value in a.arrays().items():
        assert np.array_equal(value, b.arrays()[key]) and value.dtype == np.int64
    lengths = a.attention_mask.sum(axis=1)
    assert len(set(lengths.tolist())) >= 3 and lengths.min() < a.input_ids.shape[1] <= 64
    assert (a.token_type_ids == 1).any(axis=1).sum() >= 2  # sentence pairs present
    tok = make_tokenizer(vocab)
    assert (a.input_ids[:, 0] == tok.vocab["[CLS]"]).all()
    assert (a.input_ids[a.attention_mask == 0] == tok.vocab["[PAD]"]).all()
    assert len(bundled_sentences()) >= 10


def test_multiple_choice_batch_and_text_files(tmp_path):
    vocab = os.path.join(ckpt("base"), "vocab.txt")
    mc = load_inputs(vocab, "multiple-choice", max_position_embeddings=64)
    assert mc.input_ids.ndim == 3 and mc.input_ids.shape[:2] == (2, 3)
    text = tmp_path / "in.txt"
    text.write_text("# comment\nthe dog runs\n\nhello world\tthe cat said no\n", encoding="utf-8")
    inputs = load_inputs(vocab, "base", max_position_embeddings=64, text=str(text))
    assert inputs.input_ids.shape[0] == 2 and inputs.source == str(text)
    assert inputs.token_type_ids[1].max() == 1 and inputs.token_type_ids[0].max() == 0
    text.write_text("context\tone\ttwo\ncontext\tonly one\n", encoding="utf-8")
    with pytest.raises(VerificationError, match="same number"):
        read_text_file(str(text), "multiple-choice")
    text.write_text("a\tb\tc\n", encoding="utf-8")
    with pytest.raises(VerificationError, match="more than two"):
        read_text_file(str(text), "base")
    with pytest.raises(VerificationError, match="cannot read"):
        read_text_file(str(tmp_path / "absent.txt"), "base")


def test_long_text_is_truncated_to_the_limit():
    tok = make_tokenizer(os.path.join(ckpt("base"), "vocab.txt"))
    long = " ".join(["water"] * 200)
    batch = build_inputs(tok, [(long, long), (long,)], 20, vary_lengths=False)
    assert batch.input_ids.shape == (2, 20) and batch.attention_mask.all()
    assert default_examples("pretraining")[1][1]  # a real pair


# --- the TF reference against an independent implementation -------------------------------
def _google_weights(rng, cfg, vocab_size):
    h, inter = cfg["hidden_size"], cfg["intermediate_size"]

    def r(*shape):
        return (rng.standard_normal(shape) * 0.05).astype(np.float32)

    w = {"bert/embeddings/word_embeddings": r(vocab_size, h),
         "bert/embeddings/position_embeddings": r(cfg["max_position_embeddings"], h),
         "bert/embeddings/token_type_embeddings": r(2, h),
         "bert/embeddings/LayerNorm/gamma": 1 + r(h), "bert/embeddings/LayerNorm/beta": r(h)}
    for i in range(cfg["num_hidden_layers"]):
        p = f"bert/encoder/layer_{i}/"
        for part in ("attention/self/query", "attention/self/key", "attention/self/value",
                     "attention/output/dense"):
            w[f"{p}{part}/kernel"], w[f"{p}{part}/bias"] = r(h, h), r(h)
        w[p + "intermediate/dense/kernel"], w[p + "intermediate/dense/bias"] = r(h, inter), r(inter)
        w[p + "output/dense/kernel"], w[p + "output/dense/bias"] = r(inter, h), r(h)
        for ln in ("attention/output/LayerNorm", "output/LayerNorm"):
            w[f"{p}{ln}/gamma"], w[f"{p}{ln}/beta"] = 1 + r(h), r(h)
    w["bert/pooler/dense/kernel"], w["bert/pooler/dense/bias"] = r(h, h), r(h)
    w["cls/predictions/transform/dense/kernel"] = r(h, h)
    w["cls/predictions/transform/dense/bias"] = r(h)
    w["cls/predictions/transform/LayerNorm/gamma"] = 1 + r(h)
    w["cls/predictions/transform/LayerNorm/beta"] = r(h)
    w["cls/predictions/output_bias"] = r(vocab_size)
    w["cls/seq_relationship/output_weights"], w["cls/seq_relationship/output_bias"] = r(2, h), r(2)
    # One row: a multiple-choice classifier (and a one-label sequence/token classifier).
    w["output_weights"], w["output_bias"] = r(1, h), r(1)
    w["cls/squad/output_weights"], w["cls/squad/output_bias"] = r(2, h), r(2)
    return w


def _ppb_state_dict(weights):
    """Google names -> pytorch-pretrained-bert 0.6.2 keys, written out independently here."""
    special = {"cls/predictions/output_bias": "cls.predictions.bias",
               "cls/seq_relationship/output_weights": "cls.seq_relationship.weight",
               "cls/seq_relationship/output_bias": "cls.seq_relationship.bias"}
    out = {}
    for name, value in weights.items():
        if name in ("output_weights", "output_bias") or name.startswith("cls/squad"):
            continue
        tensor = torch.from_numpy(value)
        if name in special:
            out[special[name]] = tensor
            continue
        key = name.replace("/", ".").replace("layer_", "layer.")
        key = key.replace("kernel", "weight").replace("gamma", "weight").replace("beta", "bias")
        if name.endswith("kernel"):
            tensor = tensor.t().contiguous()
        if name.endswith("_embeddings"):
            key += ".weight"
        out[key] = tensor
    out["cls.predictions.decoder.weight"] = out["bert.embeddings.word_embeddings.weight"]
    return out


@pytest.mark.tf
def test_tf_reference_matches_pytorch_pretrained_bert(tf, tmp_path):
    """Our TF forward against 0.6.2's BertForPreTraining, on a checkpoint TF writes here."""
    ppb = pytest.importorskip("pytorch_pretrained_bert.modeling")
    from bertconvert.verify.tf_side import TFReference
    cfg = {"hidden_size": 32, "num_hidden_layers": 3, "num_attention_heads": 4,
           "intermediate_size": 37, "max_position_embeddings": 64, "type_vocab_size": 2,
           "hidden_act": "gelu", "vocab_size": 99}
    rng = np.random.default_rng(7)
    weights = _google_weights(rng, cfg, 99)
    names = sorted(weights)
    tf.raw_ops.SaveV2(prefix=str(tmp_path / "bert_model.ckpt"), tensor_names=names,
                      shape_and_slices=[""] * len(names), tensors=[weights[n] for n in names])
    (tmp_path / "bert_config.json").write_text(json.dumps(cfg))
    ids = rng.integers(5, 99, (4, 9))
    types = np.zeros_like(ids)
    types[:, 5:] = 1
    mask = np.ones_like(ids)
    mask[1, 6:] = mask[2, 3:] = 0
    ref = TFReference(str(tmp_path))
    assert ref.layout == "tf1" and ref.head_problem("pretraining") is None
    out = ref.forward(ids, types, mask, head="pretraining")
    assert list(out) == (["embeddings", "layer 0", "layer 1", "layer 2", "pooled"]
                         + list(HEAD_STAGES["pretraining"]))

    kwargs = {k: v for k, v in cfg.items() if k != "vocab_size"}
    model = ppb.BertForPreTraining(ppb.BertConfig(99, **kwargs)).eval()
    model.load_state_dict(_ppb_state_dict(weights))
    t = [torch.from_numpy(a.astype(np.int64)) for a in (ids, types, mask)]
    with torch.no_grad():
        layers, pooled = model.bert(*t, output_all_encoded_layers=True)
        mlm, nsp = model(*t)
    expected = {f"layer {i}": x for i, x in enumerate(layers)}
    expected.update({"pooled": pooled, "mlm logits": mlm, "nsp logits": nsp})
    for name, value in expected.items():
        np.testing.assert_allclose(out[name], value.numpy(), atol=2e-5, rtol=1e-4, err_msg=name)

    # Sub-stages: captured from 0.6.2's own modules, which follow Google's scopes too.
    from bertconvert.verify.stages import LAYER_SUBSTAGES
    sub = ref.forward(ids, types, mask, head="pretraining", substages=True)
    assert list(sub)[:7] == ["embeddings"] + [f"layer 0 {p}" for p in LAYER_SUBSTAGES] + ["layer 0"]
    assert {k: v for k, v in sub.items() if k in out}.keys() == out.keys()
    captured, handles = {}, []
    for i, layer in enumerate(model.bert.encoder.layer):
        for part, module in zip(LAYER_SUBSTAGES, (layer.attention.self.query,
                                                  layer.attention.self.key,
                                                  layer.attention.self.value, layer.attention,
                                                  layer.intermediate)):
            handles.append(module.register_forward_hook(
                lambda m, a, o, name=f"layer {i} {part}": captured.__setitem__(name, o)))
    with torch.no_grad():
        model(*t)
    for h in handles:
        h.remove()
    assert len(captured) == 3 * len(LAYER_SUBSTAGES)
    for name, value in captured.items():
        np.testing.assert_allclose(sub[name], value.numpy(), atol=2e-5, rtol=1e-4, err_msg=name)

    seq, pooled = out["layer 2"], out["pooled"]
    cls = ref.forward(ids, types, mask, head="sequence-classification")["logits"]
    np.testing.assert_allclose(cls, pooled @ weights["output_weights"].T + weights["output_bias"],
                               atol=1e-6)
    tok = ref.forward(ids, types, mask, head="token-classification")["logits"]
    np.testing.assert_allclose(tok, seq @ weights["output_weights"].T + weights["output_bias"],
                               atol=1e-6)
    qa = ref.forward(ids, types, mask, head="question-answering")
    span = seq @ weights["cls/squad/output_weights"].T + weights["cls/squad/output_bias"]
    np.testing.assert_allclose(qa["start logits"], span[..., 0], atol=1e-6)
    np.testing.assert_allclose(qa["end logits"], span[..., 1], atol=1e-6)
    mc = ref.forward(ids.reshape(2, 2, 9), types.reshape(2, 2, 9), mask.reshape(2, 2, 9),
                     head="multiple-choice")
    assert mc["logits"].shape == (2, 2)  # [batch, choices]
    np.testing.assert_allclose(mc["pooled"], pooled, atol=1e-6)  # flattened batch
    expected = (pooled @ weights["output_weights"].T + weights["output_bias"]).reshape(2, 2)
    np.testing.assert_allclose(mc["logits"], expected, atol=1e-6)


@pytest.mark.tf
def test_tf_reference_rejects_a_non_bert_checkpoint(tf, tmp_path):
    from bertconvert.verify.tf_side import TFReference
    tf.raw_ops.SaveV2(prefix=str(tmp_path / "model.ckpt"), tensor_names=["dense/kernel"],
                      shape_and_slices=[""], tensors=[np.zeros((2, 2), np.float32)])
    (tmp_path / "bert_config.json").write_text(json.dumps(
        {"hidden_size": 2, "num_hidden_layers": 1, "num_attention_heads": 1}))
    with pytest.raises(VerificationError, match="neither Google TF1 BERT names"):
        TFReference(str(tmp_path / "model.ckpt"))


# --- every fixture layout passes ---------------------------------------------------------------
@pytest.mark.tf
@pytest.mark.parametrize("layout", LAYOUTS + ["tf2-pretraining"])
def test_every_layout_passes(tf, converted, layout):
    report = verify(ckpt(layout), converted[layout], progress=False)
    assert report.passed, report.format_table()
    head = layout if layout in LAYOUTS else "pretraining"
    assert report.head == head and report.first_failure is None
    names = [s.name for s in report.stages]
    assert names[:2] == ["embeddings", "layer 0"] and "layer 4" in names
    # A pooler left out of the directory on purpose (its transformers class has none) is not
    # compared: loading initialised it afresh. Every other head's pooled output is.
    pooler_left_out = head in ("masked-lm", "token-classification", "question-answering")
    assert ("pooled" in names) != pooler_left_out
    assert any("pooler not compared" in n for n in report.notes) == pooler_left_out
    assert names[len(names) - len(HEAD_STAGES[head]):] == list(HEAD_STAGES[head])
    assert max(s.max_abs for s in report.stages) < 1e-5  # faithful: float32 round-off only
    # Every layer's sub-stages were compared too, and pass.
    assert all(len(report.stage(f"layer {i}").substages) == 5 for i in range(5))
    assert max(s.max_abs for s in report.all_stages()) < 1e-5
    if layout == "multiple-choice":
        assert report.stage("logits").shape == (2, 3)
    if layout in ("sequence-classification", "token-classification"):
        expected = {"sequence-classification": 3, "token-classification": 5}[layout]
        assert report.num_labels == expected


@pytest.mark.tf
def test_a_kept_pooler_is_compared(tf, tmp_path):
    from bertconvert.convert.run import convert_checkpoint
    convert_checkpoint(ckpt("question-answering"), tmp_path / "kept", keep_pooler=True,
                       progress=False)
    report = verify(ckpt("question-answering"), str(tmp_path / "kept"), progress=False)
    assert report.passed and report.stage("pooled").max_abs < 1e-5, report.format_table()
    assert report.weights.tensors == 89 and not any("pooler not" in n for n in report.notes)


@pytest.mark.tf
def test_converted_in_memory_and_reduced_precision(tf):
    report = verify(ckpt("question-answering"), None, progress=False)
    assert report.passed and report.head == "question-answering" and report.model_dir is None
    for dtype in ("float16", "bfloat16"):
        report = verify(ckpt("masked-lm"), None, dtype=dtype, progress=False)
        assert report.passed, report.format_table()
        expected = resolve_tolerance(dtype)
        assert (report.atol, report.rtol) == (expected.atol, expected.rtol)
        assert report.tolerance.scale == expected.scale > 0  # activation rounding
        assert report.stage("layer 4").max_abs > 1e-5  # really computed in reduced precision


@pytest.mark.tf
def test_user_text_file(tf, converted, tmp_path):
    text = tmp_path / "mine.txt"
    text.write_text("a big city\tmusic was played\nthe old house\n", encoding="utf-8")
    report = verify(ckpt("sequence-classification"), converted["sequence-classification"],
                    text=str(text), progress=False)
    assert report.passed and report.inputs["source"] == str(text)
    assert report.inputs["shape"][0] == 2
    listed = verify(ckpt("multiple-choice"), converted["multiple-choice"], progress=False,
                    text=[("the dog", "runs", "reads", "plays", "sings")])
    assert listed.passed and listed.stage("logits").shape == (1, 4)


@pytest.mark.tf
def test_config_without_architectures_compares_the_trunk(tf, converted, tmp_path):
    plain = tmp_path / "plain"
    shutil.copytree(converted["pretraining"], plain)
    config = json.loads((plain / "config.json").read_text())
    del config["architectures"]
    (plain / "config.json").write_text(json.dumps(config))
    report = verify(ckpt("pretraining"), str(plain), progress=False)
    assert report.passed and report.head == "base" and report.stages[-1].name == "pooled"
    assert any("names no architectures" in n for n in report.notes)


# --- failures are caught and localised ---------------------------------------------------
@pytest.mark.tf
def test_perturbed_weight_fails_at_its_layer(tf, converted, tmp_path):
    key = "bert.encoder.layer.3.output.dense.weight"

    def nudge(t):
        t = t.clone()
        t[5, 7] += 1e-2
        return t

    bad = edited_copy(converted["pretraining"], tmp_path / "bad", key, nudge)
    report = verify(ckpt("pretraining"), bad, progress=False)
    assert not report.passed and report.first_failure == "layer 3"
    assert report.first_differing_tensor == key and report.weights.differing_count == 1
    assert all(report.stage(f"layer {i}").passed for i in range(3))
    assert report.stage("layer 3").max_abs > 1e-4
    with pytest.raises(ParityError, match="layer 3"):
        assert_parity(ckpt("pretraining"), bad)


@pytest.mark.tf
def test_float64_exactness_check_sees_an_attention_nudge(tf, converted, tmp_path):
    # In float32 a nudged query weight hides in round-off (~1e-6); in float64 it cannot.
    key = "bert.encoder.layer.3.attention.self.query.weight"
    exact = verify(ckpt("pretraining"), converted["pretraining"], dtype="float64", progress=False)
    assert exact.passed and max(s.max_abs for s in exact.stages) < 1e-12
    bad = edited_copy(converted["pretraining"], tmp_path / "bad", key,
                      lambda t: t + (torch.arange(t.numel()).reshape(t.shape) == 5) * 1e-2)
    report = verify(ckpt("pretraining"), bad, dtype="float64", progress=False)
    assert report.first_failure == "layer 3", report.format_table()


@pytest.mark.tf
@pytest.mark.parametrize("key, stage", [
    ("encoder.layer.1.attention.output.dense.weight", "layer 1"),
    ("encoder.layer.0.attention.self.query.weight", "layer 0"),
    ("pooler.dense.weight", "pooled"),
])
def test_transposed_kernel_fails(tf, converted, tmp_path, key, stage):
    # Square kernels: a forgotten or doubled transpose still loads, and computes wrong.
    bad = edited_copy(converted["base"], tmp_path / "bad", key, lambda t: t.t())
    report = verify(ckpt("base"), bad, progress=False)
    assert report.first_failure == stage, report.format_table()


def test_head_the_checkpoint_lacks_is_an_input_error(converted):
    # The pre-training checkpoint holds no classifier: neither side could compute one, so
    # asking for it is a usage mistake (exit 2) naming the heads it does hold, not a FAIL.
    with pytest.raises(HeadNotInCheckpointError,
                       match="holds no sequence-classification head.*base, pretraining, "
                             "masked-lm, next-sentence") as info:
        verify(ckpt("pretraining"), converted["pretraining"],
               head="sequence-classification", num_labels=3, progress=False)
    assert info.value.exit_code == 2
    with pytest.raises(HeadNotInCheckpointError, match="holds no question-answering head"):
        verify(ckpt("sequence-classification"), converted["sequence-classification"],
               head="question-answering", progress=False)


# --- golden files and missing TensorFlow --------------------------------------------------------
def _run_without_tf(code):
    """Run ``code`` in a fresh interpreter where ``import tensorflow`` fails."""
    script = "import sys\nsys.modules['tensorflow'] = None\n" + textwrap.dedent(code)
    return subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          cwd=ROOT, timeout=240)


def test_tensorflow_import_notices_are_filtered_and_other_stderr_kept():
    """TF 2.16+ prints its oneDNN/absl notices on fd 2 at import, ignoring
    TF_CPP_MIN_LOG_LEVEL; they are dropped, while anything else written meanwhile (a
    progress bar, a real warning) is written back."""
    code = textwrap.dedent("""
        import os, sys
        from bertconvert.verify.tf_runtime import _import_notices_filtered
        with _import_notices_filtered():
            os.write(2, b"WARNING: All log messages before absl::InitializeLog() is called are "
                        b"written to STDERR\\n")
            os.write(2, b"I0000 port.cc:153] oneDNN custom operations are on. You may see\\n")
            os.write(2, b"a real warning\\n")
            sys.stderr.write("progress 50%\\n")
        sys.stderr.write("after\\n")
    """)
    env = dict(os.environ)
    env.pop("TF_CPP_MIN_LOG_LEVEL", None)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                          env=env, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == "a real warning\nprogress 50%\nafter\n"
    env["TF_CPP_MIN_LOG_LEVEL"] = "0"  # the user asked for every TF log line
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                          env=env, timeout=60)
    assert "oneDNN" in proc.stderr and "a real warning" in proc.stderr


@pytest.mark.tf
@pytest.mark.slow
def test_importing_tensorflow_for_verify_prints_no_notices(tf):
    env = dict(os.environ)
    env.pop("TF_CPP_MIN_LOG_LEVEL", None)
    proc = subprocess.run(
        [sys.executable, "-c", "from bertconvert.verify.tf_runtime import import_tensorflow as i; "
                               "i().constant(1.0)"],
        capture_output=True, text=True, cwd=ROOT, env=env, timeout=240)
    assert proc.returncode == 0, proc.stderr
    assert "oneDNN" not in proc.stderr and "absl::InitializeLog" not in proc.stderr, proc.stderr


@pytest.mark.slow
def test_missing_tensorflow_gives_install_hint(converted):
    proc = _run_without_tf(f"""
        from bertconvert.errors import MissingDependencyError
        from bertconvert.verify import verify
        try:
            verify({ckpt('base')!r}, {converted['base']!r}, progress=False)
        except MissingDependencyError as e:
            print("API:", e)
        from bertconvert.cli import main
        sys.exit(main(["verify", {ckpt('base')!r}, {converted['base']!r}]))
    """)
    assert proc.returncode == 2, proc.stderr
    assert "API:" in proc.stdout and "pip install '.[tf]'" in proc.stdout
    assert "reference=GOLDEN_NPZ" in proc.stdout  # Python callers read the keyword
    assert "pip install '.[tf]'" in proc.stderr and "pip install tensorflow-cpu" in proc.stderr
    assert "--reference golden.npz" in proc.stderr and "reference=" not in proc.stderr


@pytest.mark.tf
@pytest.mark.slow
def test_golden_round_trip_without_tensorflow(tf, converted, tmp_path):
    golden = str(tmp_path / "golden.npz")
    recorded = verify(ckpt("token-classification"), converted["token-classification"],
                      record=golden, progress=False)
    assert recorded.passed and os.path.isfile(golden)
    bad = edited_copy(converted["token-classification"], tmp_path / "bad",
                      "bert.encoder.layer.2.intermediate.dense.weight",
                      lambda t: t + (torch.arange(t.numel()).reshape(t.shape) == 11) * 1e-2)
    proc = _run_without_tf(f"""
        import json
        from bertconvert.verify import verify
        good = verify({ckpt('token-classification')!r}, {converted['token-classification']!r},
                      reference={golden!r}, progress=False)
        bad = verify("absent/checkpoint", {bad!r}, reference={golden!r}, progress=False)
        print(json.dumps([good.to_dict(), bad.to_dict()]))
    """)
    assert proc.returncode == 0, proc.stderr
    good, bad = json.loads(proc.stdout.strip().splitlines()[-1])
    assert good["passed"] and good["reference"].startswith("golden file")
    assert [s["name"] for s in good["stages"]] == [s.name for s in recorded.stages]
    assert not bad["passed"] and bad["first_failure"] == "layer 2"
    assert any("not found here" in n for n in bad["notes"])
    with pytest.raises(VerificationError, match="float64"):  # float32 outputs cannot judge it
        verify(ckpt("token-classification"), converted["token-classification"],
               reference=golden, dtype="float64", progress=False)
    # Token and sequence classifiers hold the same variables, so a golden file recorded for
    # one is easily used with the other: a clear error before any work, not a confusing FAIL.
    with pytest.raises(VerificationError, match="token-classification head but the model is "
                       "sequence-classification; record it again with --head sequence-class"):
        verify(ckpt("sequence-classification"), converted["sequence-classification"],
               reference=golden, progress=False)


def test_golden_file_of_another_checkpoint_is_a_clear_error(tmp_path):
    """Without a model directory the head and label count come from the golden file; one
    recorded from another checkpoint must say so, not blame a --num-labels never passed."""
    from bertconvert.verify.golden import save_golden
    from bertconvert.verify.inputs import VerifyInputs

    ids = np.ones((2, 4), dtype=np.int64)
    golden = save_golden(tmp_path / "tok.npz", VerifyInputs(ids, ids * 0, ids, source="test"),
                         {"embeddings": np.zeros((2, 4, 32), np.float32)},
                         checkpoint="elsewhere/bert_model.ckpt", head="token-classification",
                         num_labels=5)
    with pytest.raises(VerificationError, match="recorded for a token-classification head with 5 "
                       "labels, which .* does not hold .* recorded from elsewhere/bert_model"):
        verify(ckpt("sequence-classification"), None, reference=golden, progress=False)


def test_golden_file_errors(tmp_path):
    from bertconvert.verify.golden import load_golden
    with pytest.raises(VerificationError, match="does not exist"):
        load_golden(tmp_path / "none.npz")
    junk = tmp_path / "junk.npz"
    junk.write_bytes(b"not a zip")
    with pytest.raises(VerificationError, match="not a readable"):
        load_golden(junk)
    other = tmp_path / "other.npz"
    np.savez(other, x=np.zeros(2))
    with pytest.raises(VerificationError, match="meta"):
        load_golden(other)
