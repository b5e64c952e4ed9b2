"""The system states: their numbers and names, as lws has them.

Only the names and their order live here, with no machinery, so that a tool
that reads states (``smd state``) imports neither the manager
(:mod:`smdbus.system._state`) nor what it runs on.
"""

from __future__ import annotations

import enum


class State(enum.IntEnum):
    """The system states, numbered as lws numbers them (comparisons are numeric)."""

    UNKNOWN = 0
    CONTEXT_CREATED = 1
    PRE_PRIV_DROP = 2
    INITIALIZED = 3
    COLLECTING_STDIN = 4
    IFACE_COLDPLUG = 5
    DHCP = 6
    CPD_PRE_TIME = 7
    TIME_VALID = 8
    CPD_POST_TIME = 9
    POLICY_VALID = 10
    REGISTERED = 11
    AUTH1 = 12
    AUTH2 = 13
    ONE_TIME_UPDATES = 14
    OPERATIONAL = 15
    POLICY_INVALID = 16
    CONTEXT_DESTROYING = 17
    AWAITING_MODAL_UPDATING = 18
    MODAL_UPDATING = 19

    @property
    def published_name(self) -> str:
        """The name in ``{"state":"NAME"}`` messages (17 is ``DESTROYING``)."""
        return "DESTROYING" if self is State.CONTEXT_DESTROYING else self.name

    @classmethod
    def parse(cls, text: str | int) -> State:
        """A state from its number, its name or its published name (any case)."""
        if isinstance(text, int):
            try:
                return cls(text)
            except ValueError:
                raise ValueError(f"no system state numbered {text} (0..19)") from None
        key = text.strip().upper()
        if key.isdigit():
            return cls.parse(int(key))
        if key == "DESTROYING":
            return cls.CONTEXT_DESTROYING
        try:
            return cls[key]
        except KeyError:
            raise ValueError(f"unknown system state {text!r}") from None
