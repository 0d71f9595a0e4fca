"""Google's initialisation in one place, and building on the meta device without it."""
import os
import subprocess
import sys
import threading

import torch
from torch import nn

from bertconvert.models.heads import HEADS, build_model
from bertconvert.models.initialise import (NORMAL, ONES, ZEROS, init_, kind_of_key,
                                           kind_of_module_tensor, on_meta_device)

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_key_and_module_rules_agree_on_every_parameter_of_every_head(tiny_config):
    for head in HEADS:
        model = build_model(head, tiny_config, num_labels=3)
        for module_name, module in model.named_modules():
            for attr, _ in module.named_parameters(recurse=False):
                key = f"{module_name}.{attr}" if module_name else attr
                assert kind_of_key(key) == kind_of_module_tensor(module, attr), key


def test_a_fresh_model_starts_as_google_initialises_it(tiny_config):
    torch.manual_seed(0)
    model = build_model("pretraining", tiny_config)
    assert torch.equal(model.bert.embeddings.LayerNorm.weight, torch.ones(tiny_config.hidden_size))
    assert not model.cls.predictions.bias.any() and not model.bert.pooler.dense.bias.any()
    weight = model.bert.encoder.layer[0].intermediate.dense.weight
    assert abs(weight.std().item() - tiny_config.initializer_range) < 0.2 * tiny_config.initializer_range
    torch.manual_seed(0)
    expected = init_(torch.empty(5, 7), NORMAL, 0.02)
    torch.manual_seed(0)
    assert torch.equal(init_(torch.empty(5, 7), kind_of_key("x.dense.weight"), 0.02), expected)
    assert torch.equal(init_(torch.empty(3), ONES, 0.02), torch.ones(3))
    assert torch.equal(init_(torch.full((3,), 5.0), ZEROS, 0.02), torch.zeros(3))


def test_meta_building_skips_init_in_this_thread_only_and_patches_nothing(tiny_config):
    originals = {name: getattr(nn.init, name) for name in dir(nn.init)}
    built_elsewhere = []
    with on_meta_device():
        model = build_model("base", tiny_config)
        assert {name: getattr(nn.init, name) for name in dir(nn.init)} == originals
        thread = threading.Thread(target=lambda: built_elsewhere.append(build_model("base", tiny_config)))
        thread.start()
        thread.join()
    assert all(p.is_meta for p in model.parameters())
    other = built_elsewhere[0]
    assert not any(p.is_meta for p in other.parameters()) and other.pooler.dense.weight.std() > 0


def test_from_pretrained_pays_for_no_meta_random_init(tmp_path, tiny_config):
    """normal_ on meta tensors would import torch._dynamo (about a second); loading skips it."""
    build_model("pretraining", tiny_config).save_pretrained(tmp_path)
    code = ("import sys; from bertconvert import BertForPreTraining; "
            f"BertForPreTraining.from_pretrained({str(tmp_path)!r}); "
            "print('torch._dynamo' in sys.modules)")
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                         check=True)
    assert out.stdout.strip() == "False"
