"""``smd button-replay``: what a regime makes of a press pattern, before a device is flashed.

The pattern is replayed through the same classifier the daemon runs, with
computed time (no sleeping), and every event is printed with the time a
device running libwebsockets' C classifier would stamp it::

    $ smd button-replay 0-102,158-262
       20 ms  bc/btn  down
      105 ms  bc/btn  up
      180 ms  bc/btn  down
      185 ms  bc/btn  doubleclick
      265 ms  bc/btn  up

``--send`` then publishes the events through the proxy, so the device's
participants can be exercised from a desk.

The replay steps the classifier through every sampling period of the
pattern, so a pattern is refused past :data:`MAX_PATTERN_MS` (an hour: far
beyond any press sequence, and replayed in well under a second).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Sequence

from smdbus._aiorun import run as run_async
from smdbus.button import DEFAULT_REGIME, ButtonError, ButtonEvent, Controller, Regime, replay
from smdbus.button.sources import ScriptedSource, controller_for, parse_pattern
from smdbus.classes import Class
from smdbus.commands._failure import connect_failure
from smdbus.commands._options import add_socket, examples
from smdbus.errors import SmdError
from smdbus.wire import format_address

MAX_PATTERN_MS = 3_600_000
"""The longest pattern replayed, in ms from 0 to the last release."""


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "pattern",
        metavar="PATTERN",
        help='presses as FROM-TO in ms, e.g. "0-102,158-262"; NAME:FROM-TO presses button NAME',
    )
    parser.add_argument(
        "--regime",
        action="append",
        default=[],
        metavar="K=V",
        help="regime setting, repeatable or comma-separated: " + ", ".join(Regime.setting_names()),
    )
    parser.add_argument("--controller", default="bc", metavar="NAME", help="controller name")
    parser.add_argument(
        "--button", default="btn", metavar="NAME", help="button of unnamed presses (btn)"
    )
    parser.add_argument(
        "--doubleclick",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="classify doubleclicks (default: on, as the regime says)",
    )
    parser.add_argument(
        "--active-low",
        action="store_true",
        help="buttons pull the line low when pressed (changes nothing in the events)",
    )
    parser.add_argument(
        "--json", action="store_true", help="print the exact payload after each event"
    )
    parser.add_argument("--send", action="store_true", help="also publish the events via the proxy")
    add_socket(parser, "proxy address for --send")
    parser.add_argument(
        "--realtime",
        action="store_true",
        help="with --send, space the messages as the events are spaced",
    )
    examples(
        parser,
        "smd button-replay 0-102,158-262                  a double click, as C classifies it",
        "smd button-replay 0-2500 --regime ms_min_down_longpress=2000   tune the long press",
        "smd button-replay user:0-80,reset:0-3000 --json  two named buttons, with the payloads",
        "smd button-replay 0-102 --send                   publish the events through the proxy",
    )


def run(args: argparse.Namespace) -> int:
    try:
        regime = DEFAULT_REGIME.with_settings(args.regime)
        if args.doubleclick is not None:
            regime = regime.with_settings([f"classify_doubleclick={int(args.doubleclick)}"])
        presses = parse_pattern(args.pattern)
        last = max(p.end_ms for p in presses)
        if last > MAX_PATTERN_MS:
            raise ValueError(
                f"pattern ends at {last} ms, out of range: at most {MAX_PATTERN_MS} ms (an hour)"
            )
        controller = controller_for(
            presses,
            name=args.controller,
            default_button=args.button,
            regime=regime,
            active_high=not args.active_low,
        )
    except (ButtonError, ValueError) as e:
        print(f"smd button-replay: {e}", file=sys.stderr)
        return 2
    events = replay_pattern(args.pattern, controller)
    for note in regime.notes():
        print(f"note: {note}", file=sys.stderr)
    for line in format_events(events, with_json=args.json):
        print(line)
    if args.send:
        try:
            sent = run_async(send_events(args.socket, events, realtime=args.realtime))
        except (SmdError, OSError, ValueError) as e:
            print(f"smd button-replay: --send: {connect_failure(e, args.socket)}", file=sys.stderr)
            return 1
        print(f"sent {sent} events to {format_address(args.socket)}", file=sys.stderr)
    return 0


def replay_pattern(pattern: str, controller: Controller) -> list[ButtonEvent]:
    """The events of ``pattern`` on ``controller``; unnamed presses go to its first button."""
    return replay(controller, ScriptedSource(pattern, controller).edges())


def format_events(events: Sequence[ButtonEvent], *, with_json: bool = False) -> list[str]:
    """One line per event, ``"   20 ms  bc/btn  down"``; ``(no events)`` when there are none."""
    if not events:
        return ["(no events: no press held for ms_min_down, or presses were lost while settling)"]
    if not with_json:
        return [str(ev) for ev in events]
    width = max(len(str(ev)) for ev in events)
    return [f"{ev!s:<{width}}  {ev.to_json()}" for ev in events]


async def send_events(address: str, events: Sequence[ButtonEvent], *, realtime: bool) -> int:
    """Publish ``events`` on INTERACTION through the proxy (a publish-only client, mask 0)."""
    from smdbus.client import connect

    client = await connect(address, 0)
    try:
        start = time.monotonic()
        first = events[0].time_ms if events else 0.0
        for ev in events:
            if realtime:
                delay = start + (ev.time_ms - first) / 1000 - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
            client.send(Class.INTERACTION, ev.payload())
        await client.drain()
    finally:
        await client.close()
    return len(events)
