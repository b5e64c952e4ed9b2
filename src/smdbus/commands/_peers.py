"""``smd peers``: the proxy's connections, with their counters.

Asks the proxy on its control stream (``_smdbus_ctl``); C clients never see it.
Open connections by default (``--all`` adds the closed ones the proxy still
remembers, with why they closed). The STATE column says in words where a
connection is (:data:`STATE_WORDS`); ``--json`` keeps the proxy's own names.
What a peer chose (its streamtype name, in a close reason, the label it gave
itself with ``describe``) is shown escaped.
Every cell is escaped before it reaches the screen, and ``--help`` says
what each column counts (:data:`COLUMNS_HELP`).

The command asks without asyncio (:class:`~smdbus.wire._blocking.BlockingStream`);
:func:`query_peers` is the same question for code on an event loop (tests,
benches, a proxy in the same process).
"""

from __future__ import annotations

import argparse
import json

from smdbus._escape import printable
from smdbus.commands._options import add_socket, examples
from smdbus.wire import CONTROL_MAX_PAYLOAD, CONTROL_STREAMTYPE, BlockingStream

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing
if TYPE_CHECKING:
    from typing import Any

COLUMNS_HELP = """\
columns:
  ID        the proxy's number for the connection
  STATE     starting (no STREAMTYPE yet), open, query (a tool like this one), closed
  PID, UID  the peer process and user (SO_PEERCRED, taken at accept)
  MASK      the classes it receives (hex for a mask of many bits, as C clients send)
  PUB       messages it published onto the bus
  DELIV     messages written to its socket (the kernel holds them for it to read)
  QUEUED    messages for it not yet written to its socket (waiting in the proxy)
  BUFFERED  bytes of those, in the proxy's memory
  DROPPED   messages accepted by the bus for it that the proxy will never write to
            its socket: those waiting when the proxy hung up on it (too slow,
            stalled, over max_outbound, a protocol error), and, once a write to it
            failed (NOTE "write failed"), those on their way and every later one.
            Not what its socket took and it never read (the proxy cannot see that).
            The total over all peers ever is the dropped_messages counter.
  NOTE      what the client says of itself, in quotes (a label it set with
            "describe", e.g. the fleet bridge's link state); then the reason it
            was closed; else its streamtype if not _lws_smd, "held" while its
            publishing waits, "behind" or "stalled" as a subscriber
"""


STATE_WORDS = {
    "new": "starting",  # connected, has not said which stream it wants yet
    "smd": "open",  # a message stream: publishing and/or subscribed
    "control": "query",  # a control stream (smd peers itself)
    "closed": "closed",
}
"""The proxy's connection states, as the table shows them."""


def configure(parser: argparse.ArgumentParser) -> None:
    add_socket(parser)
    parser.add_argument("--json", action="store_true", help="one JSON object per connection")
    parser.add_argument(
        "--all", action="store_true", help="closed connections too (the last the proxy keeps)"
    )
    # Before --all existed, the default was all and --open asked for open ones only.
    parser.add_argument("--open", action="store_true", help=argparse.SUPPRESS)
    examples(
        parser,
        "smd peers                    open connections: pid, uid, mask, counters",
        "smd peers --all              and the closed ones, with why they closed",
        "smd peers --json | jq .pid   one JSON object per connection, then the totals",
    )
    parser.epilog = f"{COLUMNS_HELP}\n{parser.epilog}"


def run(args: argparse.Namespace) -> int:
    peers, summary = ask_peers(args.socket, closed=args.all and not args.open)
    if args.json:
        for peer in peers:
            print(json.dumps(peer, separators=(",", ":")))
        print(json.dumps({"stats": summary.get("stats", {})}, separators=(",", ":")))
    else:
        print(format_table(peers, summary.get("stats", {})))
    return 0


