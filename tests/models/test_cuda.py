"""CUDA: every fixture layout's converted model on the GPU against TensorFlow's outputs, and the
PyTorch model family on the GPU against itself on the CPU.

Skipped without a CUDA GPU (so in CI). TensorFlow runs on the CPU only and is usually not
installed on GPU machines, so the reference comes from golden files: recorded on the fly
when TensorFlow is importable, or read from ``$BERTCONVERT_GOLDEN_DIR`` as
``<fixture>.npz`` (float32 reference) and ``<fixture>.float64.npz``, recorded on a machine
with TensorFlow by::

    bertconvert verify fixtures/checkpoints/<fixture> - --head <head> --record <dir>/<fixture>.npz
    bertconvert verify fixtures/checkpoints/pretraining - --dtype float64 \
        --record <dir>/pretraining.float64.npz

(``--head``: the fixture's name for the eight TF1 layouts, left out for the others.)
"""
import os

import pytest
import torch

import bertconvert
from bertconvert.models.heads import HEADS
from bertconvert.verify import verify

from ..conftest import fixture_checkpoint

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")

#: The eight TF1 head layouts, the TF2 Model-Garden layout and a checkpoint with Adam slots.
FIXTURES = ["base", "pretraining", "masked-lm", "next-sentence", "sequence-classification",
            "multiple-choice", "token-classification", "question-answering", "tf2-pretraining",
            "pretraining-adam"]
ENV_GOLDEN_DIR = "BERTCONVERT_GOLDEN_DIR"
HEAD_CLASSES = ["BertModel", "BertForPreTraining", "BertForMaskedLM",
                "BertForNextSentencePrediction", "BertForSequenceClassification",
                "BertForMultipleChoice", "BertForTokenClassification", "BertForQuestionAnswering"]


@pytest.fixture(scope="module")
def golden(tmp_path_factory):
    """``golden(fixture, reference_dtype)`` -> path of a golden file for that fixture."""
    recorded = {}

    def get(name, reference_dtype="float32"):
        suffix = "" if reference_dtype == "float32" else f".{reference_dtype}"
        directory = os.environ.get(ENV_GOLDEN_DIR)
        if directory:
            path = os.path.join(directory, f"{name}{suffix}.npz")
            if os.path.exists(path):
                return path
        key = (name, reference_dtype)
        if key not in recorded:
            pytest.importorskip("tensorflow", reason=f"no TensorFlow and no golden file for "
                                f"{name} in ${ENV_GOLDEN_DIR}")
            path = str(tmp_path_factory.mktemp("golden") / f"{name}{suffix}.npz")
            # The classifier layouts hold the same variables: name the head, as conftest's
            # converted_fixtures does, or the checkpoint reads as sequence-classification.
            report = verify(fixture_checkpoint(name), None, head=name if name in HEADS else None,
                            dtype=reference_dtype, record=path, progress=False)
            assert report.passed, report.format_table()  # on the CPU, while recording
            recorded[key] = path
        return recorded[key]

    return get


@pytest.mark.parametrize("name", FIXTURES)
def test_every_layout_matches_tensorflow_on_cuda(name, golden, converted_fixtures):
    report = verify(fixture_checkpoint(name), converted_fixtures[name], device="cuda",
                    reference=golden(name), progress=False)
    assert report.device == "cuda"
    assert report.passed, report.format_table()


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
@pytest.mark.parametrize("name", ["pretraining", "question-answering", "sequence-classification"])
def test_reduced_precision_on_cuda_within_its_tolerance(name, dtype, golden, converted_fixtures):
    report = verify(fixture_checkpoint(name), converted_fixtures[name], device="cuda",
                    dtype=dtype, reference=golden(name), progress=False)
    assert report.passed, report.format_table()
    assert report.dtype == dtype


def test_float64_on_cuda_is_an_exactness_check(golden, converted_fixtures):
    report = verify(fixture_checkpoint("pretraining"), converted_fixtures["pretraining"],
                    device="cuda", dtype="float64", reference=golden("pretraining", "float64"),
                    progress=False)
    assert report.passed, report.format_table()
    assert max(s.max_abs for s in report.all_stages()) < 1e-9


def test_verify_disables_tf32_and_restores_it(golden, converted_fixtures):
    """TF32 matmuls (10-bit mantissa) would blow float32 tolerances on large layers: verify
    turns them off while comparing and leaves the caller's setting as it found it."""
    before = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = True
    try:
        report = verify(fixture_checkpoint("pretraining"), converted_fixtures["pretraining"],
                        device="cuda", reference=golden("pretraining"), progress=False)
        assert torch.backends.cuda.matmul.allow_tf32 is True
    finally:
        torch.backends.cuda.matmul.allow_tf32 = before
    assert report.passed, report.format_table()


def _heads(config):
    return {
        "BertModel": bertconvert.BertModel(config),
        "BertForPreTraining": bertconvert.BertForPreTraining(config),
        "BertForMaskedLM": bertconvert.BertForMaskedLM(config),
        "BertForNextSentencePrediction": bertconvert.BertForNextSentencePrediction(config),
        "BertForSequenceClassification": bertconvert.BertForSequenceClassification(config, 3),
        "BertForMultipleChoice": bertconvert.BertForMultipleChoice(config, 2),
        "BertForTokenClassification": bertconvert.BertForTokenClassification(config, 5),
        "BertForQuestionAnswering": bertconvert.BertForQuestionAnswering(config),
    }


def _as_tuple(out):
    if isinstance(out, torch.Tensor):
        return (out,)
    flat = []
    for item in out:
        flat.extend(_as_tuple(item) if isinstance(item, (tuple, list)) else [item])
    return tuple(flat)


@pytest.mark.parametrize("head", HEAD_CLASSES)
def test_every_head_gives_the_same_outputs_on_cuda_as_on_cpu(head, tiny_config, tiny_batch):
    torch.manual_seed(0)
    model = _heads(tiny_config)[head].eval()
    batch = dict(tiny_batch)
    if head == "BertForMultipleChoice":  # [batch, choices, seq]
        batch = {k: v[:12].reshape(6, 2, -1) for k, v in batch.items()}
    with torch.inference_mode():
        on_cpu = _as_tuple(model(**batch))
        saved = torch.backends.cuda.matmul.allow_tf32
        torch.backends.cuda.matmul.allow_tf32 = False
        try:
            gpu_model = model.to("cuda")
            on_gpu = _as_tuple(gpu_model(**{k: v.cuda() for k, v in batch.items()}))
        finally:
            torch.backends.cuda.matmul.allow_tf32 = saved
    assert len(on_cpu) == len(on_gpu)
    for a, b in zip(on_cpu, on_gpu):
        assert b.device.type == "cuda"
        torch.testing.assert_close(b.cpu(), a, atol=1e-5, rtol=1e-5)


def test_from_pretrained_directory_runs_on_cuda(converted_fixtures):
    model = bertconvert.BertForPreTraining.from_pretrained(converted_fixtures["pretraining"]).eval()
    ids = torch.tensor([[2, 5, 7, 9, 3, 0]])
    mask = (ids != 0).long()
    with torch.inference_mode():
        scores_cpu, nsp_cpu = model(ids, attention_mask=mask)
        model.cuda()
        scores_gpu, nsp_gpu = model(ids.cuda(), attention_mask=mask.cuda())
    torch.testing.assert_close(scores_gpu.cpu(), scores_cpu, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(nsp_gpu.cpu(), nsp_cpu, atol=1e-4, rtol=1e-4)
