"""What every part of the proxy uses of the proxy that owns it: its loop, timers, clock, counters.

The parts (connections, access, monitors, the control stream) are built by
the proxy and call back into it. Each names what it calls as a Protocol that
extends :class:`Owner`, rather than importing the Proxy: the proxy imports
them, so an import back would be a cycle (docs/architecture.md, Boundaries).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    import asyncio

    from smdbus.scheduler import Scheduler


class Owner(Protocol):
    """The proxy as every part sees it."""

    @property
    def loop(self) -> asyncio.AbstractEventLoop | None: ...
    @property
    def scheduler(self) -> Scheduler | None: ...

    def clock(self) -> float: ...
    def count(self, name: str, n: int = 1) -> None: ...
