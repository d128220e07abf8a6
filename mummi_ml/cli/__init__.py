"""The ``mummi-ml`` command: a thin layer that parses arguments and calls library functions.

Each subcommand is a module ``mummi_ml/cli/<name>.py`` (``-`` in the command is ``_`` in the
module name) defining::

    HELP: str                                   # one line for ``mummi-ml --help``
    USES_CONFIG: bool = True                    # False: no --config/--set (it reads no config)
    def add_arguments(parser) -> None: ...      # its own options (--config/--set are added here)
    def run(args) -> int: ...                   # exit status

Modules are found automatically; import heavy libraries (torch, mpi4py) inside ``run`` so that
``mummi-ml --help`` stays fast.

Errors: a :class:`~mummi_ml.errors.MummiMLError` or :class:`OSError` (bad input: a file, a
config, a state directory, a device, a value) is printed as ONE line ``mummi-ml CMD: error: ...``
on stderr, cut to :data:`MAX_MESSAGE` characters, with exit status 2 (``--debug`` re-raises it);
running out of memory or disk space is reported the same way. Anything else is a bug in mummi-ml:
one line naming the exception, exit status 1, and ``--debug`` shows the traceback.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
from types import ModuleType

from mummi_ml import __version__
from mummi_ml.config_loader import shorten
from mummi_ml.errors import MummiMLError

__all__ = ["main", "build_parser", "EXIT_BAD_INPUT", "EXIT_BUG", "MAX_MESSAGE"]

EXIT_BAD_INPUT = 2
EXIT_BUG = 1
MAX_MESSAGE = 400  # characters of an error line after "mummi-ml CMD: error: "


def _subcommand_modules() -> dict[str, ModuleType]:
    mods = {}
    for info in pkgutil.iter_modules(__path__):
        if info.name.startswith("_"):
            continue
        mod = importlib.import_module(f"{__name__}.{info.name}")
        if hasattr(mod, "run") and hasattr(mod, "add_arguments"):
            mods[info.name.replace("_", "-")] = mod
    return dict(sorted(mods.items()))


class _Parser(argparse.ArgumentParser):
    """An argument parser whose usage errors are one line too (exit status 2)."""

    def error(self, message: str):  # type: ignore[override]
        self.exit(EXIT_BAD_INPUT, f"{self.prog}: error: {shorten(message, MAX_MESSAGE)} "
                                  f"(see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser with every subcommand."""
    parser = _Parser(
        prog="mummi-ml",
        description="Biology-informed similarity metric and in situ patch selection "
        "for multiscale RAS/RAF membrane campaigns.",
    )
    parser.add_argument("--version", action="version", version=f"mummi-ml {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, mod in _subcommand_modules().items():
        p = sub.add_parser(name, help=mod.HELP, description=mod.HELP)
        if getattr(mod, "USES_CONFIG", True):
            p.add_argument(
                "--config", metavar="FILE.yaml", default=None, help="YAML configuration"
            )
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
        p.set_defaults(run_subcommand=mod.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``mummi-ml``; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    try:
        return int(args.run_subcommand(args) or 0)
    except KeyboardInterrupt:
        print(f"mummi-ml {args.command}: interrupted", file=sys.stderr)
        return 130
    except (MummiMLError, OSError) as exc:
        if args.debug:
            raise
        _print_error(args.command, one_line(exc))
        return EXIT_BAD_INPUT
    except MemoryError:
        if args.debug:
            raise
        _print_error(args.command, "out of memory (the input or config asks for more memory "
                     "than this machine has)")
        return EXIT_BAD_INPUT
    except Exception as exc:  # noqa: BLE001 - the last net: a bug, still one line
        if args.debug:
            raise
        _print_error(args.command, f"internal error ({one_line(exc, with_type=True)}); this is a "
                     "bug in mummi-ml: rerun with --debug for the traceback and report it")
        return EXIT_BUG


def one_line(exc: BaseException, with_type: bool = False) -> str:
    """The first line of an exception's message (its type name if it has none), cut to
    :data:`MAX_MESSAGE` characters."""
    text = str(exc).strip()
    first = text.splitlines()[0] if text else type(exc).__name__
    if with_type and text:
        first = f"{type(exc).__name__}: {first}"
    return shorten(first, MAX_MESSAGE)


def _print_error(command: str, message: str) -> None:
    print(f"mummi-ml {command}: error: {message}", file=sys.stderr)
