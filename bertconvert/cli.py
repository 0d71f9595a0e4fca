"""Command-line entry point: ``bertconvert <command> ...``.

Parsing only: each sub-command lives in :mod:`bertconvert.commands` and calls the library.
Errors from the :class:`~bertconvert.errors.BertConvertError` family become a one-line
message on stderr and the error's exit code (2 for bad input, 1 for a parity mismatch);
``--debug`` shows the traceback instead. Messages raised while a command runs name CLI flags
(``--overwrite``), not the library's keywords (:func:`bertconvert.errors.option`).

Output that nobody reads any more (``bertconvert inspect CKPT | head``) ends the command
quietly with exit status 141, as for a program killed by SIGPIPE: no traceback, and a
``set -o pipefail`` script still sees that the output was cut short.

Interrupts (see :class:`_Interrupts`): SIGINT (Ctrl-C) or SIGTERM before the command's
output is published removes what the run had written and exits with 130 or 143; once the
output is published, they are ignored and the command finishes normally.
"""
import argparse
import importlib
import logging
import os
import signal
import sys
import threading

from . import __version__
from .atomic import INTERRUPT_SIGNALS, on_publish
from .commands import COMMAND_MODULES
from .errors import BertConvertError, cli_spelling
from .terminal.progress import ALWAYS

log = logging.getLogger("bertconvert")


def build_parser():
    """The full argparse parser with every registered sub-command."""
    parser = argparse.ArgumentParser(
        prog="bertconvert",
        description="Convert Google TensorFlow BERT checkpoints to PyTorch, cache weights, "
                    "and verify numerical parity.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("--debug", action="store_true",
                        help="show tracebacks and debug logging")
    parser.add_argument("--quiet", "-q", action="store_true",
                        help="no progress bars and no warnings on stderr (errors still print); "
                             "results and summaries still go to stdout")
    parser.add_argument("--progress", action="store_true", dest="force_progress",
                        help="draw progress bars on stderr even when it is not a terminal "
                             "(by default they are drawn only on a terminal, never into "
                             "logs or pipes)")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    subparsers.required = True
    for name in COMMAND_MODULES:
        importlib.import_module(f"{__package__}.commands.{name}").register(subparsers)
    return parser


_GLOBAL_FLAGS = ("--debug", "--quiet", "-q", "--progress")


def _hoist_global_flags(argv):
    """Accept --debug/--quiet/--progress after the sub-command too
    (``bertconvert convert ... --quiet``)."""
    front = [a for a in argv if a in _GLOBAL_FLAGS]
    rest = [a for a in argv if a not in _GLOBAL_FLAGS]
    return front + rest


def _configure_logging(args):
    # Results go to stdout and progress bars to stderr; logging adds warnings by default
    # and the step-by-step story (INFO and DEBUG) with --debug.
    level = logging.DEBUG if args.debug else logging.ERROR if args.quiet else logging.WARNING
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s",
                        stream=sys.stderr)
    # Third-party chatter stays at WARNING even in --debug.
    for noisy in ("urllib3", "botocore", "boto3", "s3transfer", "filelock"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


#: Exit status when stdout's reader goes away: 128 + SIGPIPE, what a shell reports for a
#: program the signal killed.
EXIT_BROKEN_PIPE = 141


def _silence_stdout():
    """Point stdout at /dev/null, so that the interpreter's last flush at exit has nowhere to
    fail (it would print a second BrokenPipeError). A stdout without a descriptor (tests
    capturing output) has no pipe to break; it is left alone."""
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, fd)
    finally:
        os.close(devnull)


class Interrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM, raised where the command is, so that its cleanup runs."""

    def __init__(self, signum):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


class _Interrupts:
    """The CLI's SIGINT/SIGTERM handlers, installed for one command.

    Before the command's output is published, a signal raises :class:`Interrupted` (the
    library removes its temp files on the way out; exit 128 + the signal: 130 or 143).
    Once published (:func:`bertconvert.atomic.on_publish`), undoing is impossible and
    reporting a failure would be false: the signal is noted and the command completes.
    """

    def __init__(self, process_exit):
        self.published = False
        self.previous = {}
        self.process_exit = process_exit
        self.ignored = []  # noted, and reported after the command (no I/O in a handler)

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            # A signal the caller ignores (a background job's SIGINT) stays ignored.
            self.previous = {sig: signal.signal(sig, self.handle) for sig in INTERRUPT_SIGNALS
                             if signal.getsignal(sig) is not signal.SIG_IGN}
        return self

    def __exit__(self, *exc):
        if self.published and self.process_exit:
            return  # the process ends next: a late signal must not turn success into failure
        for sig, handler in self.previous.items():
            signal.signal(sig, signal.SIG_DFL if handler is None else handler)

    def mark_published(self):
        self.published = True

    def handle(self, signum, frame):
        if self.published:
            self.ignored.append(signal.Signals(signum).name)
            return
        raise Interrupted(signum)


def main(argv=None):
    """Run the CLI; returns the process exit code."""
    argv_given = argv is not None  # else this is the process's entry point
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = parser.parse_args(_hoist_global_flags(argv))
    _configure_logging(args)
    # One decision for every bar (bertconvert.terminal.progress): on a terminal unless -q;
    # --progress draws them anywhere, but -q (no bars, as its help says) wins over it.
    args.progress = False if args.quiet else ALWAYS if args.force_progress else True
    try:
        with _Interrupts(process_exit=not argv_given) as interrupts, \
                on_publish(interrupts.mark_published), cli_spelling():
            code = args.func(args)
            sys.stdout.flush()  # a closed pipe shows here, not at interpreter exit
        if interrupts.ignored:
            log.warning("%s came after the output was published; the command completed",
                        " and ".join(dict.fromkeys(interrupts.ignored)))
    except BrokenPipeError:
        _silence_stdout()
        return EXIT_BROKEN_PIPE
    except BertConvertError as e:
        if args.debug:
            raise
        print(f"bertconvert {args.command}: error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt as e:
        signum = getattr(e, "signum", signal.SIGINT)
        print(f"bertconvert: interrupted ({signal.Signals(signum).name})", file=sys.stderr)
        return 128 + signum
    return 0 if code is None else int(code)


if __name__ == "__main__":
    sys.exit(main())
