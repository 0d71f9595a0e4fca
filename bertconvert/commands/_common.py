"""Argument types and choices shared by the sub-commands (not a command itself: it is not
listed in :data:`bertconvert.commands.COMMAND_MODULES`).

argparse turns an :class:`argparse.ArgumentTypeError` raised by a ``type=`` callable into a
usage error (exit 2) that quotes our message, so each helper says what it expected.

Like the command modules, this one imports only the standard library: building the parser
must not import numpy, torch or TensorFlow (``bertconvert --help`` stays instant).
"""
import argparse

from ..layout import HEAD_NAMES  # noqa: F401  (standard library only, like this module)


def positive_int(text):
    """argparse type: an integer >= 1 (``--num-labels``)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def non_negative_float(text):
    """argparse type: a number >= 0 (tolerances); NaN is refused."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not value >= 0:  # also false for NaN
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {text}")
    return value

