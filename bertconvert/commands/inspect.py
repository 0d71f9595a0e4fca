"""``bertconvert inspect CKPT``: every variable with its shape, dtype and what conversion does
with it (the PyTorch key it fills, or "skipped" and why), then the detected head.

Reads the checkpoint index only; no tensor bytes. ``--json`` prints the same as JSON.
"""
import json

from .. import layout
from .convert import HEAD_CHOICES


def register(subparsers):
    """Add the ``inspect`` sub-command."""
    p = subparsers.add_parser(
        "inspect", help="list a checkpoint's variables and where each one goes",
        description="List every variable of a TF checkpoint (name, shape, dtype) with the "
                    "PyTorch key it converts to, or 'skipped' (optimizer slots, bookkeeping) "
                    "or 'UNKNOWN' with a hint; then the detected head. Reads the index only.")
    p.add_argument("checkpoint", metavar="CKPT", help="checkpoint prefix, .index file or directory")
    p.add_argument("--head", choices=HEAD_CHOICES, default="auto",
                   help="show keys as this head names them (default: the detected head)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=run)


def describe(checkpoint, head="auto"):
    """``{"checkpoint", "head", "note", "num_labels", "variables": [...]}`` for a checkpoint."""
    from ..convert.run import rules as mapping
    from ..checkpoint import load_checkpoint

    with load_checkpoint(checkpoint) as reader:
        shapes = reader.get_variable_to_shape_map()
        rows = []
        for name in sorted(shapes):
            entry = reader.entry(name)
            numeric = entry.dtype is not None and entry.dtype.kind != "O"
            rows.append({"name": name, "shape": list(shapes[name]),
                         "dtype": entry.dtype.name if numeric else entry.dtype_name})
        prefix = reader.prefix
    weights = [r["name"] for r in rows if not mapping.skip_reason(r["name"])]
    detected, note = mapping.detect_head(weights)
    shown = detected if head == "auto" else head
    trunk = mapping.trunk_prefix(shown or layout.PRETRAINING)
    for row in rows:
        reason = mapping.skip_reason(row["name"])
        if reason:
            row["target"], row["detail"] = "skipped", reason
            continue
        try:
            res = mapping.resolve(row["name"], trunk=trunk)
        except ValueError as e:
            row["target"], row["detail"] = "UNKNOWN", str(e)
            continue
        if res is None:
            row["target"], row["detail"] = "UNKNOWN", mapping.unknown_name_hint(row["name"])
        else:
            row["target"], row["detail"] = res.key, res.rule.transform
    labels = next((r["shape"][0] for r in rows if r["name"] == "output_weights" and r["shape"]), None)
    return {"checkpoint": prefix, "head": detected, "note": note, "num_labels": labels,
            "variables": rows}


def run(args):
    info = describe(args.checkpoint, args.head)
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    rows = info["variables"]
    width = max([len(r["name"]) for r in rows] + [8])
    shape_w = max([len(str(r["shape"])) for r in rows] + [5])
    print(f"{'VARIABLE':<{width}}  {'SHAPE':<{shape_w}}  {'DTYPE':<8}  TARGET")
    for r in rows:
        target = r["target"] if r["target"] not in ("skipped", "UNKNOWN") \
            else f"{r['target']} ({r['detail']})"
        if r["target"] not in ("skipped", "UNKNOWN") and r["detail"] != "none":
            target += f"  [{r['detail']}]"
        print(f"{r['name']:<{width}}  {str(r['shape']):<{shape_w}}  {r['dtype']:<8}  {target}")
    skipped = sum(r["target"] == "skipped" for r in rows)
    unknown = sum(r["target"] == "UNKNOWN" for r in rows)
    print(f"\n{len(rows)} variables: {len(rows) - skipped - unknown} weights, {skipped} skipped, "
          f"{unknown} unknown")
    head = info["head"] or "ambiguous"
    labels = f" (num_labels {info['num_labels']})" if info["num_labels"] else ""
    print(f"detected head: {head}{labels}")
    if info["note"]:
        print(f"note: {info['note']}")
    return 0
