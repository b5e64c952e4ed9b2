"""``smd web-url``: the address of the running daemon's web view, with its token.

    smd web-url                        # http://127.0.0.1:8765/?token=...
    smd web-url --config /etc/smd/daemon.toml
    smd web-url --token                # the token alone (curl -H "Authorization: Bearer ...")

Reads ``web.json`` from the runtime directory of ``[web]`` (the daemon
writes it, 0600, while the view is up). Exit status 1 when there is none.
"""

from __future__ import annotations

import argparse
import sys

from smdbus.commands._options import examples
from smdbus.daemon import DaemonConfigError, load_config
from smdbus.web import RuntimeInfoError, read_info


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config", "-c", metavar="FILE", default=None, help="the daemon's TOML config"
    )
    parser.add_argument("--token", action="store_true", help="print the token alone")
    examples(
        parser,
        "smd web-url                                  the page's address, with its token",
        'curl -H "Authorization: Bearer $(smd web-url --token)" http://127.0.0.1:8765/api/state',
    )


def run(args: argparse.Namespace) -> int:
    try:
        config = load_config(args.config)
        info = read_info(config.web.directory())
    except DaemonConfigError as e:
        print(f"smd web-url: bad config: {e}", file=sys.stderr)
        return 2
    except RuntimeInfoError as e:
        print(f"smd web-url: {e}", file=sys.stderr)
        return 1
    if args.token:
        print(info["token"])
        return 0
    print(info["url"])
    if info.get("socket"):
        print(f"unix socket: {info['socket']} (ssh -L 8765:{info['socket']} ...)")
    return 0
