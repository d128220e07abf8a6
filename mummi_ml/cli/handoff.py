"""``mummi-ml handoff list|take|ack|fail DIR``: the consumer side of the ``handoff`` backend."""

from __future__ import annotations

import argparse
import json

HELP = "list, take, acknowledge or fail picks handed over by the selector (jobs.backend: handoff)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    for action, text in (("list", "print the records not answered yet, oldest first"),
                         ("take", "claim records before launching them (their jobs run)"),
                         ("ack", "answer done: the pick's simulation was launched"),
                         ("fail", "answer failed, with --reason (the selector may retry)")):
        p = sub.add_parser(action, help=text, description=text)
        p.add_argument("dir", metavar="DIR",
                       help="the handoff directory, or the selector's state directory")
        if action == "list":
            p.add_argument("--all", action="store_true", help="also answered records")
            p.add_argument("--json", action="store_true", help="one JSON record per line")
        else:
            p.add_argument("names", metavar="NAME", nargs="+",
                           help="job name, producer name or patch id of a record")
        if action == "fail":
            p.add_argument("--reason", required=True, help="why (one line)")
            p.add_argument("--exit-code", type=int, default=None, help="the launcher's status")


def run(args: argparse.Namespace) -> int:
    from mummi_ml.backends.handoff import HandoffConsumer

    c = HandoffConsumer(args.dir)
    if args.action == "list":
        for rec in c.list(include_answered=args.all):
            if args.json:
                print(json.dumps(rec.to_json()))
            else:
                ans = c.answer(rec.name)
                state = ans.status if ans else ("taken" if c.is_taken(rec.name) else "open")
                print(f"{rec.name}\t{rec.patch_id}\t{rec.producer_name or '-'}\tclass "
                      f"{rec.cls}\tnovelty {rec.novelty}\t{state}\t{rec.patch_file}")
        return 0
    names = [c.resolve(key) for key in args.names]  # every key valid before any answer
    for name in names:
        if args.action == "take":
            c.take(name)
        elif args.action == "ack":
            c.ack(name)
        else:
            c.fail(name, args.reason, args.exit_code)
    return 0
