"""Which event loop ``smd proxy`` and ``smd daemon`` run on: asyncio's, or uvloop on request.

Why: the proxy spends most of its time, at the rates a device sees, in the
event loop itself (a wake-up, a read, four writes per message), and uvloop
runs that loop in C. Measured with ``bench/proxy.py --loop uvloop`` beside
``--loop asyncio`` (docs/performance.md): the proxy's CPU per message at
1 000 msgs/s and its p50 fall; at full speed, where the time is the bus and
the fan-out in Python, it changes little. It costs ~2 MiB of RSS, so it is an
optional extra (``pip install 'smdbus[fast]'``), never required: the core
runs on asyncio's own loop, and the proxy's tests run on both.

Not the default yet: under ``bench/soak.py`` the proxy on uvloop kept 4-8
client sockets open after every client had gone, where on asyncio's loop it
returns to its baseline. Found so far: they are connections reading on
through :class:`~smdbus.proxy._tail.Tail` after a failed write (flooders that
receive their own class and never read); the reader added for the duplicated
descriptor while uvloop closes the original fires once or twice, then no more
(the descriptor stays readable: data, EOF or ECONNRESET waiting), and adding it
again later lets most of them finish. Until
that is fixed, a proxy that must not leak descriptors runs on asyncio's.

Rules:

- ``--loop asyncio`` (the default, unless ``SMD_LOOP`` in the environment
  says otherwise) never imports uvloop.
- ``--loop auto`` takes uvloop if it imports, else asyncio's loop, silently:
  a missing speed-up is not an error.
- ``--loop uvloop`` insists: without uvloop the command stops (exit 2)
  before starting anything, saying how to install it.
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
    """``--loop uvloop`` where uvloop is not installed."""


def add_loop(parser: argparse.ArgumentParser) -> None:
    """The ``--loop`` option of the long-running commands."""
    default = os.environ.get(ENV, "asyncio")
    if default not in CHOICES:
        default = "asyncio"
    parser.add_argument(
        "--loop",
        choices=CHOICES,
        default=default,
        help=f"event loop: asyncio's, uvloop (the fast extra), or uvloop if installed "
        f"(auto) (default {default}; ${ENV} sets it)",
    )


def loop_factory(choice: str) -> tuple[LoopFactory | None, str]:
    """The loop factory for ``choice`` (None: asyncio's) and the loop's name, for the log."""
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
