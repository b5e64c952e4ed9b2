"""Attach: work booked from any thread, run on the loop thread once the system is ready.

A worker thread calls :meth:`AttachQueue.attach` with a callback and the
system state it needs (usually OPERATIONAL) and may then exit; the callback
runs later on the event loop thread, where it can set up loop activity.

Rules
-----
- :meth:`~AttachQueue.attach` is thread-safe and never runs the callback
  itself, even when the state is already reached: the callback always runs
  from the loop, later.
- An item is ready when the system state is numerically >= its state, as in
  C (so POLICY_INVALID and the modal states count as past OPERATIONAL).
- Ready items run in the order they were attached (FIFO). C takes them from
  the head of a list it also adds to at the head, i.e. newest first; FIFO is
  what callers expect when they book A then B.
- At shutdown (CONTEXT_DESTROYING, or :meth:`~AttachQueue.shutdown`) pending
  items are dropped, each logged, and returned to the caller; later attaches
  raise :class:`AttachClosed`.

Theory of operation: a lock guards a list of items in attach order. Attaching
wakes the loop with ``call_soon_threadsafe`` unless a service pass is already
booked (one wake-up for a burst of attaches). A state change books a pass
too. A pass takes every ready item out under the lock and runs them outside
it, so a callback may attach again (its item waits for the next pass).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from smdbus.system._state import State, StateManager

log = logging.getLogger("smdbus.system.attach")

AttachCallback = Callable[[Any], None]
"""``callback(opaque)``, run on the loop thread."""


class AttachClosed(RuntimeError):
    """The attach queue is shut down (the system is going away)."""


@dataclass(frozen=True, eq=False)
class AttachItem:
    """One booked callback: what runs, when, and with what."""

    callback: AttachCallback
    state: State
    opaque: Any = field(repr=False)
    seq: int
    """Attach order, from 0."""
    thread: str
    """Name of the thread that attached it."""

    @property
    def label(self) -> str:
        return str(getattr(self.callback, "__qualname__", None) or repr(self.callback))


class AttachQueue:
    """Callbacks booked from foreign threads for a :class:`StateManager` on ``loop``."""

    def __init__(self, manager: StateManager, loop: asyncio.AbstractEventLoop) -> None:
        self.manager = manager
        self.loop = loop
        self._lock = threading.Lock()
        self._items: list[AttachItem] = []
        self._seq = itertools.count()
        self._booked = False
        self._closed = False
        self.ran = 0
        """Callbacks run so far."""
        self.dropped: list[AttachItem] = []
        """Items dropped at shutdown (each was logged)."""
        self._remove_listener = manager.add_listener(self._on_state)

    def attach(
        self, callback: AttachCallback, state: State | int, opaque: Any = None
    ) -> AttachItem:
        """Run ``callback(opaque)`` on the loop once the state is >= ``state``. Any thread."""
        if not callable(callback):
            raise TypeError(f"attach callback must be callable, got {callback!r}")
        wanted = State.parse(state) if not isinstance(state, State) else state
        with self._lock:
            if self._closed:
                raise AttachClosed(
                    f"cannot attach {getattr(callback, '__qualname__', callback)!r}: "
                    "the system is shutting down"
                )
            item = AttachItem(
                callback, wanted, opaque, next(self._seq), threading.current_thread().name
            )
            self._items.append(item)
            wake = not self._booked
            self._booked = True
        if wake:
            try:
                self.loop.call_soon_threadsafe(self._service)
            except RuntimeError:  # the loop is closed
                with self._lock:
                    self._items.remove(item)
                    self._booked = False
                raise AttachClosed("cannot attach: the event loop is closed") from None
        return item

    @property
    def pending(self) -> tuple[AttachItem, ...]:
        """Items not yet run, in attach order."""
        with self._lock:
            return tuple(self._items)

    def shutdown(self) -> list[AttachItem]:
        """Drop and report every pending item; later attaches raise :class:`AttachClosed`."""
        with self._lock:
            self._closed = True
            dropped, self._items = self._items, []
            self.dropped.extend(dropped)
        self._remove_listener()
        for item in dropped:
            log.warning(
                "attach: dropping %s (waiting for %s, attached from %s) at shutdown",
                item.label,
                item.state.name,
                item.thread,
            )
        return dropped

    def _on_state(self, previous: State, new: State) -> None:
        if new == State.CONTEXT_DESTROYING:
            self.shutdown()
            return
        with self._lock:
            if self._booked or not self._items:
                return
            self._booked = True
        self.loop.call_soon(self._service)

    def _service(self) -> None:
        state = self.manager.state
        with self._lock:
            self._booked = False
            if self._closed:
                return
            ready = [i for i in self._items if state >= i.state]
            if ready:
                self._items = [i for i in self._items if state < i.state]
        for item in ready:
            self.ran += 1
            try:
                item.callback(item.opaque)
            except Exception:
                log.exception("attach: callback %s raised", item.label)
