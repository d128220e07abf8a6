"""Helpers shared by the subcommand modules."""

from __future__ import annotations

import argparse

from mummi_ml.config import Config, load_config

__all__ = ["config_from_args"]


def config_from_args(args: argparse.Namespace) -> Config:
    """The validated config named by ``--config`` with the ``--set`` overrides applied."""
    return load_config(args.config, args.overrides)
