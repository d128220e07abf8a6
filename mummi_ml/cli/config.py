"""``mummi-ml config``: print the effective configuration (file + overrides + defaults)."""

from __future__ import annotations

import argparse

from mummi_ml.cli._common import config_from_args
from mummi_ml.config import dump_config

HELP = "print the effective configuration as YAML (defaults, file and --set overrides)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """No options beyond --config/--set."""


def run(args: argparse.Namespace) -> int:
    print(dump_config(config_from_args(args)), end="")
    return 0
