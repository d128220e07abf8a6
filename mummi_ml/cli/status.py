"""``mummi-ml status DIR``: print the selector's status.json."""

from __future__ import annotations

import argparse
import json

HELP = "print the status of a selector (its state directory's status.json)"
USES_CONFIG = False  # reads no configuration: no --config/--set


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("state_dir", metavar="DIR", help="the selector's state directory")
    parser.add_argument("--json", action="store_true", help="print the raw JSON")


def run(args: argparse.Namespace) -> int:
    from mummi_ml.selector.errors import SelectorError
    from mummi_ml.selector.status import format_status, read_status

    status = read_status(args.state_dir)
    where = f"{args.state_dir}/status.json"
    if not isinstance(status, dict):
        raise SelectorError(f"{where}: malformed (expected a JSON object, got "
                            f"{type(status).__name__})")
    try:
        text = json.dumps(status, indent=1, sort_keys=True) if args.json else format_status(status)
    except (TypeError, ValueError, AttributeError) as exc:
        raise SelectorError(f"{where}: malformed ({type(exc).__name__}: {exc})") from None
    print(text)
    return 0
