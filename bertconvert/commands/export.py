"""``bertconvert export MODEL_DIR --out PREFIX``: a PyTorch model directory -> a Google TF1
checkpoint with the names Google's run_* scripts restore, plus bert_config.json and vocab.txt.
"""


def register(subparsers):
    """Add the ``export`` sub-command."""
    p = subparsers.add_parser(
        "export", help="write a PyTorch model directory as a Google TF1 checkpoint",
        description="Export a bertconvert or transformers BERT model directory as a TensorFlow "
                    "checkpoint (no TensorFlow needed) using Google's variable names, so "
                    "run_classifier.py / run_squad.py / run_pretraining.py can restore it. "
                    "bert_config.json and vocab.txt are placed beside PREFIX.")
    p.add_argument("model_dir", metavar="MODEL_DIR",
                   help="directory with config.json or bert_config.json and model.safetensors "
                        "or pytorch_model.bin")
    p.add_argument("--out", required=True, metavar="PREFIX",
                   help="checkpoint prefix to write, e.g. tf/bert_model.ckpt (outside "
                        "MODEL_DIR's files)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace a previous export at PREFIX (its checkpoint and side "
                        "files); other files there are never replaced")
    p.set_defaults(func=run)


def run(args):
    from ..convert.export import export_model_dir

    written = export_model_dir(args.model_dir, args.out, overwrite=args.overwrite,
                               progress=args.progress)
    # Every path as the user spelt it (the library returns them that way too).
    print(f"exported {args.model_dir} -> {args.out}")
    for path in written:
        print(f"  {path}")
    return 0
