"""The ``mummi-ml`` command: a thin layer that parses arguments and calls library functions.

Each subcommand is a module ``mummi_ml/cli/<name>.py`` (``-`` in the command is ``_`` in the
module name) defining::

    HELP: str                                   # one line for ``mummi-ml --help``
    def add_arguments(parser) -> None: ...      # its own options (--config/--set are added here)
    def run(args) -> int: ...                   # exit status

Modules are found automatically; import heavy libraries (torch, mpi4py) inside ``run`` so that
``mummi-ml --help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
from types import ModuleType

from mummi_ml import __version__
from mummi_ml.errors import MummiMLError

__all__ = ["main", "build_parser"]


def _subcommand_modules() -> dict[str, ModuleType]:
    mods = {}
    for info in pkgutil.iter_modules(__path__):
        if info.name.startswith("_"):
            continue
        mod = importlib.import_module(f"{__name__}.{info.name}")
        if hasattr(mod, "run") and hasattr(mod, "add_arguments"):
            mods[info.name.replace("_", "-")] = mod
    return dict(sorted(mods.items()))


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser with every subcommand."""
    parser = argparse.ArgumentParser(
        prog="mummi-ml",
        description="Biology-informed similarity metric and in situ patch selection "
        "for multiscale RAS/RAF membrane campaigns.",
    )
    parser.add_argument("--version", action="version", version=f"mummi-ml {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, mod in _subcommand_modules().items():
        p = sub.add_parser(name, help=mod.HELP, description=mod.HELP)
        p.add_argument("--config", metavar="FILE.yaml", default=None, help="YAML configuration")
        p.add_argument(
            "--set",
            dest="overrides",
            metavar="KEY=VALUE",
            action="append",
            default=[],
            help="override a config value, e.g. --set train.epochs=5 (repeatable)",
        )
        p.add_argument("--debug", action="store_true", help="show a traceback on errors")
        mod.add_arguments(p)
        p.set_defaults(_run=mod.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``mummi-ml``; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    try:
        return int(args._run(args) or 0)
    except KeyboardInterrupt:
        print(f"mummi-ml {args.command}: interrupted", file=sys.stderr)
        return 130
    except (MummiMLError, OSError) as exc:
        if args.debug:
            raise
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        print(f"mummi-ml {args.command}: error: {msg}", file=sys.stderr)
        return 2
