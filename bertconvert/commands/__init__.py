"""Sub-commands of the ``bertconvert`` CLI, one module each.

Each module listed in :data:`COMMAND_MODULES` defines ``register(subparsers)``, which adds
its sub-parser(s) and sets ``func`` (called with the parsed args; returns an exit code or
None for 0). Keep parsing and error mapping in :mod:`bertconvert.cli`; keep the work in
the library modules so it is usable from Python too.
"""

#: Modules under bertconvert.commands, in the order their commands appear in --help.
COMMAND_MODULES = [
    "convert",
    "inspect",
    "export",
    "legacy",
    "verify",
    "cache",
]
