"""Before any forward pass: does the model directory belong to this checkpoint, and does the
checkpoint hold the head asked for?

:func:`check_model_source` compares the ``.index`` sha256 the directory's ``conversion.json``
records with the checkpoint's; :func:`check_head_in_checkpoint` refuses a ``--head`` whose
variables the checkpoint lacks (neither side could compute its outputs).
"""
from .. import layout
from ..errors import HeadNotInCheckpointError, ModelSourceMismatchError
from .golden import index_sha256
from .weights import CONVERSION_REPORT, _conversion_report


def check_model_source(model_dir, prefix, checkpoint):
    """Raise ModelSourceMismatchError when ``model_dir``'s conversion.json says it was
    converted from a checkpoint whose ``.index`` differs from ``prefix``'s (the index holds
    every tensor's name, shape, offset and crc32c, so equal indexes mean the same
    checkpoint unless its data is corrupt, which the crc checks catch). Returns notes."""
    report = _conversion_report(model_dir)
    if report is None:
        return [f"{model_dir} has no readable {CONVERSION_REPORT}: not checked that it was "
                f"converted from {checkpoint}"]
    recorded = next((e for e in report.get("source_files") or []
                     if isinstance(e, dict) and str(e.get("path", "")).endswith(".index")), None)
    if recorded is None or not recorded.get("sha256"):
        return [f"{model_dir}/{CONVERSION_REPORT} records no .index sha256: not checked that "
                f"it was converted from {checkpoint}"]
    ours = index_sha256(prefix)
    if ours is not None and ours != recorded["sha256"]:
        raise ModelSourceMismatchError(
            f"model directory {model_dir} was converted from a different checkpoint: its "
            f"{CONVERSION_REPORT} records {recorded.get('path')} (.index sha256 "
            f"{recorded['sha256'][:16]}...), but {prefix}.index has sha256 {ours[:16]}...; "
            "verify the directory against the checkpoint it was converted from, or convert "
            f"{checkpoint} again (`bertconvert convert {checkpoint} --out DIR`)")
    return []


def heads_in_checkpoint(reader):
    """The heads whose own variables ``reader``'s checkpoint holds (``base`` always)."""
    from ..convert import rules as mapping
    from ..convert.plan import HEAD_LAYOUTS
    parts = mapping.parts_present(list(reader))
    shapes = reader.get_variable_to_shape_map()
    out = []
    for head, (_, _, params) in HEAD_LAYOUTS.items():
        needed = {mapping.part_of_key(k) for k, _ in params}
        if not needed <= parts:
            continue
        if head == layout.MULTIPLE_CHOICE and shapes.get("output_weights", [1])[0] != 1:
            continue  # one score per choice; more rows is another classifier
        out.append(head)
    return out


def check_head_in_checkpoint(reader, head, checkpoint):
    """Raise HeadNotInCheckpointError when ``head`` needs variables the checkpoint lacks."""
    from ..convert.plan import HEAD_LAYOUTS
    if head is None or head not in HEAD_LAYOUTS:
        return
    available = heads_in_checkpoint(reader)
    if head in available:
        return
    rows = reader.get_variable_to_shape_map().get("output_weights", [None])[0]
    why = (f"its output_weights has {rows} rows, but a multiple-choice head scores each "
           "choice with one" if head == layout.MULTIPLE_CHOICE and rows not in (None, 1)
           else "none of its variables fill that head's weights")
    raise HeadNotInCheckpointError(
        f"--head {head}: checkpoint {checkpoint} holds no {head} head ({why}), so neither "
        f"side could compute its outputs; the heads "
        f"it holds are: {', '.join(available)}. Pass one of those with --head (head= in "
        "Python), or omit it to check the head the model directory was converted as")
