"""``mummi-ml info FILE.h5 [...]``: what a patch file (or a set of shards) holds."""

from __future__ import annotations

import argparse
import json

from mummi_ml.patch import format_summary, summarise_patches

HELP = "summarise patch files: class counts, time span, per-channel statistics, schema version"
USES_CONFIG = False  # reads no configuration: no --config/--set


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("files", nargs="+", help="patch files, shard globs or directories")
    parser.add_argument("--json", action="store_true", help="print JSON instead of text")


def run(args: argparse.Namespace) -> int:
    summary = summarise_patches(args.files)
    print(json.dumps(summary, indent=2) if args.json else format_summary(summary))
    return 0
