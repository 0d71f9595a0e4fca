"""Progress bars only where a person watches: one decision for every bar of the package.

Every bar (converting, downloading and uploading, hashing, writing a TF checkpoint, verify's
phases) is made by :func:`progress_bar`, and :func:`bars_shown` alone decides whether it is
drawn: when progress is requested and stderr is a terminal, or when it is forced
(``progress="always"``; the CLI's ``--progress``). Where stderr is not a terminal -- CI logs,
pipes, ``2> file`` -- nothing is drawn: no carriage returns, no ``0%|`` debris for the next
message to land on; each step logs one INFO line when it ends instead (shown with ``--debug``).

The library's ``progress`` arguments take the same values: False (never), True (the default:
on a terminal), or :data:`ALWAYS`.
"""
import logging
import sys

log = logging.getLogger(__name__)

#: ``progress`` value that draws bars even where stderr is not a terminal (``--progress``)
ALWAYS = "always"


def bars_shown(progress, stream=None):
    """Whether a bar is drawn: ``progress`` is :data:`ALWAYS`, or true and ``stream``
    (default: ``sys.stderr``, where bars go) is a terminal."""
    if progress == ALWAYS:
        return True
    if not progress:
        return False
    stream = sys.stderr if stream is None else stream
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError, OSError):  # no stream, or a closed one
        return False


def progress_bar(progress, total=None, desc=None, unit="it", **options):
    """A tqdm bar when :func:`bars_shown` says so, else a silent stand-in with the same
    methods (``update``, ``reset``, ``set_postfix_str``, ``close``; a context manager) that
    logs one INFO line when closed. ``options`` go to tqdm (``unit_scale``, ``leave``...)."""
    if bars_shown(progress):
        from tqdm.auto import tqdm
        return tqdm(total=total, desc=desc, unit=unit, file=sys.stderr, **options)
    return QuietBar(total, desc, unit, options.get("initial", 0))


class QuietBar:
    """The bar where nobody watches: counts, draws nothing, logs its step once when closed."""

    def __init__(self, total=None, desc=None, unit="it", initial=0):
        self.total, self.desc, self.unit, self.n = total, desc, unit, initial
        self._closed = False

    def update(self, n=1):
        self.n += n

    def reset(self, total=None):
        self.n = 0
        if total is not None:
            self.total = total

    def set_postfix_str(self, s="", refresh=True):
        pass

    def close(self):
        # Facts, not "done": close() also runs in the finally of a failed transfer.
        if not self._closed and self.desc:
            of = f" of {self.total}" if self.total is not None else ""
            log.info("%s: %s%s %s", self.desc, self.n, of, self.unit)
        self._closed = True

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
