"""Asking for the current state over the bus, and reading state messages.

lws announces a state only when it changes, so a process that joins late
(``smd state``, a reconnecting client) has nothing to read until the next
change. The daemon runs a :class:`StateResponder`: whoever sends
``{"query":"state"}`` on SYSTEM_STATE gets ``{"current":"NAME","n":15}`` back.

The answer deliberately has no ``"state"`` key: C participants match
``"state":"OPERATIONAL"`` to start their work, and must not start twice
because someone asked. Watchers that want changes only read ``"state"``.
"""

from __future__ import annotations

import json

from smdbus.classes import Class
from smdbus.errors import SmdError
from smdbus.system._states import State

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (smd state loads this)
if TYPE_CHECKING:
    from typing import Any, NamedTuple, Protocol

    from smdbus.system._state import StateManager

    class _Bus(Protocol):
        def register(self, mask: int, callback: Any, name: str | None = None) -> Any: ...

        def unregister(self, participant: Any) -> None: ...

        def send_json(self, cls: int, obj: Any) -> bool: ...

else:
    from smdbus._namedtuple import NamedTuple

QUERY: dict[str, str] = {"query": "state"}
"""Send this (as JSON) on SYSTEM_STATE to get the current state."""


class StateReport(NamedTuple):
    """A state read from a SYSTEM_STATE payload."""

    name: str
    """The published name, as sent (``DESTROYING`` for 17)."""
    state: State | None
    """None if the name is not one we know (a newer peer)."""
    change: bool
    """True for an announcement of a change, False for an answer to a query."""


def parse_state_message(payload: bytes | bytearray | memoryview) -> StateReport | None:
    """The state in a ``{"state":..}`` or ``{"current":..}`` payload, else None."""
    raw = bytes(payload)
    if b'"state"' not in raw and b'"current"' not in raw:
        return None
    try:
        obj = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(obj, dict):
        return None
    for key, change in (("state", True), ("current", False)):
        name = obj.get(key)
        if isinstance(name, str):
            try:
                state: State | None = State.parse(name)
            except ValueError:
                state = None
            return StateReport(name, state, change)
    return None


def is_query(payload: bytes | bytearray | memoryview) -> bool:
    raw = bytes(payload)
    if b'"query"' not in raw:
        return False
    try:
        obj = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return False
    return isinstance(obj, dict) and obj.get("query") == "state"


class StateResponder:
    """Answers ``{"query":"state"}`` on the bus with the manager's current state."""

    def __init__(self, manager: StateManager, bus: _Bus, smd_class: int = Class.SYSTEM_STATE):
        self.manager = manager
        self.bus = bus
        self.smd_class = smd_class
        self.answered = 0
        self._participant = bus.register(smd_class, self._on_message, name="state-query")

    def _on_message(self, cls: int, timestamp_us: int, payload: bytes) -> None:
        if not is_query(payload):
            return
        state = self.manager.state
        try:
            self.bus.send_json(self.smd_class, {"current": state.published_name, "n": int(state)})
            self.answered += 1
        except SmdError as e:
            import logging  # here: smd state reads states without logging

            logging.getLogger("smdbus.system.query").warning("state query not answered: %s", e)

    def close(self) -> None:
        self.bus.unregister(self._participant)
