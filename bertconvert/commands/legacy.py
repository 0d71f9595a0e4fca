"""``bertconvert convert_tf_checkpoint_to_pytorch TF_CHECKPOINT TF_CONFIG PYTORCH_DUMP_OUTPUT``.

pytorch-pretrained-bert 0.6.2's command line, kept for users' scripts: it writes one
``pytorch_model.bin`` state dict at PYTORCH_DUMP_OUTPUT (inside it, when that is an existing
directory), replacing an existing file atomically -- only a previous state dict: any other
file, or a link, is refused with exit status 2. Unlike 0.6.2 it needs no TensorFlow, skips
optimizer slots unread, and converts fine-tuned heads too (``--head``, default auto).
"""
import os

from ..layout import GOOGLE_CONFIG_NAME
from .convert import add_head_arguments


def register(subparsers):
    """Add the ``convert_tf_checkpoint_to_pytorch`` sub-command."""
    p = subparsers.add_parser(
        "convert_tf_checkpoint_to_pytorch",
        help="0.6.2-compatible form: write a single pytorch_model.bin",
        description="pytorch-pretrained-bert 0.6.2's conversion command: convert TF_CHECKPOINT "
                    "with TF_CONFIG (bert_config.json) into the state-dict file "
                    "PYTORCH_DUMP_OUTPUT. Prefer `bertconvert convert` for a full model "
                    "directory.")
    p.add_argument("tf_checkpoint", metavar="TF_CHECKPOINT", help="checkpoint prefix, .index or directory")
    p.add_argument("tf_config", metavar="TF_CONFIG", help=GOOGLE_CONFIG_NAME)
    p.add_argument("pytorch_dump_output", metavar="PYTORCH_DUMP_OUTPUT",
                   help="output file (pytorch_model.bin; an existing one must be a previous "
                        "state dict), or an existing directory to write it into")
    add_head_arguments(p)
    p.set_defaults(func=run)


def run(args):
    from ..convert.run import convert_to_pytorch_file

    report = convert_to_pytorch_file(
        args.tf_checkpoint, args.tf_config, args.pytorch_dump_output, head=args.head,
        num_labels=args.num_labels, allow_new_head=args.allow_new_head, progress=args.progress,
        keep_pooler=args.keep_pooler)
    output = args.pytorch_dump_output  # as given (relative stays relative), like convert's
    if os.path.isdir(output):
        output = os.path.join(output, report.files[0])
    print(f"converted {report.checkpoint} ({report.head}, {len(report.variables)} tensors, "
          f"{len(report.skipped)} skipped) -> {output}")
    return 0