def ask_peers(
    address: str, *, closed: bool = True, timeout: float = 3.0
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The proxy's peer records and its final summary (``stats``), without asyncio."""
    peers: list[dict[str, Any]] = []
    with BlockingStream.connect(
        address, 0, streamtype=CONTROL_STREAMTYPE, max_payload=CONTROL_MAX_PAYLOAD
    ) as stream:
        stream.send(0, _query(closed))
        while True:
            msg = stream.receive(timeout)
            if msg is None:
                raise ConnectionError(f"no answer from the proxy within {timeout:g} s")
            summary = _take(msg.payload, peers)
            if summary is not None:
                return peers, summary


async def query_peers(
    address: str, *, closed: bool = True, timeout: float = 3.0
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """:func:`ask_peers` on an event loop (the proxy may be on the same loop)."""
    import asyncio

    from smdbus.wire import WireStream

    stream = await WireStream.connect(
        address, 0, streamtype=CONTROL_STREAMTYPE, max_payload=CONTROL_MAX_PAYLOAD
    )
    peers: list[dict[str, Any]] = []
    try:
        await stream.send(0, _query(closed))
        while True:
            msg = await asyncio.wait_for(stream.receive(), timeout)
            summary = _take(msg.payload, peers)
            if summary is not None:
                return peers, summary
    except TimeoutError:
        raise ConnectionError(f"no answer from the proxy within {timeout:g} s") from None
    finally:
        await stream.close()


def _query(closed: bool) -> bytes:
    return json.dumps({"op": "peers", "closed": closed}).encode()


def _take(payload: bytes, peers: list[dict[str, Any]]) -> dict[str, Any] | None:
    """One reply: a peer record goes to ``peers``; the final summary is returned."""
    reply = json.loads(payload)
    if "error" in reply:
        raise ConnectionError(f"proxy refused the query: {printable(str(reply['error']))}")
    if "peer" in reply:
        peers.append(reply["peer"])
    return reply if reply.get("end") else None


_COLUMNS = [
    ("ID", "id"),
    ("STATE", "state"),
    ("PID", "pid"),
    ("UID", "uid"),
    ("GID", "gid"),
    ("COMM", "comm"),
    ("MASK", "mask_names"),
    ("PUB", "published"),
    ("DELIV", "delivered"),
    ("QUEUED", "queued"),
    ("BUFFERED", "buffered"),
    ("DROPPED", "dropped"),
    ("REFUSED", "refused"),
    ("NOTE", "note"),
]


def _note(peer: dict[str, Any]) -> str:
    notes = [f'"{peer["label"]}"'] if peer.get("label") else []
    if peer.get("reason"):
        return ", ".join([*notes, str(peer["reason"])])
    if peer.get("streamtype") and peer["streamtype"] != "_lws_smd":
        notes.append(peer["streamtype"])
    if peer.get("held"):
        notes.append(f"held ({peer['held']})")
    asked = peer.get("asked")
    if asked and peer.get("mask") != asked:
        notes.append(f"asked {asked:#x}, the policy allows {peer.get('mask', 0):#x}")
    if peer.get("stalled"):
        notes.append("stalled")
    elif peer.get("congested"):
        notes.append("behind")
    return ", ".join(notes)


def format_table(peers: list[dict[str, Any]], stats: dict[str, Any]) -> str:
    rows = [[h for h, _ in _COLUMNS]]
    for p in peers:
        state = str(p.get("state"))
        row = {**p, "note": _note(p), "state": STATE_WORDS.get(state, state)}
        rows.append(["-" if row.get(k) is None else printable(str(row[k])) for _, k in _COLUMNS])
    widths = [max(len(r[i]) for r in rows) for i in range(len(_COLUMNS) - 1)]
    lines = [
        "  ".join(cell.ljust(w) for cell, w in zip(r[:-1], widths, strict=True)) + "  " + r[-1]
        for r in rows
    ]
    counters = ", ".join(
        f"{printable(k, limit=40)} {v}"
        for k, v in stats.items()
        if k not in ("address",) and isinstance(v, int)
    )
    lines.append(f"proxy {printable(str(stats.get('address', '?')))}: {counters}")
    return "\n".join(line.rstrip() for line in lines)
