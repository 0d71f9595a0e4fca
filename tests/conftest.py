"""Shared fixtures. Keep this file small: helpers for one test module belong in that module."""
import os

import pytest
import torch

from bertconvert import BertConfig


@pytest.fixture
def tiny_config():
    """Google's deliberately odd test config (modeling_test.py): nothing divides evenly."""
    return BertConfig(99, hidden_size=32, num_hidden_layers=5, num_attention_heads=4,
                      intermediate_size=37, max_position_embeddings=64, type_vocab_size=2)


@pytest.fixture
def tiny_batch():
    """batch 13 x seq 7 with segment ids and real padding (rows of different lengths)."""
    gen = torch.Generator().manual_seed(1234)
    batch, seq = 13, 7
    input_ids = torch.randint(1, 99, (batch, seq), generator=gen)
    lengths = torch.randint(2, seq + 1, (batch,), generator=gen)
    lengths[0] = seq
    attention_mask = (torch.arange(seq)[None, :] < lengths[:, None]).long()
    input_ids = input_ids * attention_mask  # [PAD] = 0 where masked
    token_type_ids = ((torch.arange(seq)[None, :] >= (lengths[:, None] // 2)) & attention_mask.bool()).long()
    return {"input_ids": input_ids, "token_type_ids": token_type_ids,
            "attention_mask": attention_mask}


FIXTURE_CHECKPOINTS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                   "fixtures", "checkpoints")


def fixture_checkpoint(name):
    """Directory of a bundled TF-written checkpoint (fixtures/make_fixtures.py)."""
    return os.path.join(FIXTURE_CHECKPOINTS, name)


class _ConvertedFixtures(dict):
    """name -> model directory, converted by our (TF-free) converter on first use only."""

    def __init__(self, root):
        super().__init__()
        self.root = root

    def __missing__(self, name):
        from bertconvert.convert.run import convert_checkpoint
        from bertconvert.models.heads import HEADS
        out = str(self.root / name)
        # Fixture directories are named after their head; others (tf2-*, *-adam) auto-detect.
        convert_checkpoint(fixture_checkpoint(name), out,
                           head=name if name in HEADS else "auto", progress=False)
        self[name] = out
        return out


@pytest.fixture(scope="session")
def converted_fixtures(tmp_path_factory):
    """Bundled fixtures converted once per test session, shared by the verify tests.

    Tests must not modify these directories (copy one first, as the nudge tests do).
    """
    return _ConvertedFixtures(tmp_path_factory.mktemp("converted-fixtures"))


@pytest.fixture
def no_threads(monkeypatch):
    """A process at its thread limit: every thread started from now on fails to start (hashing
    must then fall back to the caller's thread, with the same results)."""
    import threading

    def refuse(self):
        raise RuntimeError("can't start new thread")

    monkeypatch.setattr(threading.Thread, "start", refuse)


@pytest.fixture
def tf():
    """TensorFlow, or a skip saying why (reference tests need it; conversion never does)."""
    return pytest.importorskip("tensorflow", reason="TensorFlow is needed for the reference")


#: Units of fp32 rounding (eps = 2**-23, relative) that two fp32 evaluations of the same
#: network may differ by at the scale of their outputs. Other kernels, summation orders or
#: buffer alignments (a reloaded copy of a model, sdpa against plain attention, another CPU)
#: each round differently, and a few layers of O(1) weights amplify those differences:
#: ~8-14 units have been seen on the test models; 64 leaves room without hiding a real bug
#: (a wrong mask, scale or weight moves outputs by 1e-3 or more).
FP32_ULPS = 64


def assert_fp32_close(actual, expected, ulps=FP32_ULPS):
    """Model outputs computed twice in float32 agree within ``ulps`` units of fp32 rounding
    at the outputs' scale (never bit equality: that only holds for weights and files)."""
    assert actual.shape == expected.shape
    scale = max(1.0, float(expected.detach().abs().max())) if expected.numel() else 1.0
    atol = ulps * torch.finfo(torch.float32).eps * scale
    torch.testing.assert_close(actual, expected, rtol=0, atol=atol)
