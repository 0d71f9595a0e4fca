"""fixtures/resume (written by fixtures/make_resume_fixture.py with Google's optimization.py):
the run's settings, its batches, and TensorFlow's continuation."""
import json
import os
import shutil

import numpy as np
import torch

from bertconvert.convert.rules import reverse_rule

FIXTURES = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                        "fixtures")
REF = os.path.join(FIXTURES, "resume")             # TF1 ref variables: lr read at step + 1
RESOURCE = os.path.join(FIXTURES, "resume-resource")  # resource variables: lr read at step


def run_of(fixture=REF):
    with open(os.path.join(fixture, "run.json"), encoding="utf-8") as f:
        return json.load(f)


def expected(fixture=REF):
    return np.load(os.path.join(fixture, "expected.npz"))


def resume_kwargs(fixture=REF, **over):
    run = run_of(fixture)
    kwargs = dict(head="sequence-classification", num_labels=run["num_labels"],
                  learning_rate=run["init_lr"], num_train_steps=run["num_train_steps"],
                  num_warmup_steps=run["num_warmup_steps"])
    kwargs.update(over)
    return kwargs


def checkpoint(fixture=REF):
    return os.path.join(fixture, f"model.ckpt-{run_of(fixture)['K']}")


def copy_fixture(tmp_path, fixture=REF):
    """A private copy (tests that rewrite the checkpoint)."""
    target = tmp_path / os.path.basename(fixture)
    shutil.copytree(fixture, target)
    return str(target)


def batch(exp, i):
    return {k: torch.from_numpy(exp[f"batch_{i}_{k}"]).long()
            for k in ("input_ids", "input_mask", "segment_ids", "label_ids")}


def continue_run(model, optimizer, scheduler, exp, steps):
    """The documented loop over the fixture's continuation batches: ``[(loss, lr used,
    worst |weight - TF's|), ...]``."""
    out = []
    for i in steps:
        b = batch(exp, i)
        lr = optimizer.param_groups[0]["lr"]
        loss = model(b["input_ids"], b["segment_ids"], b["input_mask"], labels=b["label_ids"])
        loss.backward()
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad()
        out.append((float(loss.detach()), lr, worst_weight_error(model, exp, i)))
    return out


def worst_weight_error(model, exp, i):
    worst = 0.0
    for key, p in model.named_parameters():
        rule, name = reverse_rule(key)
        want = exp[f"after_{i}/{name}"]
        if rule.transform == "transpose":
            want = want.T
        worst = max(worst, float(np.abs(p.detach().numpy() - want).max()))
    return worst
