"""``smd send CLASS PAYLOAD``: publish one message through the proxy."""

from __future__ import annotations

import argparse
import asyncio
import sys

from smdbus.classes import parse_mask
from smdbus.wire import DEFAULT_ADDRESS, MAX_BODY, parse_address
from smdbus.wire.stream import WireStream


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("cls", metavar="CLASS", help="NETWORK, user0, 0x4 ... (one or more bits)")
    parser.add_argument("payload", metavar="PAYLOAD", help="the message body; - reads stdin")
    parser.add_argument("--socket", default=DEFAULT_ADDRESS, metavar="ADDR", help="proxy address")
    parser.add_argument("--count", type=int, default=1, metavar="N", help="send it N times")


def run(args: argparse.Namespace) -> int:
    try:
        cls = parse_mask(args.cls)
        address = parse_address(args.socket)
    except ValueError as exc:
        print(f"smd send: {exc}", file=sys.stderr)
        return 2
    if not 0 < cls <= 0xFFFFFFFF:
        print(f"smd send: class {args.cls} must have a bit among the 32", file=sys.stderr)
        return 2
    body = sys.stdin.buffer.read() if args.payload == "-" else args.payload.encode()
    if len(body) > MAX_BODY:
        print(
            f"smd send: payload of {len(body)} bytes is over the limit of {MAX_BODY}",
            file=sys.stderr,
        )
        return 2
    try:
        asyncio.run(_send(address, cls, body, args.count))
    except ConnectionError as exc:
        print(f"smd send: {exc}", file=sys.stderr)
        return 1
    return 0


async def _send(address: str, cls: int, body: bytes, count: int) -> None:
    stream = await WireStream.connect(address, 0)
    try:
        for _ in range(count):
            stream.send_nowait(cls, body)
        await stream.drain()
    finally:
        await stream.close()
