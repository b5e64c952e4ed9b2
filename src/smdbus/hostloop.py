"""Joining a loop that is not asyncio: a wake-up descriptor and what a host loop waits for.

libwebsockets runs inside the application's own loop (its poll(), libuv, libev, GLib, or
an external poll array fed through ``lws_service_fd()``). This module gives smdbus the
same shape: an object a host loop drives exposes

- ``fileno()`` (and, for a connection, ``wants()``): the descriptor to watch and for
  what, :data:`READ` and/or :data:`WRITE`;
- ``service()``: does what is due without blocking and returns the seconds until its
  next deadline, or None when it has none, so the host arms its timeout with it.

The rule for a host loop is the same for every such object: watch the descriptor for
what it wants; call ``service()`` when it is ready *or* when the timeout the last call
returned has passed; after each call, watch again for what it now wants and re-arm the
timeout. Calling ``service()`` more often than needed is harmless.

:class:`smdbus.Bus` (``bus.fileno()``, ``bus.service()``) and
:class:`~smdbus.client._polled.PolledClient` (re-exported here) follow it; docs/loops.md
has a ``selectors`` loop and GLib.

:class:`~smdbus._wakeup.Wakeup` (re-exported here) is the descriptor of an in-process
object such as the bus.
"""

from __future__ import annotations

import selectors
from typing import Final

from smdbus._wakeup import Wakeup
from smdbus.client import PolledClient

READ: Final = selectors.EVENT_READ
"""Wants to read: watch the descriptor for input (GLib: ``IO_IN``)."""
WRITE: Final = selectors.EVENT_WRITE
"""Wants to write: watch the descriptor for room to write (GLib: ``IO_OUT``)."""

__all__ = ["READ", "WRITE", "PolledClient", "Wakeup"]
