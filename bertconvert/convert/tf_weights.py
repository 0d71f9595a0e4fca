"""``load_tf_weights_in_bert(model, tf_checkpoint_path)``: pytorch-pretrained-bert 0.6.2's
function, on bertconvert's TensorFlow-free converter.

0.6.2 walked the checkpoint's variable names with ``getattr`` and assigned every tensor it
could place into the model it was given; TensorFlow had to be installed. Here the checkpoint
is read by :func:`~bertconvert.convert.stream.state_dict_from_checkpoint` (crc-checked, the
mapping rules of ``convert``) for the model's own head and label count, and copied into the
model's existing parameters (their device and dtype are kept). As in 0.6.2, parameters the
checkpoint does not hold (a new classifier on a pre-training checkpoint) keep the values the
model has, and checkpoint variables the model has no place for are skipped (logged).
"""
import logging

from ..errors import WeightsError
from ..layout import LABELLED_HEADS

logger = logging.getLogger(__name__)


def load_tf_weights_in_bert(model, tf_checkpoint_path):
    """Load the TF checkpoint ``tf_checkpoint_path`` (a prefix such as
    ``.../bert_model.ckpt``, or what bertconvert accepts as a checkpoint) into ``model``, a
    bertconvert BERT model, in place; returns ``model``.

    The checkpoint is converted against ``model.config``: shapes that do not fit it are a
    WeightsError naming them (0.6.2 raised an AssertionError); checkpoint problems are
    bertconvert's named CheckpointError/ConversionError family.
    """
    import torch

    from ..models.statedict import mismatch_error, normalize_state_dict
    from .stream import state_dict_from_checkpoint

    config = getattr(model, "config", None)
    if not isinstance(model, torch.nn.Module) or config is None:
        raise WeightsError(f"load_tf_weights_in_bert needs a bertconvert BERT model (with its "
                           f".config), got {type(model).__name__}")
    head = getattr(model, "head_name", None) or "auto"
    labels = getattr(model, "num_labels", None) if head in LABELLED_HEADS else None
    converted = state_dict_from_checkpoint(tf_checkpoint_path, config=config, head=head,
                                           num_labels=labels, allow_new_head=True)
    # Keys the checkpoint lacks were drawn fresh by the plan: the model keeps its own.
    fresh = set(converted.report.new_keys)
    state = normalize_state_dict({k: v for k, v in converted.state_dict.items()
                                  if k not in fresh}, hasattr(model, "bert"))
    expected = model.state_dict()
    mismatched = sorted((k, tuple(v.shape), tuple(expected[k].shape)) for k, v in state.items()
                        if k in expected and tuple(v.shape) != tuple(expected[k].shape))
    if mismatched:
        raise mismatch_error(model, mismatched, tf_checkpoint_path)
    skipped = sorted(k for k in state if k not in expected)
    loading = {k: v for k, v in state.items() if k in expected}
    if not loading:
        raise WeightsError(f"none of the tensors of {tf_checkpoint_path} is a parameter of "
                           f"{type(model).__name__}")
    with torch.no_grad():
        model.load_state_dict(loading, strict=False)
    tied = model.tied_weight_keys() if hasattr(model, "tied_weight_keys") else set()
    kept = sorted(k for k in expected if k not in loading and k not in tied)
    if skipped:
        logger.info("checkpoint tensors %s have no place in %s: skipped", ", ".join(skipped),
                    type(model).__name__)
    if kept:
        logger.info("%s keeps its own values for %s (not in %s)", type(model).__name__,
                    ", ".join(kept), tf_checkpoint_path)
    return model
