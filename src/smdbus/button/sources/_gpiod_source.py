"""Buttons on GPIO lines through libgpiod v2 (the ``gpiod`` 2.x Python binding).

Each line is requested as an input with edge detection on both edges, its
bias (pull-up / pull-down) and active-low setting from the config, and edge
timestamps on CLOCK_MONOTONIC (the clock asyncio's loop uses). Because the
kernel applies active-low, a rising edge always means "pressed"; the edge we
hand on carries the controller's electrical level for that, so the classifier
sees what C's ``gpio_ops->read`` would.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Protocol

from smdbus.button._controller import Controller
from smdbus.button._errors import ButtonConfigError, SourceUnavailable
from smdbus.button._events import Edge
from smdbus.button.sources._optional import require

if TYPE_CHECKING:
    from gpiod import LineRequest

BIASES = ("as-is", "disabled", "pull-up", "pull-down")
LINE_MAX = 2**32 - 1
"""Line offsets are 32-bit in the kernel's GPIO v2 interface."""
DEBOUNCE_MAX_MS = 1000.0
"""A longer kernel debounce would swallow presses; the regime is there for slow filtering."""


@dataclass(frozen=True, slots=True)
class LineSpec:
    """One GPIO line wired to one button."""

    line: int | str
    """Offset on the chip, or the line's name (``"GPIO17"``)."""
    button: str
    active_low: bool = False
    """True when pressing pulls the line low (a button to ground with a pull-up)."""
    bias: str = "as-is"
    """One of ``as-is``, ``disabled``, ``pull-up``, ``pull-down``."""
    debounce_ms: float = 0
    """Kernel debounce, where the chip supports it; 0 = none (the regime filters)."""

    def __post_init__(self) -> None:
        if self.bias not in BIASES:
            raise ButtonConfigError(
                f"line {self.line!r}: bias {self.bias!r} is not one of {BIASES}"
            )
        if isinstance(self.line, bool) or not isinstance(self.line, int | str):
            raise ButtonConfigError(f"a line is an offset or a name, got {self.line!r}")
        if isinstance(self.line, int) and not 0 <= self.line <= LINE_MAX:
            raise ButtonConfigError(f"line offset {self.line} is not 0..{LINE_MAX}")
        if not 0 <= self.debounce_ms <= DEBOUNCE_MAX_MS:  # NaN fails too
            raise ButtonConfigError(
                f"line {self.line!r}: debounce_ms must be 0..{DEBOUNCE_MAX_MS:g}, "
                f"got {self.debounce_ms!r}"
            )


class EdgeEventLike(Protocol):
    """The fields of ``gpiod.EdgeEvent`` we read."""

    @property
    def event_type(self) -> Any: ...
    @property
    def timestamp_ns(self) -> int: ...
    @property
    def line_offset(self) -> int: ...


class GpiodSource:
    """Edge events of requested GPIO lines as edges for one controller."""

    def __init__(
        self,
        chip: str,
        lines: Sequence[LineSpec],
        controller: Controller,
        *,
        consumer: str = "smdbus-button",
    ) -> None:
        self.chip = chip
        self.lines = list(lines)
        self.controller = controller
        self.consumer = consumer
        if not self.lines:
            raise ButtonConfigError("a gpiod source needs at least one line")
        seen: set[int | str] = set()
        self._by_line: dict[int | str, int] = {}
        for spec in self.lines:
            if spec.line in seen:
                raise ButtonConfigError(f"line {spec.line!r} is listed twice")
            seen.add(spec.line)
            self._by_line[spec.line] = controller.index(spec.button)
        self._offsets: dict[int, int] = {
            line: index for line, index in self._by_line.items() if isinstance(line, int)
        }
        self._request: LineRequest | None = None

    def settings(self) -> dict[int | str, Any]:
        """The ``request_lines`` config: input, both edges, bias, active-low, monotonic stamps."""
        gpiod = require("gpiod")
        from gpiod.line import Bias, Clock, Direction
        from gpiod.line import Edge as GEdge

        bias = {
            "as-is": Bias.AS_IS,
            "disabled": Bias.DISABLED,
            "pull-up": Bias.PULL_UP,
            "pull-down": Bias.PULL_DOWN,
        }
        return {
            spec.line: gpiod.LineSettings(
                direction=Direction.INPUT,
                edge_detection=GEdge.BOTH,
                bias=bias[spec.bias],
                active_low=spec.active_low,
                debounce_period=timedelta(milliseconds=spec.debounce_ms),
                event_clock=Clock.MONOTONIC,
            )
            for spec in self.lines
        }

    def open(self) -> LineRequest:
        """Request the lines (once) and learn the offsets of lines given by name."""
        if self._request is not None:
            return self._request
        gpiod = require("gpiod")
        try:
            request: LineRequest = gpiod.request_lines(
                self.chip, consumer=self.consumer, config=self.settings()
            )
        except (OSError, ValueError) as e:
            lines = ", ".join(str(spec.line) for spec in self.lines)
            raise SourceUnavailable(f"cannot request lines {lines} on {self.chip}: {e}") from e
        for line, offset in zip(request.lines, request.offsets, strict=True):
            self._offsets[offset] = self._by_line[line]
        self._request = request
        return request

    def translate(self, event: EdgeEventLike) -> Edge | None:
        """The edge a gpiod edge event means; None for a line we did not request."""
        index = self._offsets.get(event.line_offset)
        if index is None:
            if any(isinstance(line, str) for line in self._by_line) and self._request is None:
                raise ButtonConfigError(
                    f"edge on offset {event.line_offset}: lines given by name are only "
                    "known after open()"
                )
            return None
        pressed = getattr(event.event_type, "name", str(event.event_type)) == "RISING_EDGE"
        return Edge(event.timestamp_ns / 1e6, index, self.controller.level(index, pressed))

    def clock(self) -> float:
        """Now, in ms, on CLOCK_MONOTONIC (the edge timestamps' clock)."""
        return time.monotonic_ns() / 1e6

    def read(self) -> list[Edge]:
        """Edges from events waiting on the request now (call when its fd is readable)."""
        request = self.open()
        edges = [self.translate(ev) for ev in request.read_edge_events()]
        return [e for e in edges if e is not None]

    async def run(self, sink: Callable[[Edge], None]) -> None:
        """Watch the request's fd on the running loop until cancelled."""
        request = self.open()
        loop = asyncio.get_running_loop()
        failed: asyncio.Future[None] = loop.create_future()

        def readable() -> None:
            try:
                for edge in self.read():
                    sink(edge)
            except Exception as e:
                loop.remove_reader(request.fd)
                if not failed.done():
                    failed.set_exception(e)

        loop.add_reader(request.fd, readable)
        try:
            await failed
        finally:
            loop.remove_reader(request.fd)
            self.close()

    def close(self) -> None:
        request, self._request = self._request, None
        if request is not None:
            request.release()
