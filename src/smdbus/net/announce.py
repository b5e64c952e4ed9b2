"""The network components' view of the bus; their announcer is :mod:`smdbus.announce`.

CPD results and route changes are announced with the *keep* policy: a full bus
queue delays them, in order, and never drops them silently.
``Announcer`` and ``Publisher`` are re-exported here for the network modules.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from smdbus.announce import Announcer, Publisher

__all__ = ["Announcer", "BusLike", "Publisher"]


class BusLike(Publisher, Protocol):
    """The part of :class:`smdbus.Bus` a network component sends and listens with."""

    def register(
        self, mask: int, callback: Callable[[int, int, bytes], None], name: str | None = None
    ) -> Any: ...

    def unregister(self, participant: Any) -> None: ...
