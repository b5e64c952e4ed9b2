"""Run button sources live: print each event, and publish it through the proxy with ``--send``.

``python -m smdbus.button --evdev /dev/input/event3 --key KEY_ENTER=user`` is
the quickest way to see what a real button does under a regime; ``--config``
reads the same TOML the daemon uses, and ``--pattern`` plays a press pattern
in real time (a button for a desk without one). ``configure``/``run`` follow
the ``smd`` command convention, so the CLI can mount this as a subcommand.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, TextIO

from smdbus._aiorun import run as run_async
from smdbus._announce import Publisher
from smdbus.button._classifier import Classifier
from smdbus.button._config import Configured, Source, load_file
from smdbus.button._controller import Controller
from smdbus.button._driver import ButtonDriver
from smdbus.button._errors import ButtonError
from smdbus.button._events import ButtonEvent, Edge, format_ms
from smdbus.button._regime import DEFAULT_REGIME
from smdbus.button.sources import (
    BIASES,
    EvdevSource,
    GpiodSource,
    LineSpec,
    ScriptedSource,
    controller_for,
    list_key_devices,
    parse_pattern,
)
from smdbus.errors import SmdError
from smdbus.scheduler import LoopScheduler, Scheduler, sleep

if TYPE_CHECKING:
    pass


def configure_live(parser: argparse.ArgumentParser) -> None:
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--config", metavar="FILE", help="TOML with [[controller]] tables")
    what.add_argument("--evdev", metavar="DEVICE", help="input device, e.g. /dev/input/event3")
    what.add_argument("--gpiod", metavar="CHIP", help="GPIO chip, e.g. /dev/gpiochip0")
    what.add_argument("--pattern", metavar="PATTERN", help='play presses live, e.g. "0-102"')
    what.add_argument("--list", action="store_true", help="list input devices that have keys")
    parser.add_argument(
        "--key", action="append", default=[], metavar="KEY=NAME", help="evdev: KEY_ENTER=user"
    )
    parser.add_argument(
        "--line", action="append", default=[], metavar="LINE=NAME", help="gpiod: 17=user"
    )
    parser.add_argument("--active-low", action="store_true", help="gpiod: lines are active-low")
    parser.add_argument("--bias", choices=BIASES, default="as-is", help="gpiod: line bias")
    parser.add_argument("--grab", action="store_true", help="evdev: take the device exclusively")
    parser.add_argument("--controller", default="bc", metavar="NAME", help="controller name")
    parser.add_argument(
        "--regime", action="append", default=[], metavar="K=V", help="regime settings"
    )
    parser.add_argument("--send", action="store_true", help="publish events through the proxy")
    parser.add_argument("--socket", default="@proxy.ss.lws", metavar="ADDR", help="proxy address")


def run_live(args: argparse.Namespace) -> int:
    if args.list:
        return list_key_devices(sys.stdout)
    try:
        configured = build(args)
    except (ButtonError, ValueError) as e:
        print(f"buttons: {e}", file=sys.stderr)
        return 2
    with contextlib.suppress(KeyboardInterrupt):
        try:
            run_async(serve(configured, send_to=args.socket if args.send else None))
        except (ButtonError, SmdError, OSError) as e:
            print(f"buttons: {e}", file=sys.stderr)
            return 1
    return 0


def build(args: argparse.Namespace) -> list[Configured]:
    """The controllers and sources the arguments describe."""
    if args.config:
        return load_file(args.config)
    regime = DEFAULT_REGIME.with_settings(args.regime)
    if args.pattern:
        presses = parse_pattern(args.pattern)
        controller = controller_for(presses, name=args.controller, regime=regime)
        return [Configured(controller, ScriptedSource(presses, controller))]
    if args.evdev:
        pairs = _pairs(args.key, "--key KEY_ENTER=user")
        controller = Controller.of(
            args.controller, [n for _, n in pairs], regime=regime, active_high=True
        )
        keys: dict[int | str, str] = dict(pairs)
        source: Source = EvdevSource(args.evdev, keys, controller, grab=args.grab)
        return [Configured(controller, source)]
    pairs = _pairs(args.line, "--line 17=user")
    controller = Controller.of(
        args.controller, [n for _, n in pairs], regime=regime, active_high=not args.active_low
    )
    lines = [
        LineSpec(int(line) if line.isdigit() else line, name, args.active_low, args.bias)
        for line, name in pairs
    ]
    return [Configured(controller, GpiodSource(args.gpiod, lines, controller))]


async def serve(
    configured: list[Configured],
    *,
    publisher: Publisher | None = None,
    send_to: str | None = None,
    out: TextIO | None = sys.stdout,
    drivers: list[ButtonDriver] | None = None,
    scheduler: Scheduler | None = None,
) -> list[ButtonDriver]:
    """Run every source until they all end (a pattern) or the task is cancelled (devices).

    ``publisher``: where events go (a :class:`smdbus.Bus` in the daemon);
    ``send_to``: a proxy address to publish through instead; ``out``: where
    to print them (None: nowhere); ``drivers``: a list to fill as the drivers
    start, for a caller that wants their counters while this runs; ``scheduler``:
    the drivers' timers (the loop's by default; a test's manual one).
    """
    loop = asyncio.get_running_loop()
    timers = scheduler if scheduler is not None else LoopScheduler(loop)
    client = None
    if send_to is not None:
        from smdbus.client import connect

        client = await connect(send_to, 0)  # publish only: mask 0 receives nothing
        publisher = client  # a Client is a Publisher: send(cls, payload) -> bool
    drivers = [] if drivers is None else drivers
    tasks = []
    try:
        for c in configured:
            first: list[float] = []
            classifier = Classifier(c.controller)
            driver = ButtonDriver(
                classifier,
                publisher,
                clock=c.source.clock,
                on_event=None if out is None else _printer(first, out),
                scheduler=timers,
            )
            drivers.append(driver)
            tasks.append(asyncio.create_task(c.source.run(_first_noted(first, driver))))
        await asyncio.gather(*tasks)
        while any(d.classifier.busy for d in drivers):  # a pattern ended: let it settle
            await sleep(timers, 0.005)
    finally:
        for t in tasks:
            t.cancel()
        for d in drivers:
            d.close()
        if client is not None:
            await client.close()
    return drivers


def _first_noted(first: list[float], driver: ButtonDriver) -> Callable[[Edge], None]:
    def feed(edge: Edge) -> None:
        if not first:
            first.append(edge.time_ms)
        driver.feed(edge)

    return feed


def _printer(first: list[float], out: TextIO) -> Callable[[ButtonEvent], None]:
    """Events with their time since the controller's first edge, as the replay prints them."""

    def show(ev: ButtonEvent) -> None:
        print(f"{format_ms(round(ev.time_ms - first[0], 1)):>5} ms  {ev.src}  {ev.event}", file=out)
        out.flush()

    return show


def _pairs(items: list[str], example: str) -> list[tuple[str, str]]:
    pairs = []
    for item in items:
        left, sep, right = item.partition("=")
        if not sep or not left.strip() or not right.strip():
            raise ButtonError(f"{item!r} is not THING=NAME (e.g. {example})")
        pairs.append((left.strip(), right.strip()))
    if not pairs:
        raise ButtonError(f"name at least one button: {example}")
    return pairs
