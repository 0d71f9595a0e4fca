"""The PyTorch side of a parity check: load the model, run it, capture every stage.

The model comes from a converted directory (our classes' ``from_pretrained``; head and label
count from its ``config.json`` unless given) or from converting the checkpoint in memory.
Stages are captured with forward hooks on the trunk's modules -- the embeddings, each encoder
layer, the pooler, and inside every layer the query/key/value ``Linear`` modules, the
attention block and the intermediate block -- so one ordinary ``model(...)`` call yields
everything, and the head outputs are exactly what users get from the model's return value.
"""
import collections
import contextlib
import dataclasses
import logging
import os

from .. import layout
from ..errors import HeadError, VerificationError

log = logging.getLogger(__name__)

TORCH_DTYPES = ("float32", "float16", "bfloat16", "float64")


@dataclasses.dataclass
class LoadedModel:
    """A model ready to compare, with what :func:`load_torch_model` decided on the way."""

    model: object
    head: str
    num_labels: int = None
    config_file: str = None
    notes: list = dataclasses.field(default_factory=list)
    #: Floating dtype the weights are stored in (the coarsest, if the file mixes several).
    stored_dtype: str = "float32"
    #: the directory holds no pooler and the head does not use one (converted without
    #: --keep-pooler): loading initialised it, so the ``pooled`` stage means nothing
    pooler_left_out: bool = False


def _head_from_config(config, config_file, notes):
    from ..models.heads import head_for_architecture
    names = getattr(config, "architectures", None)
    if names:
        return head_for_architecture(names[0])
    notes.append(f"{config_file} names no architectures; comparing the bare trunk "
                 "(pass --head to check a head)")
    return layout.BASE


def load_torch_model(checkpoint, model_dir=None, head=None, num_labels=None, dtype="float32",
                     progress=True, gelu=None):
    """Load the PyTorch model to verify (float32, eval mode) as a :class:`LoadedModel`.

    ``model_dir`` None converts ``checkpoint`` in memory (TF-free), with ``head`` "auto"
    unless given. Parameters absent from the directory (a head it does not hold) are noted:
    they were freshly initialised and will fail the comparison. ``gelu`` (converting in
    memory) is handed to the converter, so both sides compute the same GELU form.
    """
    from ..models.heads import HEADS, LABELLED_HEADS
    notes = []
    if head is not None and head not in HEADS:
        raise HeadError(f"unknown head {head!r}; expected one of {', '.join(HEADS)}")
    if model_dir is None:
        from ..convert.run import load_converted_model
        model, report = load_converted_model(checkpoint, head=head or "auto",
                                             num_labels=num_labels, gelu=gelu)
        notes.append(f"converted {checkpoint} in memory (head {report.head})")
        return LoadedModel(model.eval(), report.head, report.num_labels, None, notes)

    from ..models.config import resolve_config
    if not os.path.isdir(model_dir):
        raise VerificationError(f"model directory {model_dir} does not exist; pass the output "
                                "of `bertconvert convert`, or omit it to convert in memory")
    config, config_file = resolve_config(model_dir=model_dir)
    check_config_matches_checkpoint(config, config_file, checkpoint)
    if head is None:
        head = _head_from_config(config, config_file, notes)
    elif getattr(config, "architectures", None) and \
            config.architectures[0] != HEADS[head].__name__:
        notes.append(f"{config_file} describes {config.architectures[0]}; loading it as "
                     f"{HEADS[head].__name__} (--head {head})")
    kwargs = {}
    if head in LABELLED_HEADS and num_labels is not None:
        kwargs["num_labels"] = int(num_labels)
    model, info = HEADS[head].from_pretrained(model_dir, output_loading_info=True,
                                              dtype="float32", **kwargs)
    if info.get("missing_keys"):
        notes.append(f"{len(info['missing_keys'])} weight(s) of {type(model).__name__} are not in "
                     f"{model_dir} and were freshly initialised (wrong --head?): "
                     + ", ".join(info["missing_keys"][:6])
                     + (" ..." if len(info["missing_keys"]) > 6 else ""))
    # Initialised without being missing: the unused pooler of a head that does not need it.
    left_out = bool(set(info.get("initialized_keys", ())) - set(info.get("missing_keys", ())))
    stored = stored_dtype(model_dir, config)
    if stored != "float32":
        notes.append(f"{model_dir} stores {stored} weights; the reference computes with the "
                     f"checkpoint's weights rounded to {stored} the same way")
    return LoadedModel(model, head, getattr(model, "num_labels", None), config_file, notes,
                       stored, pooler_left_out=left_out)


