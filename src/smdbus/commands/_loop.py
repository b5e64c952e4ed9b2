"""Which event loop ``smd proxy`` and ``smd daemon`` run on: uvloop when installed, else asyncio's.

Why: the proxy spends most of its time, at the rates a device sees, in the
event loop itself (a wake-up, a read, four writes per message), and uvloop
runs that loop in C. Measured with ``bench/proxy.py --loop uvloop`` beside
``--loop asyncio`` (docs/performance.md): the proxy's CPU per message at
1 000 msgs/s and its p50 fall; at full speed, where the time is the bus and
the fan-out in Python, it changes little. It is an optional extra
(``pip install 'smdbus[fast]'``), never required: the core runs on asyncio's
own loop, and the proxy's tests run on both. Where it is installed it is used
(issue 17: "used when installed"), at a cost in memory: +6.5 MiB of idle RSS,
as uvloop imports ``ssl`` itself, which the proxy otherwise does without.
``--loop asyncio`` (or ``SMD_LOOP=asyncio``) turns it off.

It was opt-in until the reliability soak passed on it: uvloop drops a reader
once its socket reports an error (libuv's poll takes POLLERR as its end), so
the proxy's reading on to EOF after a failed write stalled and kept client
sockets open; :mod:`smdbus.proxy._tail` now registers afresh after each read.

Rules:

- ``--loop auto`` (the default, unless ``SMD_LOOP`` in the environment says
  otherwise) takes uvloop if it imports, else asyncio's loop, silently: a
  missing speed-up is not an error.
- ``--loop asyncio`` never imports uvloop.
- ``--loop uvloop`` insists: without uvloop the command stops (exit 2)
  before starting anything, saying how to install it.
- ``SMD_LOOP`` naming no loop stops the command the same way (exit 2, one
  line naming the value and the choices): a typo (``SMD_LOOP=asyncoi``,
  meant to turn uvloop off) must not silently run the other loop. Empty
  is unset.
"""

from __future__ import annotations

import argparse
import asyncio
import os
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")

CHOICES = ("auto", "asyncio", "uvloop")
ENV = "SMD_LOOP"

LoopFactory = Callable[[], asyncio.AbstractEventLoop]


class LoopUnavailable(RuntimeError):
    """``--loop uvloop`` where uvloop is not installed, or ``SMD_LOOP`` naming no loop."""


def add_loop(parser: argparse.ArgumentParser) -> None:
    """The ``--loop`` option of the long-running commands."""
    # argparse checks choices on the command line only: a bad value from the
    # environment reaches loop_factory, which refuses it before anything starts
    default = os.environ.get(ENV) or "auto"
    shown = default if default in CHOICES else "auto"
    parser.add_argument(
        "--loop",
        choices=CHOICES,
        default=default,
        help=f"event loop: uvloop if installed (auto), asyncio's, or uvloop (the fast "
        f"extra) (default {shown}; ${ENV} sets it)",
    )


def loop_factory(choice: str) -> tuple[LoopFactory | None, str]:
    """The loop factory for ``choice`` (None: asyncio's) and the loop's name, for the log."""
    if choice not in CHOICES:  # only SMD_LOOP can bring one: argparse checks --loop
        raise LoopUnavailable(f"{ENV}={choice!r} is not a loop: one of {', '.join(CHOICES)}")
    if choice == "asyncio":
        return None, "asyncio"
    try:
        import uvloop
    except ImportError:
        if choice == "uvloop":
            raise LoopUnavailable(
                "--loop uvloop: uvloop is not installed (pip install 'smdbus[fast]')"
            ) from None
        return None, "asyncio"
    return uvloop.new_event_loop, "uvloop"


def run(main: Coroutine[Any, Any, T], factory: LoopFactory | None) -> T:
    """``asyncio.run(main)`` on the loop ``factory`` makes (None: asyncio's own).

    For ``smd daemon``, whose signals are its own from before the loop starts
    (:mod:`smdbus.daemon`'s PendingSignals); the other commands run through
    :func:`smdbus._aiorun.run`, where a Ctrl-C held down interrupts them only once.
    """
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(main)
