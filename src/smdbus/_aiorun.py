"""Run a command's coroutine so that Ctrl-C stops it once, cleanly (the rule of :mod:`smdbus.cli`).

``asyncio.run`` cancels the main task on the first SIGINT, as wanted, but raises
``KeyboardInterrupt`` wherever the code is on the second one, and once its task is done
it puts Python's own handler back *before* it closes the loop. A Ctrl-C held down (or a
script sending several) then lands in the loop's shutdown: ``shutdown_default_executor``
is left un-awaited and Python prints "Exception ignored ... KeyboardInterrupt" on the way
out. :func:`run` does what ``asyncio.run`` does with one difference: the first SIGINT
cancels the task, and the later ones, through the loop's close and until the process
exits, change nothing.

The first SIGINT may come before the task runs its first line (the handler is set before
the loop starts): the task is then cancelled as it starts, and :func:`run` raises
``KeyboardInterrupt`` all the same.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable, Coroutine
from types import FrameType
from typing import Any, TypeVar

T = TypeVar("T")


class _Interrupt:
    """SIGINT's handler while a command runs: cancel the task once, then nothing."""

    def __init__(self) -> None:
        self.interrupted = False
        self.loop: asyncio.AbstractEventLoop | None = None
        self.task: asyncio.Task[Any] | None = None

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        if self.interrupted:
            return  # already stopping: a second Ctrl-C must not interrupt the clean-up
        self.interrupted = True
        if self.loop is not None and self.task is not None and not self.loop.is_closed():
            # from a signal handler: the thread-safe call also wakes a loop asleep in select
            self.loop.call_soon_threadsafe(self.task.cancel)

    async def guard(self, main: Coroutine[Any, Any, T]) -> T:
        self.loop = asyncio.get_running_loop()
        self.task = asyncio.current_task()
        if self.interrupted:  # the signal came before the loop ran this task
            main.close()
            raise asyncio.CancelledError
        return await main


def run(
    main: Coroutine[Any, Any, T],
    loop_factory: Callable[[], asyncio.AbstractEventLoop] | None = None,
) -> T:
    """``asyncio.run(main)``; the first Ctrl-C cancels ``main`` and raises ``KeyboardInterrupt``.

    ``loop_factory``: as ``asyncio.Runner``'s (None: asyncio's own loop; ``smd proxy``
    passes uvloop's on request). The handler stays in place when interrupted (the command
    is leaving: later Ctrl-Cs are ignored); otherwise the previous one is put back.
    """
    handler = _Interrupt()
    previous = signal.signal(signal.SIGINT, handler)
    try:
        with asyncio.Runner(loop_factory=loop_factory) as runner:
            try:
                return runner.run(handler.guard(main))
            except asyncio.CancelledError:
                if handler.interrupted:
                    raise KeyboardInterrupt from None
                raise
    finally:
        if not handler.interrupted:
            signal.signal(signal.SIGINT, previous)
