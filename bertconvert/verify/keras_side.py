"""KerasHub's own forward pass over a BERT preset: the reference ``verify`` compares with when
``keras-hub`` is installed (``pip install 'bertconvert[keras-hub]'``, TensorFlow backend).

Imports nothing of torch; KerasHub and Keras are imported only by :func:`keras_outputs`.
The batches and outputs use the golden-file keys of :mod:`bertconvert.verify.keras_hub`
(``BATCH.token_ids`` ..., ``BATCH.sequence_output`` ...), the layout
``fixtures/make_keras_hub_fixtures.py`` records too.
"""
import os

import numpy as np

from ..errors import MissingDependencyError

#: task class (registered name after the package, KerasNLP's older names too) -> the
#: keras_hub.models class that loads it and what it outputs
TASK_CLASSES = {"BertTextClassifier": ("BertTextClassifier", "logits"),
                "BertClassifier": ("BertTextClassifier", "logits"),
                "BertMaskedLM": ("BertMaskedLM", "mlm_logits"),
                "BertTextEmbedder": ("BertTextEmbedder", "embedding")}


def keras_hub_available():
    """True when ``import keras_hub`` would succeed (without importing it)."""
    import importlib.util
    return importlib.util.find_spec("keras_hub") is not None


def _import_keras_hub():
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    try:
        import keras
        import keras_hub
    except ImportError as e:
        raise MissingDependencyError(
            f"KerasHub's reference needs keras-hub, which cannot be imported here ({e}); "
            "install it (pip install 'bertconvert[keras-hub]') or pass a golden file with "
            "--reference") from e
    return keras, keras_hub


def keras_outputs(preset_dir, task, batches):
    """``{BATCH.WHAT: float32 array}``: KerasHub's outputs for each batch of ``batches``
    (``{batch: {token_ids, segment_ids, padding_mask[, mask_positions, masked_token_ids]}}``):
    the backbone's ``embeddings`` (after their LayerNorm), every block's ``layer_N``,
    ``sequence_output`` and ``pooled_output``, and the task's ``logits``,
    ``mlm_logits`` (over ``masked_token_ids`` at ``mask_positions``) or ``embedding``."""
    keras, keras_hub = _import_keras_hub()
    model, output = None, None
    if task is not None:
        name, output = TASK_CLASSES[task.partition(">")[2]]
        model = getattr(keras_hub.models, name).from_preset(preset_dir, preprocessor=None)
        backbone = model.backbone
    else:
        backbone = keras_hub.models.BertBackbone.from_preset(preset_dir)

    def f32(t):
        return np.asarray(keras.ops.convert_to_numpy(keras.ops.cast(t, "float32")))

    stages = {"embeddings": backbone.get_layer("embeddings_layer_norm").output}
    for i in range(backbone.num_layers):
        stages[f"layer_{i}"] = backbone.get_layer(f"transformer_layer_{i}").output
    staged = keras.Model(backbone.input, stages)
    out = {}
    for batch, x in batches.items():
        feed = {"token_ids": x["token_ids"].astype(np.int32),
                "segment_ids": x["segment_ids"].astype(np.int32),
                "padding_mask": x["padding_mask"].astype(bool)}
        got = backbone(feed, training=False)
        for stage, value in staged(feed, training=False).items():
            out[f"{batch}.{stage}"] = f32(value)
        out[f"{batch}.sequence_output"] = f32(got["sequence_output"])
        out[f"{batch}.pooled_output"] = f32(got["pooled_output"])
        if output in ("logits", "embedding"):
            out[f"{batch}.{output}"] = f32(model(feed, training=False))
        elif output == "mlm_logits":
            masked = dict(feed, token_ids=x["masked_token_ids"].astype(np.int32),
                          mask_positions=x["mask_positions"].astype(np.int32))
            out[f"{batch}.mlm_logits"] = f32(model(masked, training=False))
    return out