#: safetensors dtype codes of the floating dtypes a model directory may store.
_SAFETENSORS_FLOATS = {"F16": "float16", "BF16": "bfloat16", "F32": "float32",
                       "F64": "float64"}


def stored_dtype(model_dir, config=None):
    """The floating dtype ``model_dir``'s weights are stored in: every tensor's dtype as its
    file records it (safetensors headers; a ``torch.save`` file memory-mapped, its data
    not read), the coarsest when they differ; else the config's ``dtype``/``torch_dtype``
    (what ``convert --dtype`` writes); else float32."""
    from ..models.weightfiles import _load_torch, _sniff, find_weights_file
    from .tolerance import EPS
    found = set()
    try:
        path = find_weights_file(model_dir)
        files = [path]
        if path.endswith(layout.INDEX_SUFFIX):
            from .weights import ModelTensors
            files = ModelTensors.shard_files(model_dir, path)
        from safetensors import safe_open
        for file in files:
            kind = _sniff(file)
            if kind == "safetensors":
                with safe_open(file, framework="pt", device="cpu") as f:
                    found |= {_SAFETENSORS_FLOATS.get(f.get_slice(k).get_dtype())
                              for k in f.keys()}
            else:
                found |= {str(t.dtype).replace("torch.", "")
                          for t in _load_torch(file, kind).values()}
    except Exception:  # noqa: BLE001 - the loader has read these files: only the dtype is unknown
        found = set()
    found &= set(EPS)  # floating dtypes only (None: a safetensors integer tensor)
    if found:
        return max(found, key=EPS.get)
    stated = getattr(config, "dtype", None) or getattr(config, "torch_dtype", None)
    stated = str(stated).replace("torch.", "") if stated else None
    return stated if stated in EPS else "float32"


#: Config fields that fix the network's shapes: a model directory and the checkpoint it was
#: converted from always agree on them.
SHAPE_FIELDS = ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads",
                "intermediate_size", "max_position_embeddings", "type_vocab_size")


def check_config_matches_checkpoint(config, config_file, checkpoint):
    """Raise VerificationError when the model directory's config describes another network
    than the checkpoint's ``bert_config.json`` (a different hidden size, layer count...).

    Comparing such a pair is not a parity question -- every stage would "fail" -- but a
    wrong pairing of inputs, so it is an input error (exit 2) naming the differing fields.
    Checkpoints without a config beside them (or not present, with ``--reference``) are
    not checked here.
    """
    from ..models.config import BertConfig
    from ..errors import CheckpointError, ConfigError
    from .sources import find_checkpoint_config, resolve_checkpoint_prefix
    try:
        ckpt_config_file = find_checkpoint_config(resolve_checkpoint_prefix(checkpoint))
        if ckpt_config_file is None:
            return
        ckpt_config = BertConfig.from_json_file(ckpt_config_file)
    except (CheckpointError, ConfigError):
        return  # reported by the phase that needs the checkpoint or its config
    differ = [(f, getattr(config, f, None), getattr(ckpt_config, f, None)) for f in SHAPE_FIELDS
              if getattr(config, f, None) != getattr(ckpt_config, f, None)]
    if differ:
        listed = ", ".join(f"{f} {mine} (checkpoint: {theirs})" for f, mine, theirs in differ)
        raise VerificationError(
            f"{config_file} does not describe the network of checkpoint {checkpoint} "
            f"({ckpt_config_file}): {listed}. The model directory was not converted from this "
            "checkpoint; verify the directory `bertconvert convert CKPT --out DIR` wrote for "
            "it, or omit MODEL_DIR to convert CKPT in memory")


@contextlib.contextmanager
def exact_float32(device):
    """Disable TF32 (and reduced-precision reductions) while comparing on CUDA."""
    import torch
    if device != "cuda":
        yield
        return
    saved = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32,
             torch.get_float32_matmul_precision(),
             torch.backends.cuda.matmul.allow_fp16_reduced_precision_reduction,
             torch.backends.cuda.matmul.allow_bf16_reduced_precision_reduction)
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.set_float32_matmul_precision("highest")
    torch.backends.cuda.matmul.allow_fp16_reduced_precision_reduction = False
    torch.backends.cuda.matmul.allow_bf16_reduced_precision_reduction = False
    try:
        yield
    finally:
        (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32, precision,
         torch.backends.cuda.matmul.allow_fp16_reduced_precision_reduction,
         torch.backends.cuda.matmul.allow_bf16_reduced_precision_reduction) = saved
        torch.set_float32_matmul_precision(precision)


