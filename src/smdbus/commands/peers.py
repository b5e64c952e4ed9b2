"""``smd peers``: the proxy's connections, with their counters.

Asks the proxy on its control stream (``_smdbus_ctl``); C clients never see it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import Any

from smdbus.proxy.settings import CONTROL_STREAMTYPE
from smdbus.wire import DEFAULT_ADDRESS, parse_address
from smdbus.wire.stream import WireStream

_CONTROL_MAX_BODY = 0xFFFF - 32


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--socket", default=DEFAULT_ADDRESS, metavar="ADDR", help="proxy address")
    parser.add_argument("--json", action="store_true", help="one JSON object per connection")
    parser.add_argument("--open", action="store_true", help="only open connections")


def run(args: argparse.Namespace) -> int:
    try:
        address = parse_address(args.socket)
    except ValueError as exc:
        print(f"smd peers: {exc}", file=sys.stderr)
        return 2
    try:
        peers, summary = asyncio.run(query_peers(address, closed=not args.open))
    except ConnectionError as exc:
        print(f"smd peers: {exc}", file=sys.stderr)
        return 1
    if args.json:
        for peer in peers:
            print(json.dumps(peer, separators=(",", ":")))
        print(json.dumps({"stats": summary.get("stats", {})}, separators=(",", ":")))
    else:
        print(format_table(peers, summary.get("stats", {})))
    return 0


async def query_peers(
    address: str, *, closed: bool = True, timeout: float = 3.0
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The proxy's peer records and its final summary (``stats``)."""
    stream = await WireStream.connect(
        address, 0, streamtype=CONTROL_STREAMTYPE, max_body=_CONTROL_MAX_BODY
    )
    peers: list[dict[str, Any]] = []
    try:
        query = json.dumps({"op": "peers", "closed": closed}).encode()
        await stream.send(0, query)
        while True:
            msg = await asyncio.wait_for(stream.receive(), timeout)
            reply = json.loads(msg.body)
            if "error" in reply:
                raise ConnectionError(f"proxy refused the query: {reply['error']}")
            if "peer" in reply:
                peers.append(reply["peer"])
            if reply.get("end"):
                return peers, reply
    except TimeoutError:
        raise ConnectionError(f"no answer from the proxy within {timeout:g} s") from None
    finally:
        await stream.close()


_COLUMNS = [
    ("ID", "id"),
    ("STATE", "state"),
    ("PID", "pid"),
    ("UID", "uid"),
    ("MASK", "mask_names"),
    ("PUB", "published"),
    ("DELIV", "delivered"),
    ("QUEUED", "queued"),
    ("BUFFERED", "buffered"),
    ("DROPPED", "dropped"),
    ("NOTE", "note"),
]


def _note(peer: dict[str, Any]) -> str:
    if peer.get("reason"):
        return str(peer["reason"])
    notes = []
    if peer.get("streamtype") and peer["streamtype"] != "_lws_smd":
        notes.append(peer["streamtype"])
    if peer.get("held"):
        notes.append(f"held ({peer['held']})")
    if peer.get("stalled"):
        notes.append("stalled")
    elif peer.get("congested"):
        notes.append("behind")
    return ", ".join(notes)


def format_table(peers: list[dict[str, Any]], stats: dict[str, Any]) -> str:
    rows = [[h for h, _ in _COLUMNS]]
    for p in peers:
        row = {**p, "note": _note(p)}
        rows.append(["-" if row.get(k) is None else str(row[k]) for _, k in _COLUMNS])
    widths = [max(len(r[i]) for r in rows) for i in range(len(_COLUMNS) - 1)]
    lines = [
        "  ".join(cell.ljust(w) for cell, w in zip(r[:-1], widths, strict=True)) + "  " + r[-1]
        for r in rows
    ]
    counters = ", ".join(
        f"{k} {v}" for k, v in stats.items() if k not in ("address",) and isinstance(v, int)
    )
    lines.append(f"proxy {stats.get('address', '?')}: {counters}")
    return "\n".join(line.rstrip() for line in lines)
