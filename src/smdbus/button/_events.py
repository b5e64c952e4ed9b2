"""What goes into the classifier (edges) and what comes out (button events).

Both are small immutable values, as h11's events are: they carry data and
know how to render themselves, and nothing else.
"""

from __future__ import annotations

import enum
import json
from dataclasses import dataclass
from typing import NamedTuple


class EventName(enum.StrEnum):
    """The names of button events, exactly as lws_button puts them in its JSON."""

    DOWN = "down"
    UP = "up"
    CLICK = "click"
    LONGCLICK = "longclick"
    DOUBLECLICK = "doubleclick"
    STILLDOWN = "stilldown"


class Edge(NamedTuple):
    """A level change on one button as a source saw it.

    ``level`` is the electrical level (0 or 1); whether 1 means pressed is
    the controller's ``active_state_bitmap`` business, as in C.
    """

    time_ms: float
    button: int
    level: int


@dataclass(frozen=True, slots=True)
class ButtonEvent:
    """One classified event, stamped with the monitor tick that decided it."""

    time_ms: float
    controller: str
    button: str
    event: EventName
    index: int = 0

    @property
    def src(self) -> str:
        """``"<controller>/<button>"``, the ``src`` member of the payload."""
        return f"{self.controller}/{self.button}"

    def to_json(self) -> str:
        """The INTERACTION payload: compact JSON, keys in lws_button's order."""
        return json.dumps(
            {"type": "button", "src": self.src, "event": str(self.event)},
            separators=(",", ":"),
            ensure_ascii=False,
        )

    def payload(self) -> bytes:
        """:meth:`to_json` as the UTF-8 bytes that go on the bus."""
        return self.to_json().encode()

    def __str__(self) -> str:
        return f"{format_ms(self.time_ms):>5} ms  {self.src}  {self.event}"


def format_ms(time_ms: float) -> str:
    """Whole milliseconds without a decimal point; fractions only where there are some."""
    if float(time_ms).is_integer():
        return str(int(time_ms))
    return f"{time_ms:.3f}".rstrip("0")
