"""``smd monitor``: the messages on the proxy's bus, a line each, as they were sent.

Rules
-----
- The payload is shown as the sender wrote it: the bytes, not a re-encoding
  (``{"a":1,"a":2}`` stays that, ``1e2`` stays ``1e2``). Text that is not
  printable (control characters, escape sequences a peer could use to
  rewrite the terminal) is escaped; a payload that is not UTF-8 is shown as
  its length and hex. ``--pretty`` indents JSON instead (that one *is*
  re-encoded: duplicate keys collapse, numbers are normalised).
- ``--json`` prints one JSON object per message with the payload as a string
  (exact: ``jq -r .payload``; as an object: ``jq '.payload|fromjson'``).
- Colours only on a terminal, and not when ``NO_COLOR`` is set
  (``--color`` overrides).
- ``--class`` is the mask the proxy filters by (nothing else is sent to us);
  ``--grep`` and ``--field`` filter here. ``--count`` counts what is shown.
- Exit status: 0 when ``--count`` messages were shown, when ``--timeout``
  ended a watch without ``--count``, on Ctrl-C (130, as every command), or
  when the reader of a pipe has gone (``| head``); 1 when the proxy hangs up
  or ``--timeout`` ends before ``--count`` messages came; 2 bad arguments.

- ``--sender`` shows who sent each message (``#id pid uid comm`` of the
  publishing connection, ``local`` for the proxy's own process), as
  ``busctl monitor`` does. The ``_lws_smd`` wire carries no sender, so this
  asks our proxy on its control stream (``{"op":"monitor"}``,
  :mod:`smdbus.proxy._monitor`), which sends only the classes this user may
  receive; the C proxy refuses that stream, and the command says the sender
  is unavailable there. The comm is escaped again here: it is text a peer
  chose.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import os
import re
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TextIO

from smdbus._aiorun import run as run_async
from smdbus._escape import printable
from smdbus.classes import ALL_CLASSES, Class, class_names, parse_mask
from smdbus.commands._options import add_socket, examples, positive_float, positive_int
from smdbus.wire import (
    CONTROL_MAX_PAYLOAD,
    CONTROL_STREAMTYPE,
    RxPayload,
    WireStream,
    format_address,
    monitor_query,
)

# A colour per class bit (ANSI SGR); user classes share one.
_CLASS_COLOURS = {
    Class.INTERACTION: "35",
    Class.SYSTEM_STATE: "36",
    Class.NETWORK: "34",
    Class.METRICS: "33",
}
_USER_COLOUR = "32"


def _classes(text: str) -> int:
    try:
        mask = parse_mask(text) & ALL_CLASSES
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    if not mask:
        raise argparse.ArgumentTypeError(f"{text!r} selects no class")
    return mask


@dataclass(frozen=True)
class FieldTest:
    """``KEY=VALUE`` (the JSON payload's KEY equals VALUE) or ``KEY`` (it has KEY).

    KEY may be a dotted path (``a.b``, ``list.0``). A string field equals VALUE
    as written (``state=OPERATIONAL``, ``id=3`` for ``"id":"3"``); another
    field equals VALUE read as JSON (``n=3``, ``up=true``, ``x=null``).
    """

    path: tuple[str, ...]
    raw: str | None

    @classmethod
    def parse(cls, text: str) -> FieldTest:
        key, sep, raw = text.partition("=")
        if not key or any(not part for part in key.split(".")):
            raise argparse.ArgumentTypeError(
                f"{text!r}: expected KEY=VALUE or KEY (a.b for nested)"
            )
        return cls(tuple(key.split(".")), raw if sep else None)

    def matches(self, obj: Any) -> bool:
        for part in self.path:
            if isinstance(obj, dict) and part in obj:
                obj = obj[part]
            elif isinstance(obj, list) and part.isdigit() and int(part) < len(obj):
                obj = obj[int(part)]
            else:
                return False
        if self.raw is None:
            return True
        if isinstance(obj, str):
            return obj == self.raw
        try:
            value = json.loads(self.raw)
        except ValueError:
            return False
        return bool(obj == value) and isinstance(obj, bool) == isinstance(value, bool)


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--class",
        dest="classes",
        type=_classes,
        default=ALL_CLASSES,
        metavar="NAMES|MASK",
        help="classes to show: NETWORK,user0 or 0x6 (default ALL)",
    )
    parser.add_argument(
        "--grep",
        type=re.compile,
        metavar="REGEX",
        help="only payloads whose text (as shown) matches REGEX (Python re, searched)",
    )
    parser.add_argument(
        "--field",
        type=FieldTest.parse,
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="only JSON payloads whose KEY (a.b: nested) equals VALUE, or has KEY; repeatable",
    )
    form = parser.add_mutually_exclusive_group()
    form.add_argument("--json", action="store_true", help="one JSON object per message")
    form.add_argument("--pretty", action="store_true", help="indent JSON payloads (re-encoded)")
    parser.add_argument(
        "--color",
        choices=("auto", "always", "never"),
        default="auto",
        help="colours (auto: on a terminal, unless NO_COLOR is set)",
    )
    parser.add_argument(
        "--sender",
        action="store_true",
        help="who sent each message: pid, uid, comm (our proxy only: the wire carries no sender)",
    )
    parser.add_argument("--count", type=positive_int, metavar="N", help="stop after N messages")
    parser.add_argument("--timeout", type=positive_float, metavar="S", help="stop after S seconds")
    add_socket(parser)
    examples(
        parser,
        "smd monitor                                   everything, until Ctrl-C",
        "smd monitor --class SYSTEM_STATE,NETWORK      two classes",
        "smd monitor --field type=button --grep click  button clicks",
        "smd monitor --class SYSTEM_STATE --field state=OPERATIONAL --count 1 --timeout 60",
        "                                              wait (at most 60 s) for OPERATIONAL",
        "smd monitor --json | jq -r .payload           the payloads, exactly as sent",
        "smd monitor --sender --class SYSTEM_STATE     who publishes the state",
    )


def use_colour(choice: str, out: TextIO, environ: dict[str, str] | os._Environ[str]) -> bool:
    if choice != "auto":
        return choice == "always"
    return out.isatty() and not environ.get("NO_COLOR")


def run(args: argparse.Namespace) -> int:
    colour = use_colour(args.color, sys.stdout, os.environ)
    fmt: Callable[[RxPayload, Sender | None], str]
    if args.json:
        fmt = format_json
    else:

        def fmt(msg: RxPayload, sender: Sender | None = None) -> str:
            return format_line(msg, pretty=args.pretty, colour=colour, sender=sender)

    printer = _Printer(fmt, make_filter(args.grep, args.field), args.count)
    shown = printer.shown
    watch = _monitor_senders if args.sender else _monitor
    try:
        hung_up = run_async(watch(args.socket, args.classes, printer, args.timeout))
    except SenderUnavailable as exc:
        print(f"smd monitor: {exc}", file=sys.stderr)
        return 1
    except TimeoutError:
        if args.count is None:
            return 0
        print(
            f"smd monitor: {shown[0]} of {args.count} messages within {args.timeout:g} s",
            file=sys.stderr,
        )
        return 1
    if hung_up:
        print(
            f"smd monitor: the proxy at {format_address(args.socket)} hung up "
            f"(after {shown[0]} messages shown)",
            file=sys.stderr,
        )
        return 1
    return 0


def _wall(timestamp_us: int) -> datetime.datetime:
    """Monotonic µs (shared by the host's processes) → local wall-clock time."""
    age = time.monotonic() - timestamp_us / 1e6
    return datetime.datetime.fromtimestamp(time.time() - age)


def shown_text(payload: bytes) -> tuple[str, bool]:
    """The payload as a line shows it, and whether it is text (else ``<n bytes> hex``)."""
    try:
        text = payload.decode()
    except UnicodeDecodeError:
        return f"<{len(payload)} bytes> {payload.hex()}", False
    return printable(text), True


def _paint(text: str, sgr: str, colour: bool) -> str:
    return f"\x1b[{sgr}m{text}\x1b[0m" if colour and sgr else text


def _class_colour(cls: int) -> str:
    for bit, sgr in _CLASS_COLOURS.items():
        if cls & bit:
            return sgr
    return _USER_COLOUR


Sender = dict[str, Any] | str
"""A message's sender as the proxy's monitor says it (:mod:`smdbus.proxy._monitor`)."""


class SenderUnavailable(ConnectionError):
    """The proxy cannot say who sent what (the C proxy, or a refusal)."""


def format_sender(sender: Sender) -> str:
    """``#3 pid 42 uid 1000 comm 'sensor'``, ``local`` or ``unknown`` (escaped)."""
    if not isinstance(sender, dict):
        return printable(str(sender), limit=20)
    comm = printable(str(sender.get("comm", "?")), limit=32)
    return f"#{sender.get('id')} pid {sender.get('pid')} uid {sender.get('uid')} comm '{comm}'"


def format_line(
    msg: RxPayload, *, pretty: bool = False, colour: bool = False, sender: Sender | None = None
) -> str:
    """``HH:MM:SS.ffffff  CLASSES       [sender] payload`` (the payload as sent, escaped)."""
    when = _wall(msg.timestamp_us).strftime("%H:%M:%S.%f")
    names = "|".join(class_names(msg.cls)) or "0"
    shown, is_text = shown_text(msg.payload)
    if pretty and is_text:
        try:
            obj = json.loads(msg.payload)
        except ValueError:
            pass
        else:
            shown = printable(json.dumps(obj, indent=2, ensure_ascii=False), keep_newlines=True)
    padded = f"{names:<13}"
    who = "" if sender is None else _paint(f"[{format_sender(sender)}]", "1", colour) + " "
    return (
        f"{_paint(when, '2', colour)}  {_paint(padded, _class_colour(msg.cls), colour)} "
        f"{who}{shown if is_text else _paint(shown, '2', colour)}"
    )


def format_json(msg: RxPayload, sender: Sender | None = None) -> str:
    """One JSON object: time, timestamp_us, class, classes, payload (text) or payload_hex."""
    record: dict[str, Any] = {
        "time": _wall(msg.timestamp_us).isoformat(timespec="microseconds"),
        "timestamp_us": msg.timestamp_us,
        "class": msg.cls,
        "classes": class_names(msg.cls),
    }
    try:
        record["payload"] = msg.payload.decode()
    except UnicodeDecodeError:
        record["payload_hex"] = msg.payload.hex()
    if sender is not None:
        record["sender"] = sender
    return json.dumps(record, separators=(",", ":"))  # ASCII: escapes reach no terminal raw


def make_filter(
    grep: re.Pattern[str] | None, fields: Sequence[FieldTest]
) -> Callable[[RxPayload], bool]:
    """The ``--grep``/``--field`` test of one message (all must hold)."""

    def keep(msg: RxPayload) -> bool:
        if grep is not None and not grep.search(shown_text(msg.payload)[0]):
            return False
        if fields:
            try:
                obj = json.loads(msg.payload)
            except ValueError:
                return False
            return all(f.matches(obj) for f in fields)
        return True

    return keep


@dataclass
class _Printer:
    """What is printed and how: the format, the filters, and how many until done."""

    fmt: Callable[[RxPayload, Sender | None], str]
    keep: Callable[[RxPayload], bool]
    count: int | None
    shown: list[int] = field(default_factory=lambda: [0])

    def show(self, msg: RxPayload, sender: Sender | None = None) -> bool:
        """Print ``msg`` if it passes the filters; True once ``count`` messages were shown."""
        if not self.keep(msg):
            return False
        sys.stdout.write(self.fmt(msg, sender) + "\n")
        sys.stdout.flush()
        self.shown[0] += 1
        return self.count is not None and self.shown[0] >= self.count


async def _monitor(address: str, mask: int, printer: _Printer, timeout: float | None) -> bool:
    """Print until ``count`` or ``timeout`` (TimeoutError); True when the proxy hung up."""
    async with asyncio.timeout(timeout), await WireStream.connect(address, mask) as stream:
        async for msg in stream:
            if printer.show(msg):
                return False
    return True


async def _monitor_senders(
    address: str, mask: int, printer: _Printer, timeout: float | None
) -> bool:
    """:func:`_monitor` through our proxy's control stream, which names each sender."""
    try:
        stream = await WireStream.connect(
            address, 0, streamtype=CONTROL_STREAMTYPE, max_payload=CONTROL_MAX_PAYLOAD
        )
    except ConnectionRefusedError:
        raise SenderUnavailable(
            f"the proxy at {format_address(address)} has no control stream (the C proxy?): "
            "the wire carries no sender, so --sender is unavailable there"
        ) from None
    async with asyncio.timeout(timeout), stream:
        await stream.send(0, monitor_query(mask))
        async for reply in stream:
            obj = json.loads(reply.payload)
            if "error" in obj:
                raise SenderUnavailable(f"the proxy refused: {printable(str(obj['error']))}")
            record = obj.get("msg")
            if not isinstance(record, dict):
                continue  # {"monitor": mask}: the classes we get
            msg = RxPayload(record["cls"], record["ts"], bytes.fromhex(record["hex"]))
            if printer.show(msg, record.get("from")):
                return False
    return True
