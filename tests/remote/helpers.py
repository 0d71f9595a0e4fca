"""A small BERT checkpoint with Adam slots, and ways to put it behind loopback servers."""
import json
import os
from urllib.parse import urlsplit

import numpy as np
import pytest

from .proxy import CountingProxy

#: Small but not tiny: a request's headers must be noise next to its body, as with real models.
CONFIG = dict(vocab_size=2000, hidden_size=128, num_hidden_layers=2, num_attention_heads=2,
              intermediate_size=512, hidden_act="gelu", hidden_dropout_prob=0.1,
              attention_probs_dropout_prob=0.1, max_position_embeddings=128, type_vocab_size=2,
              initializer_range=0.02)


def variable_shapes(cfg):
    """Google's pre-training layout (TF1 names): name -> shape."""
    h, i, v = cfg["hidden_size"], cfg["intermediate_size"], cfg["vocab_size"]
    shapes = {"bert/embeddings/word_embeddings": (v, h),
              "bert/embeddings/token_type_embeddings": (cfg["type_vocab_size"], h),
              "bert/embeddings/position_embeddings": (cfg["max_position_embeddings"], h),
              "bert/embeddings/LayerNorm/gamma": (h,), "bert/embeddings/LayerNorm/beta": (h,)}
    for n in range(cfg["num_hidden_layers"]):
        p = f"bert/encoder/layer_{n}/"
        for proj in ("query", "key", "value"):
            shapes[p + f"attention/self/{proj}/kernel"] = (h, h)
            shapes[p + f"attention/self/{proj}/bias"] = (h,)
        shapes.update({
            p + "attention/output/dense/kernel": (h, h), p + "attention/output/dense/bias": (h,),
            p + "attention/output/LayerNorm/gamma": (h,), p + "attention/output/LayerNorm/beta": (h,),
            p + "intermediate/dense/kernel": (h, i), p + "intermediate/dense/bias": (i,),
            p + "output/dense/kernel": (i, h), p + "output/dense/bias": (h,),
            p + "output/LayerNorm/gamma": (h,), p + "output/LayerNorm/beta": (h,)})
    shapes.update({
        "bert/pooler/dense/kernel": (h, h), "bert/pooler/dense/bias": (h,),
        "cls/predictions/transform/dense/kernel": (h, h),
        "cls/predictions/transform/dense/bias": (h,),
        "cls/predictions/transform/LayerNorm/gamma": (h,),
        "cls/predictions/transform/LayerNorm/beta": (h,),
        "cls/predictions/output_bias": (v,),
        "cls/seq_relationship/output_weights": (2, h), "cls/seq_relationship/output_bias": (2,)})
    return shapes


def write_adam_checkpoint(directory, cfg=CONFIG, seed=0):
    """``(prefix, model tensor bytes)`` of a random TF1 pre-training checkpoint with Adam
    slots, ``bert_config.json`` and ``vocab.txt`` in ``directory``."""
    from bertconvert.checkpoint import save_checkpoint

    rng = np.random.default_rng(seed)
    tensors, model_bytes = {}, 0
    for name, shape in variable_shapes(cfg).items():
        tensors[name] = (rng.standard_normal(shape) * 0.02).astype(np.float32)
        model_bytes += tensors[name].nbytes
        tensors[name + "/adam_m"] = (rng.standard_normal(shape) * 1e-3).astype(np.float32)
        tensors[name + "/adam_v"] = np.abs(rng.standard_normal(shape) * 1e-6).astype(np.float32)
    tensors["global_step"] = np.array(1000, np.int64)
    os.makedirs(directory, exist_ok=True)
    prefix = os.path.join(directory, "model.ckpt-1000")
    save_checkpoint(prefix, tensors)
    with open(os.path.join(directory, "bert_config.json"), "w") as f:
        json.dump(cfg, f)
    with open(os.path.join(directory, "vocab.txt"), "w") as f:
        f.write("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
                          + [f"tok{i}" for i in range(cfg["vocab_size"] - 5)]) + "\n")
    return prefix, model_bytes


@pytest.fixture(scope="session")
def adam_checkpoint(tmp_path_factory):
    """``(directory, prefix, model tensor bytes)`` of the shared Adam-slot checkpoint."""
    directory = str(tmp_path_factory.mktemp("adam-ckpt"))
    prefix, model_bytes = write_adam_checkpoint(directory)
    return directory, prefix, model_bytes


def upload(s3_env, directory, key_prefix):
    """Every file of ``directory`` as ``s3://bucket/<key_prefix>/<name>``."""
    client = s3_env.client()
    for name in sorted(os.listdir(directory)):
        client.upload_file(os.path.join(directory, name), s3_env.bucket, f"{key_prefix}/{name}")
    return f"s3://{s3_env.bucket}/{key_prefix}/"


def serve(http_server, directory, url_dir, **faults):
    """Every file of ``directory`` at ``<url_dir>/<name>`` on the HTTP test server (file
    backed); ``faults`` apply to the data shards. Returns the directory URL."""
    resources = {}
    for name in sorted(os.listdir(directory)):
        extra = faults if ".data-" in name else {}
        resources[name] = http_server.add(f"{url_dir}/{name}", file=os.path.join(directory, name),
                                          **extra)
    return http_server.url(f"{url_dir}/"), resources


@pytest.fixture
def counted_s3(s3_env, monkeypatch):
    """``(s3_env, proxy)``: boto3 reaches moto through a :class:`CountingProxy`."""
    port = urlsplit(s3_env.endpoint).port
    with CountingProxy(port) as proxy:
        monkeypatch.setenv("AWS_ENDPOINT_URL_S3", f"http://127.0.0.1:{proxy.port}")
        yield s3_env, proxy
