"""``bertconvert convert CKPT --out DIR``: a Google TF checkpoint -> a PyTorch model directory.

Prints a one-screen summary (head, tensors converted and skipped, files written, notes) to
stdout. Errors (missing config, mapping problems, existing output, full disk) exit with 2
and leave no output directory behind. Like every command module, this one imports nothing
heavy at registration: the library is imported inside :func:`run`.
"""
import os

from .. import layout
from ._common import HEAD_NAMES, positive_int

#: --head values: the eight layouts, plus "auto" (detected from the variable names).
HEAD_CHOICES = ("auto",) + HEAD_NAMES


def add_head_arguments(p):
    """--head / --num-labels / --allow-new-head, shared with the legacy command."""
    p.add_argument("--head", choices=HEAD_CHOICES, default="auto",
                   help="target layout (default auto: detected from the variable names; root "
                        "output_weights defaults to sequence-classification)")
    p.add_argument("--num-labels", type=positive_int, metavar="N",
                   help="label count; must agree with the checkpoint's tensors (its classifier's "
                        "rows; 2 for question-answering, next-sentence and pretraining; 1 for "
                        "multiple-choice; any count for base and masked-lm)")
    p.add_argument("--allow-new-head", action="store_true",
                   help="allow a head the checkpoint lacks (e.g. pretraining -> classification); "
                        "its weights are initialised freshly and listed")
    p.add_argument("--keep-pooler", action="store_true",
                   help=f"also write the pooler for {', '.join(layout.POOLERLESS_HEADS)}, whose "
                        "transformers classes have none (by default it is left out and listed "
                        "as dropped in conversion.json, so transformers loads the files with no "
                        "unexpected keys); needed for a complete TF checkpoint from `export`")


def register(subparsers):
    """Add the ``convert`` sub-command."""
    p = subparsers.add_parser(
        "convert", help="convert a Google TF BERT checkpoint into a PyTorch model directory",
        description="Convert a TensorFlow BERT checkpoint (TF1 Google names or TF2 Model Garden "
                    "names) into a model directory loadable by bertconvert and transformers: "
                    "config.json, bert_config.json, model.safetensors and/or pytorch_model.bin, "
                    "vocab.txt and conversion.json. Bit-exact; optimizer slots are skipped without "
                    "being read (unless --source-hash full hashes them); the directory is "
                    "published atomically.")
    p.add_argument("checkpoint", metavar="CKPT",
                   help="checkpoint prefix (dir/bert_model.ckpt), its .index file, its directory, "
                        "a SavedModel directory (saved_model.pb + variables/), a TF Serving base "
                        "directory (its highest numbered version is used), a directory with "
                        "exactly one of those in a subdirectory, or an s3://, https:// or "
                        "http:// prefix or directory (read in place: the .index, then only the "
                        "converted tensors' byte ranges) or archive URL (.zip, .tar.gz)")
    p.add_argument("--config", metavar="JSON",
                   help="bert_config.json, a path or URL (default: the one beside the "
                        "checkpoint; for TF2 checkpoints and SavedModels without one, inferred "
                        "from the tensor shapes and, for TF1 serving exports, the head count "
                        "from saved_model.pb)")
    p.add_argument("--out", required=True, metavar="DIR",
                   help="output model directory (never the checkpoint's own directory or a "
                        "directory above it), or s3://bucket/prefix/: published complete or "
                        "not at all, conversion.json last; the same conversion again is a "
                        "no-op")
    p.add_argument("--vocab", metavar="FILE",
                   help="vocabulary to copy into DIR as vocab.txt, a path or URL (default: "
                        "the vocab.txt beside the checkpoint)")
    add_head_arguments(p)
    p.add_argument("--gelu", choices=layout.GELU_FORMS, default=None,
                   help="GELU form the model computes: exact (erf; default for TF1 variable "
                        "names, in checkpoints and TF1 SavedModels) or tanh (the approximation; "
                        "default for TF2 object-graph names, Model Garden's \"gelu\"). Written into config.json as hidden_act gelu / "
                        "gelu_new; a config whose hidden_act is not plain gelu is honoured, and "
                        "contradicting it is an error")
    p.add_argument("--format", choices=("safetensors", "pytorch", "both"), default="safetensors",
                   help="weights file(s): model.safetensors (default; needs numpy only), "
                        "pytorch_model.bin, or both (these need PyTorch)")
    p.add_argument("--dtype", choices=("float32", "float16", "bfloat16"), default="float32",
                   help="dtype of the written weights (default float32: bit-exact)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace a previous model directory at DIR (one holding "
                        "conversion.json, or a config and weights, and nothing else), only once "
                        "the new one is complete; other files, links, the current or home "
                        "directory are never replaced; under an s3:// prefix, another "
                        "conversion published there is replaced")
    p.add_argument("--optimizer-state", action="store_true",
                   help=f"also write {layout.OPTIMIZER_NAME}: the Adam slots (<var>/adam_m, "
                        "<var>/adam_v, in their parameters' layout, keyed by parameter name) "
                        "and global_step of Google's AdamWeightDecayOptimizer, to continue the "
                        "run (bertconvert.resume_from_tf) or export it back. A checkpoint "
                        "without those slots (none, LAMB's, Keras') is an error")
    p.add_argument("--source-hash", choices=("auto", "full", "index"), default="auto",
                   help="which source files conversion.json gives a sha256: auto (default) all "
                        "but data shards that are mostly variables not converted (optimizer "
                        "slots, a dropped head), which are then never read; full: every file "
                        "whole (matches sha256sum; reads those variables too); index: the .index, config and vocab only. Every converted "
                        "tensor is checked against its crc32c in the index either way")
    p.set_defaults(func=run)


