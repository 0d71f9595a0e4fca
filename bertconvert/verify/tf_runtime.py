"""Importing TensorFlow for the reference, quietly, and recognising its errors.

Only the TensorFlow side (:mod:`bertconvert.verify.tf_side`) and tools that need TensorFlow
import it, and only through :func:`import_tensorflow`: a missing TensorFlow is a named
input error with the install hint, and the notices TensorFlow's import prints to stderr do
not land in the middle of the verify progress bar and table.
"""
import contextlib
import os
import re
import sys
import tempfile

from ..errors import MissingDependencyError, option

#: bertconvert is installed from a checkout (it is not on PyPI): its "tf" extra there, or
#: TensorFlow's CPU package directly.
TF_INSTALL_HINT = "pip install '.[tf]'"

#: Notices TensorFlow's import writes to stderr whatever TF_CPP_MIN_LOG_LEVEL says (TF 2.16+
#: logs them through absl before absl's logging is initialised): they would land in the
#: middle of the verify progress bar and table, and say nothing about the comparison.
_IMPORT_NOTICES = re.compile(
    r"All log messages before absl::InitializeLog\(\) is called|oneDNN custom operations are on"
    r"|cpu_feature_guard|This TensorFlow binary is optimized|To enable the following instructions"
    r"|rebuild TensorFlow with the appropriate compiler flags")


@contextlib.contextmanager
def _import_notices_filtered():
    """Capture file descriptor 2 while TensorFlow is imported, then write back every line
    that is not one of :data:`_IMPORT_NOTICES`. ``TF_CPP_MIN_LOG_LEVEL=0`` keeps them all."""
    if os.environ.get("TF_CPP_MIN_LOG_LEVEL") == "0":
        yield
        return
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (AttributeError, OSError, ValueError):  # no real stderr (embedded, closed)
        yield
        return
    with tempfile.TemporaryFile() as captured:  # a file, not a pipe: no size limit to block on
        os.dup2(captured.fileno(), 2)
        try:
            yield
        finally:
            with contextlib.suppress(AttributeError, OSError, ValueError):
                sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            lines = captured.read().decode("utf-8", "replace").splitlines(keepends=True)
            kept = "".join(line for line in lines if not _IMPORT_NOTICES.search(line))
            if kept:
                sys.stderr.write(kept)


def import_tensorflow():
    """Import TensorFlow, or raise MissingDependencyError with the install hint."""
    # Quiets TF's C++ INFO lines around the parity table; a value the user set wins.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")
    try:
        if "tensorflow" in sys.modules:
            import tensorflow as tf  # noqa: F401
        else:
            with _import_notices_filtered():
                import tensorflow as tf  # noqa: F401 (lazy: only verification needs it)
    except ImportError as e:  # also raised when sys.modules["tensorflow"] is None
        raise MissingDependencyError(
            "verifying against TensorFlow needs TensorFlow, which is not installed; install it "
            f"with `{TF_INSTALL_HINT}` in a bertconvert checkout (or `pip install tensorflow-cpu`), "
            "or verify against a golden file recorded elsewhere "
            f"({option('--reference golden.npz', 'reference=GOLDEN_NPZ')})") from e
    return tf


def raised_by_tensorflow(exc):
    """True when ``exc`` is one of TensorFlow's errors or was raised inside TensorFlow's code
    (its checkpoint reader raises plain IndexError/ValueError too, e.g. "Read less bytes
    than requested" for a truncated shard)."""
    tf = sys.modules.get("tensorflow")
    op_error = getattr(getattr(tf, "errors", None), "OpError", None)
    if op_error is not None and isinstance(exc, op_error):
        return True
    tb = exc.__traceback__
    last = None
    while tb is not None:
        last, tb = tb, tb.tb_next
    filename = last.tb_frame.f_code.co_filename if last is not None else ""
    return f"{os.sep}tensorflow{os.sep}" in filename
