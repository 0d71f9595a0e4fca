"""A resumed model moved after :func:`resume_from_tf` (``model.to(device)``, ``model.double()``)
keeps training: the loaded Adam slots follow their parameter to its device and dtype on the
next step, as torch's own optimizers' loaded state does, instead of silently keeping float32
slots (or, moved to a GPU, failing with "Tensor on device cuda:0 is not on the expected
device cpu"; no GPU here: the dtype case is the one tested)."""
import numpy as np
import torch

from bertconvert.training import resume_from_tf

from .resume_fixture import batch, checkpoint, expected, resume_kwargs


def _step(model, optimizer, scheduler, exp, i):
    b = {k: v.to(next(model.parameters()).device) for k, v in batch(exp, i).items()}
    loss = model(b["input_ids"], b["segment_ids"], b["input_mask"], labels=b["label_ids"])
    loss.backward()
    optimizer.step()
    scheduler.step()
    optimizer.zero_grad()


def test_slots_follow_a_model_moved_to_float64():
    exp = expected()
    model, optimizer, scheduler = resume_from_tf(checkpoint(), **resume_kwargs())
    ref, ref_opt, ref_sched = resume_from_tf(checkpoint(), **resume_kwargs())
    model.double()
    _step(model, optimizer, scheduler, exp, 0)
    _step(ref, ref_opt, ref_sched, exp, 0)
    for (key, p), (_, q) in zip(model.named_parameters(), ref.named_parameters()):
        state = optimizer.state[p]
        assert state["adam_m"].dtype == torch.float64 and state["adam_v"].dtype == torch.float64
        # the same update as the float32 run, up to float32 round-off of the step
        np.testing.assert_allclose(p.detach().numpy(), q.detach().double().numpy(),
                                   rtol=0, atol=1e-5, err_msg=key)