def print_summary(report, output_dir=None):
    """The human summary of a ConversionReport (stdout); ``output_dir`` is the output as the
    user spelt it (default: the report's absolute path)."""
    labels = f", num_labels {report.num_labels}" if report.num_labels is not None else ""
    print(f"converted {report.checkpoint}")
    kh = getattr(report, "keras_hub", None)
    if kh is not None:
        tok = kh["tokenizer"]
        print(f"  source      KerasHub preset ({kh['task'] or 'BertBackbone'}); tokenizer "
              f"lowercase {tok['lowercase']}, strip_accents {tok['strip_accents']}")
        if kh.get("embedding_pooling"):
            print(f"  embedding   {kh['embedding_pooling']['description']} (not part of the "
                  "model: apply it to the sequence output)")
    print(f"  head        {report.head} ({report.model_class}{labels})")
    print(f"  tensors     {len(report.variables)} converted, {len(report.skipped)} skipped"
          f"{' (never read)' if report.skipped and _slots_unread(report) else ''}"
          f"{_dropped(report)}")
    print(f"  dtype       {report.dtype}")
    act = report.activation or {}
    if act.get("gelu"):
        print(f"  gelu        {act['gelu']} ({act['hidden_act']})")
    elif act:
        print(f"  activation  {act['hidden_act']}")
    if report.config_inferred:
        print("  config      inferred from the tensor shapes (no bert_config.json)")
    if report.new_keys:
        print(f"  new keys    {len(report.new_keys)} freshly initialised: {', '.join(report.new_keys)}")
    if report.optimizer_state:
        state = report.optimizer_state
        print(f"  optimizer   {state['optimizer']} slots of {len(state['slots'])} parameters, "
              f"global_step {state['global_step']}")
    for note in report.notes:
        print(f"  note        {note}")
    status = (report.publication or {}).get("status")  # --out s3://
    written = "there" if status in ("unchanged", "already published by another run") \
        else "written"
    print(f"  {written:<11} {output_dir or report.output_dir}: {', '.join(report.files)}")
    if status:
        print(f"  published   {status}")


def _dropped(report):
    """", N dropped (...)" for variables of a head the chosen layout does not have, and for a
    pooler left out (see ``--keep-pooler``)."""
    from ..convert.plan import pooler_drop_reason
    pooler = [d for d in report.dropped if d["reason"] == pooler_drop_reason(report.head)]
    head = len(report.dropped) - len(pooler)
    parts = ([f"{head} dropped (head variables {report.head} does not have)"] if head else []) \
        + ([f"{len(pooler)} dropped (the pooler, unused by {report.head}; --keep-pooler keeps "
            "it)"] if pooler else [])
    return "".join(", " + p for p in parts)


def _slots_unread(report):
    """True when no skipped variable's bytes were read, not even for a sha256."""
    if report.optimizer_state:  # the Adam slots were read for optimizer.safetensors
        return False
    shards = [e for e in report.source_files if ".data-" in os.path.basename(e["path"])]
    return bool(shards) and all(e["sha256"] is None for e in shards)


def run(args):
    from ..convert.run import convert_checkpoint

    report = convert_checkpoint(
        args.checkpoint, args.out, config=args.config, head=args.head, num_labels=args.num_labels,
        format=args.format, dtype=args.dtype, overwrite=args.overwrite,
        allow_new_head=args.allow_new_head, progress=args.progress, source_hash=args.source_hash,
        vocab=args.vocab, gelu=args.gelu, keep_pooler=args.keep_pooler,
        optimizer_state=args.optimizer_state)
    print_summary(report, args.out)
    return 0
