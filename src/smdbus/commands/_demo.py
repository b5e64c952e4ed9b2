"""``smd demo``: a short live tour of the in-process bus.

Several participants with different masks, the nobody-listens refusal, a
thread sending into the loop, a full queue, and the counters at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import threading
import time

from smdbus import Bus, Class, QueueFull, format_mask, user_class
from smdbus._aiorun import run as run_async
from smdbus.commands._options import examples

_COLOURS = {"ui": "36", "state": "35", "audit": "33", "note": "2", "ok": "32", "warn": "31"}


def _paint(kind: str, text: str) -> str:
    if not sys.stdout.isatty():
        return text
    return f"\033[{_COLOURS.get(kind, '0')}m{text}\033[0m"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--pace", type=float, default=0.25, help="seconds between scenes")
    examples(parser, "smd demo", "smd demo --pace 0   all at once")


def run(args: argparse.Namespace) -> int:
    run_async(_tour(args.pace))
    return 0


async def _tour(pace: float) -> None:
    bus = Bus()
    start_us = 0

    def show(name: str) -> object:
        def callback(cls: int, ts: int, payload: bytes) -> None:
            at = (ts - start_us) / 1000 if start_us else 0.0
            where = "loop thread" if threading.current_thread() is threading.main_thread() else "?"
            line = f"  {name:>6} <- {format_mask(cls):<13} +{at:7.2f} ms  {payload.decode()}"
            print(_paint(name, line) + _paint("note", f"   [{where}]"))

        return callback

    def note(text: str, kind: str = "note") -> None:
        print(_paint(kind, text))

    async with bus:
        bus.register(Class.INTERACTION, show("ui"), name="ui")  # type: ignore[arg-type]
        bus.register(Class.SYSTEM_STATE, show("state"), name="state")  # type: ignore[arg-type]
        audit_mask = Class.INTERACTION | Class.SYSTEM_STATE | Class.METRICS
        bus.register(audit_mask, show("audit"), name="audit")  # type: ignore[arg-type]
        start_us = time.monotonic_ns() // 1000
        note("smdbus demo: three participants share one bus")
        for p in bus.participants():
            note(f"  {p.name:>6} listens to {format_mask(p.mask)}")

        note("\n1. sends are queued; delivery happens on the loop, sender included")
        bus.send_json(Class.INTERACTION, {"type": "button", "src": "bc/user", "event": "click"})
        bus.send_json(Class.SYSTEM_STATE, {"state": "OPERATIONAL"})
        note(f"   (queued {bus.queue_length}, nothing delivered yet)")
        await bus.drain()
        await asyncio.sleep(pace)

        note("\n2. a class nobody listens to is refused at once, no work done")
        accepted = bus.send_json(Class.NETWORK, {"rt": "add"})
        note(f"   send(NETWORK) -> {accepted}", "warn")
        await asyncio.sleep(pace)

        note("\n3. a worker thread sends into the loop (thread-safe)")

        def worker() -> None:
            for i in range(3):
                bus.printf(Class.METRICS, '{"worker":"%s","n":%d}', "sensor", i)

        t = threading.Thread(target=worker, name="worker")
        t.start()
        t.join()
        await bus.drain()
        await asyncio.sleep(pace)

        note("\n4. the queue holds 40: the 41st send without returning to the loop is refused")
        sink = bus.register(user_class(0), lambda c, t, p: None, name="burst-sink")
        try:
            for i in range(41):
                bus.printf(user_class(0), '{"burst":%d}', i)
        except QueueFull as e:
            note(f"   QueueFull: {e}", "warn")
        await bus.drain()
        note("   the loop delivered the 40 to 'burst-sink'; sending works again:")
        note(f"   send(USER0) -> {bus.send(user_class(0), b'after')}", "ok")
        await bus.drain()
        bus.unregister(sink)
        await asyncio.sleep(pace)

        note("\n5. what the bus counted")
        print(bus.describe())
        note("\nNext: `smd proxy` shares a bus between processes (and C programs).", "ok")
