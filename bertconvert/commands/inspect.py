"""``bertconvert inspect CKPT``: every variable with its shape, dtype and what conversion does
with it (the PyTorch key it fills, "dropped" when the head shown has no place for it, or
"skipped" and why), then the head.

Reads the checkpoint index only; no tensor bytes. ``--head`` shows the variables as converting
to that head would treat them; ``--json`` prints the same as JSON.
"""
import json

from .. import layout
from .convert import HEAD_CHOICES


def register(subparsers):
    """Add the ``inspect`` sub-command."""
    p = subparsers.add_parser(
        "inspect", help="list a checkpoint's variables and where each one goes",
        description="List every variable of a TF checkpoint (name, shape, dtype) with the "
                    "PyTorch key it converts to, 'dropped' (a head the chosen layout does "
                    "not have), 'skipped' (optimizer slots, bookkeeping) or 'UNKNOWN' with a "
                    "hint; then the head. Reads the index only.")
    p.add_argument("checkpoint", metavar="CKPT",
                   help="checkpoint prefix, .index file or directory, or a KerasHub preset "
                        "directory (its .weights.h5 datasets are listed)")
    p.add_argument("--head", choices=HEAD_CHOICES, default="auto",
                   help="show the variables as converting to this head treats them (default: "
                        "the detected head)")
    p.add_argument("--keep-pooler", action="store_true",
                   help="show the pooler as converting with --keep-pooler treats it (masked-lm, "
                        "token-classification and question-answering drop it otherwise)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=run)


def describe(checkpoint, head="auto", keep_pooler=False):
    """``{"checkpoint", "head", "detected_head", "chosen", "note", "missing", "num_labels",
    "variables": [...]}`` for a checkpoint, as converting to ``head`` ("auto": the detected
    one) would treat it. ``missing`` lists the head parts the checkpoint lacks (converting
    needs a freshly initialised head for those). The pooler is "dropped" for the heads that
    leave it out unless ``keep_pooler`` (as converting does)."""
    from ..convert import rules as mapping
    from ..convert.plan import FIXED_LABEL_COUNTS, HEAD_LAYOUTS, pooler_drop_reason
    from ..convert.tf2 import resolve_tf2, select_poolers
    from ..convert.keras_preset import is_keras_preset

    from ..convert.remote import open_source

    if is_keras_preset(checkpoint):  # a KerasHub preset directory: its h5 datasets
        from ..convert.keras_rules import describe_preset
        return describe_preset(checkpoint, head, keep_pooler)
    with open_source(checkpoint) as (reader, _, _):  # a local path, or read in place from a URL
        shapes = reader.get_variable_to_shape_map()
        rows = []
        for name in sorted(shapes):
            entry = reader.entry(name)
            numeric = entry.dtype is not None and entry.dtype.kind != "O"
            rows.append({"name": name, "shape": list(shapes[name]),
                         "dtype": entry.dtype.name if numeric else entry.dtype_name})
        prefix = reader.prefix
        tf2 = resolve_tf2(reader, shapes)  # object-based: resolved through the object graph
    if tf2 is not None:
        detected, note = mapping.detect_head_of_rules([rule for _, rule, _ in tf2.weights])
    else:
        weights = [r["name"] for r in rows if not mapping.skip_reason(r["name"])]
        detected, note = mapping.detect_head(weights)
    chosen = head not in (None, "auto")
    shown = head if chosen else detected
    # The head parts (classifier, qa_outputs, predictions...) the shown layout has; variables
    # of other heads are dropped by conversion, so they are listed as dropped here too.
    parts = None
    if shown is not None:
        parts = {mapping.part_of_key(key) for key, _ in HEAD_LAYOUTS[shown][2]}
    trunk = mapping.trunk_prefix(shown or layout.PRETRAINING)
    # The pooler's rows read "dropped" where converting leaves it out (None: it is kept).
    pooler_dropped = None if shown is None or layout.writes_pooler(shown, keep_pooler) \
        else pooler_drop_reason(shown)
    present = set()
    if tf2 is not None:
        return _describe_tf2(tf2, rows, prefix, shown, detected, chosen, note, parts, trunk, labels_of(
            shown, tf2, shapes, FIXED_LABEL_COUNTS), select_poolers, pooler_dropped)
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
            continue
        present.add(res.rule.part)
        if parts is not None and res.rule.part in mapping.HEAD_PART_PREFIXES \
                and res.rule.part != "pooler" and res.rule.part not in parts:
            row["target"], row["detail"] = "dropped", f"{shown} has no {res.rule.part} head"
        elif res.rule.part == "pooler" and pooler_dropped:
            row["target"], row["detail"] = "dropped", pooler_dropped
        else:
            row["target"], row["detail"] = res.key, res.rule.transform
    missing = sorted(parts - present) if parts is not None else []
    rows_of = next((r["shape"][0] for r in rows if r["name"] == "output_weights" and r["shape"]),
                   None)
    if shown in layout.CLASSIFIER_HEADS:
        labels = 1 if shown == layout.MULTIPLE_CHOICE else rows_of
    else:
        labels = FIXED_LABEL_COUNTS.get(shown)
    if chosen:
        # The detection note argues for a head; the user has chosen one, so it would only
        # contradict the command just run.
        # run_classifier's layout fits each classifier head equally: nothing to say then.
        same_layout = {shown, detected} <= set(layout.CLASSIFIER_HEADS)
        note = "" if shown == detected or same_layout else (
            f"the variable names suggest {detected or 'no single head'}; shown as {shown}")
    return {"checkpoint": prefix, "head": shown, "detected_head": detected, "chosen": chosen,
            "note": note, "missing": missing, "num_labels": labels, "variables": rows}


def labels_of(shown, tf2, shapes, fixed):
    """The label count a TF2 checkpoint's classifier implies for head ``shown``."""
    for name, rule, _ in tf2.weights:
        if rule.part == "classifier" and rule.target.endswith("weight"):
            return int(shapes[name][-1]) if len(shapes[name]) == 2 else None
    return fixed.get(shown)


def _choice_note(shown, detected, chosen, note):
    if not chosen:
        return note
    same_layout = {shown, detected} <= set(layout.CLASSIFIER_HEADS)
    return "" if shown == detected or same_layout else (
        f"the variable names suggest {detected or 'no single head'}; shown as {shown}")


def _describe_tf2(tf2, rows, prefix, shown, detected, chosen, note, parts, trunk, labels,
                  select_poolers, pooler_dropped=None):
    """:func:`describe` for object-based checkpoints (resolved by object path)."""
    from ..convert import rules as mapping

    skipped, resolved = dict(tf2.skipped), {w[0]: w for w in tf2.weights}
    kept, dropped, _ = select_poolers(tf2.weights, parts or set())
    dropped = {name: reason for name, _, reason in dropped}
    present = {rule.part for _, rule, _ in kept}
    for row in rows:
        name = row["name"]
        if name in skipped:
            row["target"], row["detail"] = "skipped", skipped[name]
        elif name not in resolved:
            row["target"], row["detail"] = "UNKNOWN", "matches no rule by any of its object paths"
        elif name in dropped:
            row["target"], row["detail"] = "dropped", dropped[name]
        else:
            _, rule, groups = resolved[name]
            if parts is not None and rule.part in mapping.HEAD_PART_PREFIXES \
                    and rule.part != "pooler" and rule.part not in parts:
                row["target"], row["detail"] = "dropped", f"{shown} has no {rule.part} head"
            elif rule.part == "pooler" and pooler_dropped:
                row["target"], row["detail"] = "dropped", pooler_dropped
            else:
                row["target"], row["detail"] = rule.target_key(groups, trunk), rule.transform
            row["path"] = tf2.paths.get(name)
    missing = sorted(parts - present) if parts is not None else []
    return {"checkpoint": prefix, "head": shown, "detected_head": detected, "chosen": chosen,
            "note": _choice_note(shown, detected, chosen, note), "missing": missing,
            "num_labels": labels, "variables": rows, "problems": list(tf2.problems)}


def run(args):
    info = describe(args.checkpoint, args.head, keep_pooler=args.keep_pooler)
    # A preset's problems (shapes its config.json disagrees with) stop a conversion too.
    unconvertible = info["head"] is None or \
        ("keras_hub" in info and bool(info.get("problems"))) or \
        any(r["target"] == "UNKNOWN" for r in info["variables"])
    if args.json:
        print(json.dumps(info, indent=2))
        return 2 if unconvertible else 0
    rows = info["variables"]
    width = max([len(r["name"]) for r in rows] + [8])
    shape_w = max([len(str(r["shape"])) for r in rows] + [5])
    dtype_w = max([len(r["dtype"]) for r in rows] + [5])  # DT_STRING, bfloat16... set it
    print(f"{'VARIABLE':<{width}}  {'SHAPE':<{shape_w}}  {'DTYPE':<{dtype_w}}  TARGET")
    for r in rows:
        target = r["target"] if r["target"] not in ("skipped", "UNKNOWN", "dropped") \
            else f"{r['target']} ({r['detail']})"
        if r["target"] not in ("skipped", "UNKNOWN", "dropped") and r["detail"] != "none":
            target += f"  [{r['detail']}]"
        print(f"{r['name']:<{width}}  {str(r['shape']):<{shape_w}}  {r['dtype']:<{dtype_w}}  {target}")
    count = {kind: sum(r["target"] == kind for r in rows) for kind in ("skipped", "UNKNOWN", "dropped")}
    weights = len(rows) - sum(count.values())
    dropped = f", {count['dropped']} dropped" if count["dropped"] else ""
    print(f"\n{len(rows)} variables: {weights} weights{dropped}, {count['skipped']} skipped, "
          f"{count['UNKNOWN']} unknown")
    labels = f" (num_labels {info['num_labels']})" if info["num_labels"] else ""
    if info["chosen"]:
        print(f"head: {info['head']}{labels}, chosen with --head")
    elif unconvertible:  # a head from the recognised part alone would read as a verdict
        print(f"detected head: none (the recognised variables alone suggest "
              f"{info['head'] or 'no single head'})")
    else:
        print(f"detected head: {info['head'] or 'ambiguous'}{labels}")
    if info["missing"]:
        print(f"missing: the checkpoint has no {', '.join(info['missing'])} variables; "
              f"converting to {info['head']} initialises them freshly with --allow-new-head")
    if info["note"]:
        print(f"note: {info['note']}")
    if unconvertible:  # the table says which; group them so a long list stays readable
        print("cannot convert this checkpoint as it is:")
        for problem in info.get("problems") or _grouped_unknown(info["variables"]):
            print(f"  - {problem}")
        return 2
    return 0


def _grouped_unknown(rows):
    groups = {}
    for r in rows:
        if r["target"] == "UNKNOWN":
            groups.setdefault(r["name"].rpartition("/")[0] or "(root)", []).append(
                r["name"].rpartition("/")[2])
    return [f"{prefix}/: {', '.join(names)}: matches no rule" for prefix, names in sorted(groups.items())]
