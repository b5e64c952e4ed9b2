"""A descriptor that another thread can make readable: the bus's wake-up for a host loop.

Why: a loop that is not asyncio (selectors, GLib, Qt) sleeps in poll() on descriptors
and learns of work only through them; a send from another thread must end that sleep.
It is an eventfd (one descriptor, an 8-byte counter) and, where ``os.eventfd`` is missing
(not Linux, or a Python built without it), a non-blocking pipe. Nothing here knows the
bus: it is set and cleared, and the owner decides when.
"""

from __future__ import annotations

import contextlib
import os

_ONE = (1).to_bytes(8, "little")


class Wakeup:
    """A descriptor that is readable after :meth:`set` until :meth:`clear`, thread-safe.

    ``set`` from any thread costs one ``write``; many sets before a ``clear`` leave it
    readable once (the eventfd counter adds up, the pipe's bytes are all read by
    ``clear``). A full pipe already means readable, so a ``set`` that finds it full
    has nothing to do.
    """

    __slots__ = ("_r", "_w", "kind")

    def __init__(self, *, pipe: bool = False) -> None:
        self._r: int
        self._w: int
        if hasattr(os, "eventfd") and not pipe:
            self._r = self._w = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
            self.kind = "eventfd"
        else:
            self._r, self._w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
            self.kind = "pipe"

    def fileno(self) -> int:
        """The descriptor to watch for reading."""
        return self._r

    def set(self) -> None:
        """Make the descriptor readable (from any thread)."""
        # A full pipe (or an eventfd counter at its maximum) is readable already.
        with contextlib.suppress(BlockingIOError):
            os.write(self._w, _ONE if self._r == self._w else b"\0")

    def clear(self) -> None:
        """Consume every wake-up so far: the descriptor is not readable until the next set."""
        try:
            if self._r == self._w:
                os.read(self._r, 8)
            else:
                while os.read(self._r, 4096):
                    pass
        except BlockingIOError:
            pass

    def __del__(self) -> None:  # an owner dropped without unbind()/close(): no leaked fd
        self.close()

    def close(self) -> None:
        if getattr(self, "_r", -1) < 0:  # closed, or __init__ failed
            return
        os.close(self._r)
        if self._w != self._r:
            os.close(self._w)
        self._r = self._w = -1
