"""The ``smd`` command: a table of subcommands, each in its own module.

Every subcommand lives in ``smdbus.commands.<module>`` and exposes
``configure(parser)`` and ``run(args) -> int``. Modules are imported only
when their command runs, so ``smd send`` does not pay for httpx or pyroute2.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

COMMANDS: dict[str, tuple[str, str]] = {
    "demo": ("demo", "a short live demonstration of the in-process bus"),
    "proxy": ("proxy", "run the cross-process bus proxy on a Unix socket"),
    "monitor": ("monitor", "print every message on the proxy's bus"),
    "send": ("send", "send one message through the proxy"),
    "peers": ("peers", "list the proxy's connections"),
    "state": ("state", "print the system state (--watch: each change)"),
    "button-replay": ("button_replay", "replay a press pattern through the classifier"),
    "buttons": ("buttons", "classify real buttons (evdev, GPIO) live"),
    "routes": ("routes", "print the routing-table cache"),
    "cpd": ("cpd", "run one captive portal detection check"),
    "daemon": ("daemon", "the device daemon: proxy, boot states, buttons, network"),
    "bridge": ("bridge", "bridge the bus to an MQTT broker (--status: how it is doing)"),
    "fleet": ("fleet", "the devices on an MQTT broker; monitor; send a command down"),
}


def _load(name: str) -> object:
    module, _ = COMMANDS[name]
    return importlib.import_module(f"smdbus.commands.{module}")


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The parser; with ``only``, just that subcommand is configured (imported)."""
    parser = argparse.ArgumentParser(prog="smd", description="smdbus: a system message bus")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (_, summary) in COMMANDS.items():
        p = sub.add_parser(name, help=summary, description=summary)
        if name == only:
            _load(name).configure(p)  # type: ignore[attr-defined]
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    chosen = next((a for a in args_list if a in COMMANDS), None)
    parser = build_parser(chosen)
    args = parser.parse_args(args_list)
    if args.command is None:
        parser.print_help()
        return 2
    level = logging.WARNING - 10 * min(args.verbose, 2)
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        result: int = _load(args.command).run(args)  # type: ignore[attr-defined]
    except KeyboardInterrupt:
        return 130
    return result


if __name__ == "__main__":
    sys.exit(main())