def check_device(device):
    """Raise VerificationError when ``device`` is not usable here."""
    import torch
    if device == "cuda" and not torch.cuda.is_available():
        raise VerificationError(
            "--device cuda was requested but CUDA is not available to PyTorch here "
            f"(torch {torch.__version__}, torch.version.cuda={torch.version.cuda}); use "
            "--device cpu or run on a machine with a CUDA GPU and a CUDA build of torch")


def _as_numpy(t):
    import torch
    t = t.detach()
    if t.dtype != torch.float64:  # float16/bfloat16 have no numpy twin; compare in float32
        t = t.float()
    return t.cpu().numpy()


def _head_outputs(head, result):
    """Map a head's 0.6.2-style return value to report stage names."""
    if head == layout.BASE:
        return {}
    if head == layout.PRETRAINING:
        return {"mlm logits": result[0], "nsp logits": result[1]}
    if head == layout.MASKED_LM:
        return {"mlm logits": result}
    if head == layout.NEXT_SENTENCE:
        return {"nsp logits": result}
    if head == layout.QUESTION_ANSWERING:
        return {"start logits": result[0], "end logits": result[1]}
    return {"logits": result}


def _layer_modules(i, layer):
    """(stage name, module) pairs of one encoder layer: its sub-stages, then the layer.

    The modules are named after Google's TF scopes, so each sub-stage is the same tensor the
    TF reference computes: ``attention.self.query`` etc. are the projections before the
    head split, ``attention`` ends with its LayerNorm, ``intermediate`` with the activation.
    """
    from .stages import LAYER_SUBSTAGES, substage_name
    paths = {"query": ("attention", "self", "query"), "key": ("attention", "self", "key"),
             "value": ("attention", "self", "value"), "attention output": ("attention",),
             "intermediate": ("intermediate",)}
    pairs = []
    for part in LAYER_SUBSTAGES:
        module = layer
        for attr in paths[part]:
            module = getattr(module, attr, None)
        if module is not None:  # an absent module shows up as "missing in PyTorch model"
            pairs.append((substage_name(i, part), module))
    return pairs + [(f"layer {i}", layer)]


def run_torch(model, inputs, head, device="cpu", dtype="float32", substages=False):
    """Run ``model`` on ``inputs``; ordered dict stage name -> float32 numpy array.

    ``substages`` adds each layer's sub-stages (``"layer 3 query"`` ...) before the layer, in
    the order of :data:`bertconvert.verify.stages.LAYER_SUBSTAGES`.
    """
    import torch
    if dtype not in TORCH_DTYPES:
        raise VerificationError(f"dtype must be one of {', '.join(TORCH_DTYPES)}, got {dtype!r}")
    check_device(device)
    model = model.to(device=device, dtype=getattr(torch, dtype)).eval()
    trunk = model if head == layout.BASE else model.bert
    captured = collections.OrderedDict()

    def keep(name):
        def hook(module, args, output):
            captured[name] = output[0] if isinstance(output, tuple) else output
        return hook

    modules = [("embeddings", trunk.embeddings)]
    for i, layer in enumerate(trunk.encoder.layer):
        modules += _layer_modules(i, layer) if substages else [(f"layer {i}", layer)]
    modules.append(("pooled", trunk.pooler))
    handles = [m.register_forward_hook(keep(name)) for name, m in modules]
    tensors = {k: torch.as_tensor(v, dtype=torch.long, device=device)
               for k, v in inputs.arrays().items()}
    try:
        with exact_float32(device), torch.inference_mode():
            result = model(tensors["input_ids"], tensors["token_type_ids"],
                           tensors["attention_mask"])
    except (RuntimeError, IndexError, ValueError) as e:
        raise VerificationError(f"the PyTorch {head} model failed on inputs of shape "
                                f"{list(inputs.input_ids.shape)}: {e}") from e
    finally:
        for h in handles:
            h.remove()
    out = collections.OrderedDict((name, _as_numpy(captured[name]))
                                  for name, _ in modules if name in captured)
    out.update((k, _as_numpy(v)) for k, v in _head_outputs(head, result).items())
    return out
