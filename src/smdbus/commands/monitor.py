"""``smd monitor``: print every message on the proxy's bus, a line each.

Plain: local time, class names, payload (JSON re-printed on one line with
spaces, other text as is, binary as hex). ``--json``: one JSON object per line.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import sys
import time
from typing import Any

from smdbus.classes import ALL_CLASSES, class_names, parse_mask
from smdbus.wire import DEFAULT_ADDRESS, RxPayload, parse_address
from smdbus.wire.stream import WireStream


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--class",
        dest="classes",
        default="ALL",
        metavar="NAMES|MASK",
        help="classes to show: NETWORK,user0 or 0x6 (default ALL)",
    )
    parser.add_argument("--json", action="store_true", help="JSON lines instead of text")
    parser.add_argument("--socket", default=DEFAULT_ADDRESS, metavar="ADDR", help="proxy address")
    parser.add_argument("--count", type=int, default=0, metavar="N", help="stop after N messages")


def run(args: argparse.Namespace) -> int:
    try:
        mask = parse_mask(args.classes) & ALL_CLASSES
        address = parse_address(args.socket)
    except ValueError as exc:
        print(f"smd monitor: {exc}", file=sys.stderr)
        return 2
    if not mask:
        print("smd monitor: the class mask is empty", file=sys.stderr)
        return 2
    try:
        asyncio.run(_monitor(address, mask, args.json, args.count))
    except ConnectionError as exc:
        print(f"smd monitor: {exc}", file=sys.stderr)
        return 1
    except BrokenPipeError:
        return 0
    return 0


def _wall(timestamp_us: int) -> datetime.datetime:
    """Monotonic µs (shared by the host's processes) → local wall-clock time."""
    age = time.monotonic() - timestamp_us / 1e6
    return datetime.datetime.fromtimestamp(time.time() - age)


def _payload(body: bytes) -> tuple[str, Any]:
    """("json", obj) | ("text", str) | ("hex", str)."""
    try:
        text = body.decode()
    except UnicodeDecodeError:
        return "hex", body.hex()
    try:
        return "json", json.loads(text)
    except ValueError:
        return "text", text


def format_line(msg: RxPayload) -> str:
    kind, value = _payload(msg.body)
    when = _wall(msg.timestamp).strftime("%H:%M:%S.%f")
    names = "|".join(class_names(msg.cls)) or "0"
    if kind == "json":
        shown = json.dumps(value, ensure_ascii=False)
    elif kind == "hex":
        shown = f"<{len(msg.body)} bytes> {value}"
    else:
        shown = value.encode("unicode_escape").decode() if not value.isprintable() else value
    return f"{when}  {names:<13} {shown}"


def format_json(msg: RxPayload) -> str:
    kind, value = _payload(msg.body)
    record: dict[str, Any] = {
        "time": _wall(msg.timestamp).isoformat(timespec="microseconds"),
        "timestamp_us": msg.timestamp,
        "class": msg.cls,
        "classes": class_names(msg.cls),
    }
    if kind == "hex":
        record["payload_hex"] = value
    else:
        record["payload"] = value
    return json.dumps(record, ensure_ascii=False, separators=(",", ":"))


async def _monitor(address: str, mask: int, as_json: bool, count: int) -> None:
    fmt = format_json if as_json else format_line
    seen = 0
    async with await WireStream.connect(address, mask) as stream:
        async for msg in stream:
            sys.stdout.write(fmt(msg) + "\n")
            sys.stdout.flush()
            seen += 1
            if count and seen >= count:
                return
    print("smd monitor: the proxy hung up", file=sys.stderr)
