"""What a conversion did: :class:`ConversionReport`, the content of ``conversion.json``."""
import os
from dataclasses import dataclass, field

from .. import __version__


@dataclass
class ConversionReport:
    """What a conversion did; ``to_dict()`` is what ``conversion.json`` holds.

    ``checkpoint`` and ``config_path`` are the paths as the caller gave them (the summary
    prints them so); ``conversion.json`` records every source path -- ``checkpoint``,
    ``config``, each ``source_files`` entry -- absolute, so the record means the same thing
    read from any directory.
    """

    checkpoint: str
    head: str
    num_labels: int
    model_class: str
    dtype: str
    format: str = None
    output_dir: str = None
    config_path: str = None
    variables: list = field(default_factory=list)
    skipped: list = field(default_factory=list)
    dropped: list = field(default_factory=list)
    new_keys: list = field(default_factory=list)
    tied: dict = field(default_factory=dict)
    notes: list = field(default_factory=list)
    source_files: list = field(default_factory=list)
    source_hash: str = "auto"
    activation: dict = field(default_factory=dict)   # the GELU form and why (gelu.py)
    config_inferred: bool = False
    pooler_written: bool = True   # False: the pooler was left out (listed in ``dropped``)
    files: list = field(default_factory=list)
    #: ``convert --optimizer-state``: file, optimizer, global_step, slot names per key
    optimizer_state: dict = None
    #: a KerasHub preset's task, tokenizer settings and (text embedder) pooling, else None
    keras_hub: dict = None
    publication: dict = None      # --out s3://: identity, objects, status (convert/publish.py)

    @classmethod
    def from_plan(cls, plan, dtype):
        return cls(
            checkpoint=plan.prefix, head=plan.head, num_labels=plan.num_labels,
            model_class=plan.model_class, dtype=dtype, config_path=plan.config_path,
            variables=[{"name": t.name, "key": t.key, "rule": t.rule.source,
                        "flavour": t.rule.flavour, "transform": t.rule.transform,
                        "shape": list(t.source_shape), "target_shape": list(t.shape),
                        "source_dtype": t.source_dtype}
                       for t in sorted(plan.tensors, key=lambda t: t.name)],
            skipped=[{"name": n, "reason": r} for n, r in plan.skipped],
            dropped=[{"name": n, "key": k, "reason": r} for n, k, r in plan.dropped],
            new_keys=[k for k, _ in plan.new_keys], tied=dict(plan.tied), notes=list(plan.notes),
            pooler_written=plan.keep_pooler)

    def to_dict(self):
        """A JSON-ready dict (the content of ``conversion.json``)."""
        out = {
            "bertconvert_version": __version__, "checkpoint": _absolute(self.checkpoint),
            "config": _absolute(self.config_path), "head": self.head, "model_class": self.model_class,
            "num_labels": self.num_labels, "dtype": self.dtype, "format": self.format,
            "source_files": self.source_files, "source_hash": self.source_hash,
            "files": self.files, "notes": self.notes,
            "variables": self.variables, "skipped": self.skipped, "dropped": self.dropped,
            "new_keys": self.new_keys, "tied": self.tied,
            "activation": self.activation, "config_inferred": self.config_inferred,
            "pooler_written": self.pooler_written,
            **({"keras_hub": self.keras_hub} if self.keras_hub is not None else {}),
            **({"publication": self.publication} if self.publication is not None else {}),
        }
        if self.optimizer_state is not None:  # only with --optimizer-state
            out["optimizer_state"] = self.optimizer_state
        return out


def _absolute(path):
    """``path`` made absolute against the current directory (None stays None)."""
    if path is None or "://" in str(path):  # a remote source: its (redacted) URL
        return path
    return os.path.abspath(os.fspath(path))
