"""``bertconvert verify CKPT [MODEL_DIR]``: numerical parity with TensorFlow, per stage.

Exit status: 0 parity, 1 mismatch (the table names the first tensor of MODEL_DIR that
differs from the checkpoint and the first stage over tolerance), 2 usage or input error
(a corrupt checkpoint, a --head it does not hold, a MODEL_DIR converted from another
checkpoint included). The table goes to stdout: one row per stage, plus the sub-stages
(query, key, value, attention output, intermediate) of any layer that fails, or of every
layer with ``--verbose``. ``--json`` writes the full report (every sub-stage, and wall time
per phase) for CI, also when the check could not run.
"""
import json
import sys

from ..atomic import atomic_write
from ..errors import BertConvertError
from .. import layout
from ._common import HEAD_NAMES, non_negative_float, positive_int

DTYPES = ("float32", "float16", "bfloat16", "float64")


def register(subparsers):
    """Add the ``verify`` sub-command."""
    p = subparsers.add_parser(
        "verify", help="check the PyTorch model against TensorFlow's forward pass, per layer",
        description="Run the same deterministic batch through TensorFlow (reading the "
                    "checkpoint with TensorFlow itself) and through the converted PyTorch "
                    "model; first compare every tensor of MODEL_DIR bit for bit with the "
                    "checkpoint (the weights stage), then embeddings, every layer (and "
                    "inside it the query, key and value projections, the attention output "
                    "and the intermediate activation), the pooled output (unless MODEL_DIR "
                    "left out a pooler its head does not use) and the head outputs, and name the first stage over tolerance. Exit 0 parity, 1 mismatch, 2 usage/input error.")
    p.add_argument("checkpoint", metavar="CKPT",
                   help="TF checkpoint: prefix (dir/bert_model.ckpt), its .index file, its "
                        "directory (a 'checkpoint' state file is followed), or a SavedModel "
                        "directory; vocab.txt and bert_config.json are read from beside it. "
                        "Or a KerasHub preset directory: the reference is then KerasHub's own "
                        "forward pass when keras-hub is installed, else --reference or the "
                        "golden file PRESET_DIR.outputs.npz")
    p.add_argument("model_dir", metavar="MODEL_DIR", nargs="?", default=None,
                   help="converted model directory; omit it (or pass '-') to convert CKPT in "
                        "memory")
    p.add_argument("--head", choices=HEAD_NAMES, metavar="HEAD",
                   help="head to compare: " + ", ".join(HEAD_NAMES) + " (default: the model "
                        "directory's config.json architectures, or what the checkpoint holds)")
    p.add_argument("--num-labels", type=positive_int, metavar="N",
                   help="label count of a classification head (default: from the config)")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu",
                   help="where PyTorch runs (cuda: TF32 disabled); TensorFlow runs on CPU")
    p.add_argument("--dtype", choices=DTYPES, default="float32",
                   help="PyTorch compute dtype (float64: both sides in double precision, an "
                        "exactness check). A float16/bfloat16 MODEL_DIR needs no flag: "
                        "TensorFlow computes with the checkpoint's weights rounded as the "
                        "converter rounded them")
    p.add_argument("--gelu", choices=layout.GELU_FORMS, default=None,
                   help="GELU form of the TensorFlow reference: exact (erf; Google's TF1 "
                        "\"gelu\") or tanh (the approximation Model Garden's \"gelu\" is). "
                        "Default: MODEL_DIR's config.json (hidden_act gelu -> exact, gelu_new "
                        "-> tanh), else exact for TF1 checkpoints and tanh for TF2 ones and "
                        "SavedModels")
    p.add_argument("--atol", type=non_negative_float,
                   help="absolute tolerance (default 1e-4 (float64: 1e-10), plus 16*eps(dtype)*max|stage| for "
                        "a float16/bfloat16 --dtype and 8*eps for a golden file recorded over "
                        "other weights; the summary says which applied)")
    p.add_argument("--rtol", type=non_negative_float,
                   help="relative tolerance (default 1e-4; float64: 1e-9)")
    p.add_argument("--text", metavar="FILE",
                   help="UTF-8 text, one example per line, TAB between the texts of a pair "
                        "(a regular file of at most 16 MiB; default: bundled sentences)")
    p.add_argument("--json", metavar="REPORT", dest="json_report",
                   help="also write the report as JSON (wall time per phase included); "
                        "never a file the run reads")
    p.add_argument("--verbose", "-v", action="store_true",
                   help="list every layer's sub-stages in the table (by default only those "
                        "of failing layers; --json always has them)")
    golden = p.add_mutually_exclusive_group()
    golden.add_argument("--record", metavar="GOLDEN.npz",
                        help="save TensorFlow's outputs and the inputs to this .npz")
    golden.add_argument("--reference", metavar="GOLDEN.npz",
                        help="compare against a recorded .npz instead of running TensorFlow")
    p.set_defaults(func=run)


def _write_json(path, data):
    with atomic_write(path, "w") as f:
        json.dump(data, f, indent=2)
        f.write("\n")


def run(args):
    """Run the check, print the table, write JSON; returns the exit status."""
    from ..convert.keras_preset import is_keras_preset
    from ..verify import check_outputs_spare_inputs, verify
    preset = is_keras_preset(args.checkpoint)
    outputs = {"--json": args.json_report, "--record": args.record}
    # Before anything runs (and before the error path below writes --json): no output may
    # land on a file the run reads (CKPT's files, config, vocabulary, MODEL_DIR, --text,
    # --reference; a preset's directory and golden file) nor on the other output.
    if preset:
        _check_preset_arguments(args, outputs)
    else:
        check_outputs_spare_inputs(args.checkpoint, args.model_dir, outputs, text=args.text,
                                   reference=args.reference)
    options = {} if preset else {"head": args.head, "num_labels": args.num_labels,
                                 "text": args.text, "gelu": args.gelu}
    try:
        report = verify(args.checkpoint, args.model_dir, device=args.device, dtype=args.dtype,
                        atol=args.atol, rtol=args.rtol, record=args.record,
                        reference=args.reference, progress=args.progress, **options)
    except BertConvertError as e:
        if args.json_report:  # CI gets a machine-readable reason too
            _write_json(args.json_report, {"passed": False, "first_failure": None,
                                           "error": str(e), "error_type": type(e).__name__,
                                           "exit_code": e.exit_code})
        raise
    print(report.format_table(verbose=args.verbose))
    if args.json_report:
        report.to_json(args.json_report)
    if not report.passed:
        print(f"bertconvert verify: {report.summary()}", file=sys.stderr)
        return 1
    return 0


def _check_preset_arguments(args, outputs):
    """A KerasHub preset names its own head, labels and GELU, and its inputs come from
    KerasHub or the golden file; no output may land in the preset directory."""
    from ..errors import VerificationError
    given = [flag for flag, value in (("--head", args.head), ("--num-labels", args.num_labels),
                                      ("--gelu", args.gelu), ("--text", args.text)) if value]
    if given:
        raise VerificationError(
            f"{args.checkpoint} is a KerasHub preset: its head, labels and GELU come from its "
            f"own files and its inputs from KerasHub or the golden file; {', '.join(given)} "
            "cannot be given for it")
    from ..verify.keras_hub import check_preset_outputs
    check_preset_outputs(args.checkpoint, args.model_dir, outputs, reference=args.reference)
