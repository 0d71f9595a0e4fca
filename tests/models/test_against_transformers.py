"""Acceptance: transformers' BertFor* directories load into our classes and compute the same
outputs (<= 1e-5, fp32, padded batch), and our directories load back into transformers with no
missing keys and the same outputs. transformers is a test-only dependency."""
import logging

import pytest
import torch

import bertconvert
from bertconvert import HEADS

transformers = pytest.importorskip("transformers")

NUM_LABELS = {"sequence-classification": 3, "token-classification": 5}
TOL = 1e-5


@pytest.fixture(scope="module", autouse=True)
def quiet_transformers():
    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()
    yield
    transformers.logging.enable_progress_bar()


def hf_class(head):
    return getattr(transformers, HEADS[head].__name__)


def hf_config(head):
    return transformers.BertConfig(vocab_size=99, hidden_size=32, num_hidden_layers=5,
                                   num_attention_heads=4, intermediate_size=37,
                                   max_position_embeddings=64, num_labels=NUM_LABELS.get(head, 2))


def spread_weights(model, seed):
    """O(1) weights so the activations reach where GELU forms and mask constants differ."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            noise = torch.randn(param.shape, generator=gen)
            param.copy_(1 + 0.3 * noise if "LayerNorm.weight" in name else 0.3 * noise)


def batch_for(head, tiny_batch):
    if head == "multiple-choice":
        return {k: v[:12].reshape(4, 3, -1) for k, v in tiny_batch.items()}
    return tiny_batch


def hf_outputs(model, head, batch, **labels):
    out = model(input_ids=batch["input_ids"], token_type_ids=batch["token_type_ids"],
                attention_mask=batch["attention_mask"], output_hidden_states=(head == "base"),
                return_dict=True, **labels)
    if labels:
        return out.loss
    if head == "base":
        return tuple(out.hidden_states[1:]) + (out.pooler_output,)
    if head == "pretraining":
        return out.prediction_logits, out.seq_relationship_logits
    if head == "question-answering":
        return out.start_logits, out.end_logits
    return (out.logits,)


def our_outputs(model, head, batch, **labels):
    out = model(batch["input_ids"], batch["token_type_ids"], batch["attention_mask"], **labels)
    if head == "base":
        return tuple(out[0]) + (out[1],)
    return out if isinstance(out, tuple) else (out,)


def assert_close(ours, theirs):
    assert len(ours) == len(theirs)
    for a, b in zip(ours, theirs):
        assert a.shape == b.shape
        assert (a - b).abs().max().item() <= TOL


def labels_for(head, batch):
    """(our kwargs, transformers' kwargs) with the same meaning under both conventions."""
    gen = torch.Generator().manual_seed(11)
    ids, mask = batch["input_ids"], batch["attention_mask"]
    if head in ("pretraining", "masked-lm"):
        mlm = torch.randint(0, 99, ids.shape, generator=gen).masked_fill(torch.rand(ids.shape, generator=gen) < 0.5, -100)
        ours, theirs = {"masked_lm_labels": mlm}, {"labels": mlm}
        if head == "pretraining":
            nsp = torch.randint(0, 2, ids.shape[:1], generator=gen)
            ours["next_sentence_label"] = theirs["next_sentence_label"] = nsp
        return ours, theirs
    if head == "next-sentence":
        nsp = torch.randint(0, 2, ids.shape[:1], generator=gen)
        return {"next_sentence_label": nsp}, {"labels": nsp}
    if head in ("sequence-classification", "multiple-choice"):
        labels = torch.randint(0, ids.shape[1] if head == "multiple-choice" else 3, ids.shape[:1], generator=gen)
        return {"labels": labels}, {"labels": labels}
    if head == "token-classification":  # 0.6.2 scores only unmasked tokens; HF skips -100
        labels = torch.randint(0, 5, ids.shape, generator=gen)
        return {"labels": labels}, {"labels": labels.masked_fill(mask == 0, -100)}
    start = torch.randint(0, 9, ids.shape[:1], generator=gen)
    end = torch.randint(0, 9, ids.shape[:1], generator=gen)
    return ({"start_positions": start, "end_positions": end},
            {"start_positions": start, "end_positions": end})


@pytest.mark.parametrize("head", list(HEADS))
def test_transformers_directory_loads_into_ours_with_same_outputs(tmp_path, tiny_batch, head, caplog):
    theirs = hf_class(head)(hf_config(head)).eval()
    spread_weights(theirs, seed=len(head))
    theirs.save_pretrained(tmp_path)
    caplog.set_level(logging.WARNING, logger="bertconvert")
    ours = getattr(bertconvert, HEADS[head].__name__).from_pretrained(tmp_path)
    assert [r.getMessage() for r in caplog.records] == []  # nothing missing, nothing unused
    assert getattr(ours, "num_labels", NUM_LABELS.get(head)) == NUM_LABELS.get(head)
    batch = batch_for(head, tiny_batch)
    with torch.no_grad():
        assert_close(our_outputs(ours, head, batch), hf_outputs(theirs, head, batch))
        if head != "base":
            ours_labels, hf_labels = labels_for(head, batch)
            loss = our_outputs(ours, head, batch, **ours_labels)[0]
            assert abs(loss.item() - hf_outputs(theirs, head, batch, **hf_labels).item()) <= TOL


@pytest.mark.parametrize("head", list(HEADS))
def test_our_directory_loads_into_transformers_with_no_missing_keys(tmp_path, tiny_batch, head):
    torch.manual_seed(0)
    config = bertconvert.BertConfig(99, hidden_size=32, num_hidden_layers=5, num_attention_heads=4,
                                    intermediate_size=37, max_position_embeddings=64)
    ours = bertconvert.models.heads.build_model(head, config, num_labels=NUM_LABELS.get(head)).eval()
    spread_weights(ours, seed=100 + len(head))
    ours.save_pretrained(tmp_path)
    theirs, info = hf_class(head).from_pretrained(tmp_path, output_loading_info=True)
    theirs.eval()
    assert info["missing_keys"] == set() or info["missing_keys"] == []
    assert not info["mismatched_keys"]
    if head in NUM_LABELS:
        assert theirs.config.num_labels == NUM_LABELS[head]
    batch = batch_for(head, tiny_batch)
    with torch.no_grad():
        assert_close(our_outputs(ours, head, batch), hf_outputs(theirs, head, batch))


@pytest.mark.parametrize("head", [h for h in HEADS if h != "base"])
def test_loaded_model_trains(tmp_path, tiny_batch, head):
    theirs = hf_class(head)(hf_config(head))
    theirs.save_pretrained(tmp_path)
    ours = getattr(bertconvert, HEADS[head].__name__).from_pretrained(tmp_path).train()
    batch = batch_for(head, tiny_batch)
    loss = our_outputs(ours, head, batch, **labels_for(head, batch)[0])[0]
    assert torch.isfinite(loss)
    loss.backward()
    grad = ours.bert.encoder.layer[0].attention.self.query.weight.grad
    assert grad is not None and torch.isfinite(grad).all() and grad.abs().sum() > 0
    assert ours.bert.embeddings.word_embeddings.weight.grad is not None
