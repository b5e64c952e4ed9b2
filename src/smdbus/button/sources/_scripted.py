"""A scripted source: press patterns such as ``"0-102,158-262"`` become edges.

A pattern lists presses as ``from-to`` in milliseconds (held from ``from``,
released at ``to``), separated by commas. A press may name its button,
``"mode:0-400,user:37-82"``; unnamed presses go to the default button. Used by
the tests, by ``smd button-replay`` and by demos, so a regime can be judged
without hardware.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from smdbus.button._controller import ButtonSpec, Controller
from smdbus.button._errors import PatternError
from smdbus.button._events import Edge
from smdbus.button._regime import DEFAULT_REGIME, Regime
from smdbus.scheduler import Scheduler, sleep

_ITEM = re.compile(r"^(?:(?P<button>[^:,\s]+):)?(?P<start>\d+)\s*-\s*(?P<end>\d+)$")


@dataclass(frozen=True, slots=True)
class Press:
    """Held from ``start_ms`` to ``end_ms``; ``button`` None means the default button."""

    start_ms: int
    end_ms: int
    button: str | None = None


def parse_pattern(text: str) -> list[Press]:
    """Parse a pattern; the error names the piece that is wrong and why."""
    presses: list[Press] = []
    last_end: dict[str | None, Press] = {}
    items = [item.strip() for item in text.split(",")]
    if not text.strip():
        raise PatternError('empty press pattern (expected e.g. "0-102,158-262")')
    for item in items:
        m = _ITEM.match(item)
        if m is None:
            raise PatternError(
                f"press {item!r} is not FROM-TO in whole ms (e.g. 0-102, or user:0-102)"
            )
        press = Press(int(m["start"]), int(m["end"]), m["button"])
        if press.end_ms <= press.start_ms:
            raise PatternError(f"press {item!r} ends before it starts")
        before = last_end.get(press.button)
        if before is not None and press.start_ms <= before.end_ms:
            raise PatternError(
                f"press {item!r} starts before the previous press of the same button "
                f"({before.start_ms}-{before.end_ms}) is released"
            )
        last_end[press.button] = press
        presses.append(press)
    return presses


def button_names(presses: Sequence[Press], default: str) -> list[str]:
    """Buttons a pattern uses: the default first, then named ones in order of appearance."""
    names = [default]
    for p in presses:
        if p.button is not None and p.button not in names:
            names.append(p.button)
    return names


def controller_for(
    presses: Sequence[Press],
    *,
    name: str = "bc",
    default_button: str = "btn",
    regime: Regime = DEFAULT_REGIME,
    active_high: bool = True,
) -> Controller:
    """A controller with exactly the buttons a pattern presses, all with one regime."""
    specs = [ButtonSpec(b, regime) for b in button_names(presses, default_button)]
    return Controller.of(name, specs, active_high=active_high)


class ScriptedSource:
    """Edges of a pattern for one controller, in time order, at the controller's levels."""

    def __init__(
        self,
        pattern: str | Sequence[Press],
        controller: Controller,
        *,
        default_button: int | str = 0,
        scheduler: Scheduler | None = None,
    ) -> None:
        self.controller = controller
        self.scheduler = scheduler
        """Where :meth:`run` waits and :meth:`clock` reads (None: the loop, CLOCK_MONOTONIC)."""
        self.presses = parse_pattern(pattern) if isinstance(pattern, str) else list(pattern)
        self._default = controller.index(default_button)

    def edges(self, offset_ms: float = 0) -> list[Edge]:
        """All edges sorted by time (a press and a release at one instant: release first)."""
        out: list[tuple[float, int, int, Edge]] = []
        for p in self.presses:
            i = self._default if p.button is None else self.controller.index(p.button)
            t0, t1 = offset_ms + p.start_ms, offset_ms + p.end_ms
            out.append((t0, 1, i, Edge(t0, i, self.controller.level(i, True))))
            out.append((t1, 0, i, Edge(t1, i, self.controller.level(i, False))))
        out.sort(key=lambda x: x[:3])
        return [e for *_, e in out]

    def clock(self) -> float:
        """What :meth:`run` stamps edges with, in ms: the scheduler's clock, or
        CLOCK_MONOTONIC (the loop's)."""
        if self.scheduler is not None:
            return self.scheduler.now() * 1000
        return time.monotonic_ns() / 1e6

    async def run(
        self,
        sink: Callable[[Edge], None],
        *,
        clock: Callable[[], float] | None = None,
    ) -> None:
        """Play the pattern live: each edge is handed to ``sink`` at its time on ``clock`` (ms).

        Edges carry their planned times, so the events are the same as a replay's,
        shifted by the start time. ``clock`` defaults to :meth:`clock`; the waits
        run on the source's scheduler (the loop's by default; a test's moves by hand).
        """
        clock = clock or self.clock
        start = clock()
        for edge in self.edges(start):
            delay = (edge.time_ms - clock()) / 1000
            if delay > 0:
                await sleep(self.scheduler, delay)
            sink(edge)
