"""One object with the whole lws_system of a process, as a daemon wires it.

The pieces (:class:`StateManager`, :class:`AttachQueue`, :class:`Blobs`,
:class:`SystemOps`, :class:`StateResponder`) stay usable on their own; this
only puts them together in the order lws's context does, so a daemon has one
``start`` and one ``close`` to call. ``smd daemon`` (:mod:`smdbus.daemon._app`)
builds its system part with it; the daemon adds the network, the gates, the
buttons and the proxy around it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from typing import Any

from smdbus.bus import Bus
from smdbus.scheduler import LoopScheduler, Scheduler
from smdbus.system._attach import AttachCallback, AttachItem, AttachQueue
from smdbus.system._blobs import Blobs
from smdbus.system._ops import SystemOps
from smdbus.system._query import StateResponder
from smdbus.system._state import Notifier, State, StateManager

log = logging.getLogger("smdbus.system")


class SystemContext:
    """State manager, attach queue, blobs, ops and the state responder of one process.

    Create it on the bus's loop thread (inside ``async with bus`` or from a
    callback on a running bus). ``notifiers`` are the creation-time ones
    (asked before ``internal``, each list in reverse order, as in lws).
    """

    def __init__(
        self,
        bus: Bus,
        *,
        ops: SystemOps | None = None,
        blobs: Blobs | None = None,
        notifiers: Iterable[Notifier | tuple[str, Notifier]] = (),
        internal: Iterable[Notifier | tuple[str, Notifier]] = (),
        scheduler: Scheduler | None = None,
        answer_queries: bool = True,
        **manager_settings: Any,
    ) -> None:
        loop = bus.loop
        if loop is None:
            raise RuntimeError("bind the bus to a loop first (async with bus, or bus.running())")
        self.bus = bus
        self.loop = loop
        self.ops = ops if ops is not None else SystemOps()
        self.blobs = blobs if blobs is not None else Blobs()
        self.manager = StateManager(
            bus,
            notifiers=notifiers,
            internal=internal,
            scheduler=scheduler if scheduler is not None else LoopScheduler(loop),
            **manager_settings,
        )
        self.attach_queue = AttachQueue(self.manager, loop)
        self.responder = StateResponder(self.manager, bus) if answer_queries else None

    @property
    def state(self) -> State:
        return self.manager.state

    def attach(
        self, callback: AttachCallback, state: State | int, opaque: Any = None
    ) -> AttachItem:
        """Thread-safe: run ``callback(opaque)`` on the loop once the state is >= ``state``."""
        return self.attach_queue.attach(callback, state, opaque)

    def boot(self, target: State = State.OPERATIONAL) -> bool:
        """Step toward ``target`` (OPERATIONAL): what lws does right after creating a context."""
        return self.manager.steps(target)

    async def wait_operational(self, timeout: float | None = None) -> State:
        return await asyncio.wait_for(self.manager.wait_for(State.OPERATIONAL), timeout)

    def close(self, *, force: bool = True) -> list[AttachItem]:
        """Shut down: step to CONTEXT_DESTROYING, stop answering, drop pending attaches.

        Returns the attach items that never ran (each was logged).
        """
        try:
            if self.manager.state != State.CONTEXT_DESTROYING:
                self.manager.destroy(force=force)
        finally:  # stop answering and attaching even if the last moves were refused
            if self.responder is not None:
                self.responder.close()
                self.responder = None
            self.attach_queue.shutdown()
        return list(self.attach_queue.dropped)

    def __repr__(self) -> str:
        return f"<SystemContext {self.manager!r} {self.ops!r}>"
