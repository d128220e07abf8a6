"""``mummi-ml report STATE_DIR``: the campaign report, a self-contained HTML page written from a
selector state directory (picks, novelty, class shares against quotas, covering radius, drift
with events and model versions, jobs, ingest, quarantine reasons, a map of pool and picks).

``--config`` (the campaign's) supplies the class quotas; the rest comes from the state directory.
Exit status: 0 written, 2 bad input (not a selector state directory, unreadable files).
"""

from __future__ import annotations

import argparse
import sys

HELP = "write the campaign report (HTML) of a selector state directory"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("state_dir", metavar="STATE_DIR", help="the selector's state directory")
    parser.add_argument("--out", metavar="DIR", default=None,
                        help="where to write campaign_report.html (default: STATE_DIR)")


def run(args: argparse.Namespace) -> int:
    from mummi_ml.campaign.report import write_campaign_report

    quotas = None
    if args.config is not None or args.overrides:
        from mummi_ml.cli._common import config_from_args

        quotas = config_from_args(args).selector.class_quotas
    path = write_campaign_report(args.state_dir, args.out, quotas)
    print(f"mummi-ml report: wrote {path}", file=sys.stderr)
    return 0
