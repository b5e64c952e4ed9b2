"""``smd routes``: the routing-table cache as the route monitor sees it.

Dumps the kernel's table through rtnetlink into the same cache the daemon
keeps (unicast and local routes, every table, IPv4 and IPv6) and prints one
route a line::

    $ smd routes
    default via 192.0.2.1 dev eth0 proto boot scope global
    192.0.2.0/24 dev eth0 proto kernel scope link src 192.0.2.2
    local 192.0.2.2 dev eth0 table local proto kernel scope host src 192.0.2.2

``--json`` prints a JSON list of routes with every cached field.
``--netns NAME`` looks inside a named network namespace (``ip netns``).
"""

from __future__ import annotations

import argparse
import json
import sys

from smdbus._aiorun import run as run_async
from smdbus.commands._failure import strip_errno
from smdbus.commands._options import examples


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="a JSON list instead of lines")
    parser.add_argument(
        "--netns", metavar="NAME", help="the network namespace to look in (as ip netns names it)"
    )
    parser.add_argument(
        "--gateways", action="store_true", help="only routes through a gateway (default first)"
    )
    examples(
        parser,
        "smd routes                 the table as the route monitor caches it",
        "smd routes --gateways      only routes through a gateway",
        "smd routes --netns dev0 --json",
    )


def run(args: argparse.Namespace) -> int:
    from smdbus.net import dump_routes

    try:
        table = run_async(dump_routes(args.netns))
    except (OSError, TimeoutError) as e:
        if args.netns and isinstance(e, FileNotFoundError):
            print(
                f"smd routes: no network namespace {args.netns!r} (see ip netns list)",
                file=sys.stderr,
            )
            return 1
        where = f" in network namespace {args.netns!r}" if args.netns else ""
        print(
            f"smd routes: cannot read the routing table{where}: {strip_errno(str(e))}",
            file=sys.stderr,
        )
        return 1
    routes = table.gateways() if args.gateways else table.routes
    if args.json:
        links = table.link_names()
        out = []
        for r in routes:
            d = r.as_dict()
            d["dev"] = links.get(r.ifindex) if r.ifindex is not None else None
            out.append(d)
        print(json.dumps(out, indent=2))
    else:
        links = table.link_names()
        for r in routes:
            print(r.describe(links))
    return 0
