"""The button classifier: edges in, ``click`` / ``doubleclick`` / ``longclick`` out.

Rules of this module
--------------------
* Everything that decides *which* event a button produces, and *when*, lives
  here, and nowhere else.
* This module does not know where edges come from (evdev, a GPIO line, a
  script) nor where events go (a bus, a terminal). It never reads a clock,
  sleeps or schedules anything: the caller says what time it is, and asks
  :attr:`Classifier.next_tick_ms` when it should call again.
* Times are milliseconds on the caller's clock. They only move forward.

Theory of operation
-------------------
We reproduce libwebsockets' C classifier (``lws_button``) tick for tick, so an
event carries the same time here as on a device running C.

A controller owns its buttons and one *monitor*, a 5 ms periodic timer that
runs only while some button is busy (not IDLE). A *press edge* (the level
becoming active, see ``active_state_bitmap``) on an IDLE button moves it to
MIN_DOWN_QUALIFY, remembers the current tick count as the button's reference,
and starts the monitor if it was stopped: its first tick falls 5 ms after
that edge. On a button that is not IDLE an edge is not an event at all; it
only changes the level that the next tick samples (C's interrupt is looked at
only by an IDLE button, the rest is sampling).

On each tick, each busy button is judged on two numbers: its *age*, the
ticks since its reference times 5 ms, and whether it is pressed *now*. The
first rule of its state (table :data:`TICK_RULES`, in order) whose guard
holds fires: it may emit one event, move the button to another state, and
restart the age and/or the repeat count. So a button emits at most one event
per tick, and every event is stamped with the time of the tick. When the
last busy button becomes IDLE, the monitor stops.

Because ages count ticks, a press that falls between two ticks of a running
monitor is aged from the tick before it, as in C. An edge at the very
instant of a tick is applied before that tick samples.

What users see: a click is ``down, up, click``; a long click ``down,
longclick, up``; a double click ``down, up, down, doubleclick, up``; without
doubleclick classification a click is ``down, click``.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Final, NamedTuple

from smdbus.button._controller import Controller
from smdbus.button._errors import ButtonConfigError, ButtonError, IllegalMove
from smdbus.button._events import ButtonEvent, Edge, EventName, format_ms
from smdbus.button._regime import TICK_MS, Regime


class Phase(enum.Enum):
    """Per-button states, named as C names them (``LBCS_*``)."""

    IDLE = "IDLE"
    MIN_DOWN_QUALIFY = "MIN_DOWN_QUALIFY"
    ASSESS_DOWN_HOLD = "ASSESS_DOWN_HOLD"
    UP_SETTLE1 = "UP_SETTLE1"
    WAIT_DOUBLECLICK = "WAIT_DOUBLECLICK"
    MIN_DOWN_QUALIFY2 = "MIN_DOWN_QUALIFY2"
    WAIT_UP = "WAIT_UP"
    UP_SETTLE2 = "UP_SETTLE2"


class EdgeKind(enum.Enum):
    PRESS = "press edge"
    RELEASE = "release edge"


class Guard(enum.Enum):
    """The conditions a tick can find; see :func:`_holds` for each one's test."""

    RELEASED = "released"
    HELD_MIN_DOWN = "held and age >= ms_min_down"
    LONGPRESS = "age >= ms_min_down_longpress"
    RELEASED_NO_DOUBLECLICK = "released, classify_doubleclick off"
    REPEAT_DUE = "held, ms_repeat_down set and repeat age > ms_repeat_down"
    SETTLED_PAST = "age > ms_up_settle"
    PRESSED = "pressed"
    GRACE_OVER = "age >= ms_doubleclick_grace"
    AGE_IS_MIN_DOWN = "age == ms_min_down"
    AGE_PAST_MIN_DOWN = "age > ms_min_down"
    SETTLED = "age >= ms_up_settle"


class Restart(enum.Flag):
    """Which reference point a rule restarts at this tick."""

    NOTHING = 0
    AGE = enum.auto()
    REPEAT = enum.auto()


class Rule(NamedTuple):
    guard: Guard
    emits: EventName | None
    goes_to: Phase | None  # None: stays
    restarts: Restart


_ = Restart.NOTHING  # "restarts nothing", short enough for the table
AGE, REPEAT = Restart.AGE, Restart.REPEAT

# fmt: off
TICK_RULES: Final[dict[Phase, tuple[Rule, ...]]] = {
    # state: guard (first that holds wins)  emits                  goes to                  restarts
    Phase.MIN_DOWN_QUALIFY: (
        Rule(Guard.RELEASED,                None,                  Phase.UP_SETTLE2,        AGE),
        Rule(Guard.HELD_MIN_DOWN,           EventName.DOWN,        Phase.ASSESS_DOWN_HOLD,  REPEAT),
    ),
    Phase.ASSESS_DOWN_HOLD: (
        Rule(Guard.LONGPRESS,               EventName.LONGCLICK,   Phase.WAIT_UP,           _),
        Rule(Guard.RELEASED_NO_DOUBLECLICK, EventName.CLICK,       Phase.UP_SETTLE2,        AGE),
        Rule(Guard.RELEASED,                EventName.UP,          Phase.UP_SETTLE1,        AGE),
        Rule(Guard.REPEAT_DUE,              EventName.STILLDOWN,   None,                    REPEAT),
    ),
    Phase.UP_SETTLE1: (
        Rule(Guard.SETTLED_PAST,            None,                  Phase.WAIT_DOUBLECLICK,  _),
    ),
    Phase.WAIT_DOUBLECLICK: (
        Rule(Guard.PRESSED,                 None,                  Phase.MIN_DOWN_QUALIFY2, AGE),
        Rule(Guard.GRACE_OVER,              EventName.CLICK,       Phase.UP_SETTLE2,        AGE),
    ),
    Phase.MIN_DOWN_QUALIFY2: (
        Rule(Guard.RELEASED,                EventName.CLICK,       Phase.UP_SETTLE2,        AGE),
        Rule(Guard.AGE_IS_MIN_DOWN,         EventName.DOWN,        None,                    _),
        Rule(Guard.AGE_PAST_MIN_DOWN,       EventName.DOUBLECLICK, Phase.WAIT_UP,           _),
    ),
    Phase.WAIT_UP: (
        Rule(Guard.RELEASED,                EventName.UP,          Phase.UP_SETTLE2,        AGE),
        Rule(Guard.REPEAT_DUE,              EventName.STILLDOWN,   None,                    REPEAT),
    ),
    Phase.UP_SETTLE2: (
        Rule(Guard.SETTLED,                 None,                  Phase.IDLE,              _),
    ),
}
"""What a tick does to a busy button. IDLE buttons are not ticked."""

EDGE_RULES: Final[dict[Phase, dict[EdgeKind, Phase]]] = {
    Phase.IDLE: {EdgeKind.PRESS: Phase.MIN_DOWN_QUALIFY},
}
"""What an edge does: only a press on an IDLE button is an event. Everywhere
else an edge just changes the level the next tick samples, which is also why
a press that starts while a button is settling (UP_SETTLE2) is lost."""
# fmt: on


@dataclass(frozen=True, slots=True)
class _Sample:
    """What a guard may look at."""

    pressed: bool
    age_ms: int
    repeat_age_ms: int
    regime: Regime


def _holds(guard: Guard, s: _Sample) -> bool:
    r = s.regime
    match guard:
        case Guard.RELEASED:
            return not s.pressed
        case Guard.PRESSED:
            return s.pressed
        case Guard.HELD_MIN_DOWN:
            return s.pressed and s.age_ms >= r.ms_min_down
        case Guard.LONGPRESS:
            return s.age_ms >= r.ms_min_down_longpress
        case Guard.RELEASED_NO_DOUBLECLICK:
            return not s.pressed and not r.classify_doubleclick
        case Guard.REPEAT_DUE:
            return s.pressed and r.ms_repeat_down > 0 and s.repeat_age_ms > r.ms_repeat_down
        case Guard.SETTLED_PAST:
            return s.age_ms > r.ms_up_settle
        case Guard.GRACE_OVER:
            return s.age_ms >= r.ms_doubleclick_grace
        case Guard.AGE_IS_MIN_DOWN:
            return s.age_ms == r.ms_min_down
        case Guard.AGE_PAST_MIN_DOWN:
            return s.age_ms > r.ms_min_down
        case Guard.SETTLED:
            return s.age_ms >= r.ms_up_settle


@dataclass(slots=True)
class _Button:
    phase: Phase = Phase.IDLE
    level: int = 0
    age_ref: int = 0  # tick count at the last age restart (C: mon_timer_comp)
    repeat_ref: int = 0  # tick count at the last down / stilldown (C: mon_timer_repeat)


class Classifier:
    """One controller's classifier: feed it edges and ticks, get :class:`ButtonEvent`.

    ``edge()`` first runs every tick that fell due before the edge, so a caller
    that only feeds edges and finally calls :meth:`run_until_idle` gets the
    same events at the same times as one that ticks on a real timer.
    """

    def __init__(
        self, controller: Controller, *, levels: Mapping[int | str, int] | None = None
    ) -> None:
        """``levels``: electrical level of each button now (default: all released)."""
        self.controller = controller
        self._buttons = [
            _Button(level=controller.level(i, pressed=False))
            for i in range(len(controller.buttons))
        ]
        for index, level in (levels or {}).items():
            self._buttons[controller.index(index)].level = _check_level(level)
        self._count = 0  # ticks run so far (C: mon_timer_count); never wraps here
        self._origin_ms: float | None = None  # time of the edge that started the monitor
        self._origin_count = 0
        self._now: float | None = None

    # -- what the caller may ask ------------------------------------------------------------

    @property
    def next_tick_ms(self) -> float | None:
        """When the monitor's next tick is due; None while the monitor is stopped."""
        if self._origin_ms is None:
            return None
        return self._origin_ms + TICK_MS * (self._count - self._origin_count + 1)

    @property
    def busy(self) -> bool:
        """True while the monitor runs (some button is not IDLE)."""
        return self._origin_ms is not None

    @property
    def ticks_run(self) -> int:
        """Monitor ticks so far (C's ``mon_timer_count``, which wraps at 65536; ours does not)."""
        return self._count

    @property
    def now_ms(self) -> float | None:
        """The latest time fed (edge, tick or advance); None before anything."""
        return self._now

    def phase(self, button: int | str) -> Phase:
        return self._buttons[self.controller.index(button)].phase

    def is_pressed(self, button: int | str) -> bool:
        i = self.controller.index(button)
        return self.controller.is_pressed(i, self._buttons[i].level)

    # -- inputs -----------------------------------------------------------------------------

    def edge(self, time_ms: float, button: int | str, level: int | bool) -> list[ButtonEvent]:
        """A level change on ``button`` at ``time_ms``; returns events of ticks due before it."""
        index = self.controller.index(button)
        lvl = _check_level(level)
        self._check_time(time_ms, f"edge at {format_ms(time_ms)} ms")
        events = self._run_ticks(lambda due: due < time_ms)
        self._now = time_ms
        b = self._buttons[index]
        was, b.level = self.controller.is_pressed(index, b.level), lvl
        now = self.controller.is_pressed(index, lvl)
        if was == now:
            return events  # a repeated level is no edge
        kind = EdgeKind.PRESS if now else EdgeKind.RELEASE
        goes_to = EDGE_RULES.get(b.phase, {}).get(kind)
        if goes_to is not None:
            b.phase = goes_to
            b.age_ref = self._count
            if self._origin_ms is None:
                self._origin_ms, self._origin_count = time_ms, self._count
        return events

    def feed(self, edge: Edge) -> list[ButtonEvent]:
        """:meth:`edge` for an :class:`Edge` record from a source."""
        return self.edge(edge.time_ms, edge.button, edge.level)

    def tick(self, time_ms: float) -> list[ButtonEvent]:
        """Run the monitor tick due at ``time_ms``; it must be exactly :attr:`next_tick_ms`."""
        due = self.next_tick_ms
        event = f"tick at {format_ms(time_ms)} ms"
        if due is None:
            raise IllegalMove("monitor STOPPED", event, "no button is busy, nothing to sample")
        if abs(time_ms - due) > 1e-6:
            raise IllegalMove(
                "monitor RUNNING", event, f"the next tick is due at {format_ms(due)} ms"
            )
        return self._tick()

    def advance(self, time_ms: float) -> list[ButtonEvent]:
        """Run every tick due at or before ``time_ms``; time is then ``time_ms``."""
        self._check_time(time_ms, f"advance to {format_ms(time_ms)} ms")
        events = self._run_ticks(lambda due: due <= time_ms)
        self._now = time_ms
        return events

    def run_until_idle(self) -> list[ButtonEvent]:
        """Tick until every button is IDLE.

        Refused up front (nothing is run) while a button is held: with no
        release to come it would end in WAIT_UP and never be idle. A held
        button whose press was lost (UP_SETTLE2) is fine: it goes idle.
        """
        for i, b in enumerate(self._buttons):
            if b.phase not in (Phase.IDLE, Phase.UP_SETTLE2) and self.is_pressed(i):
                raise IllegalMove(
                    f"{b.phase.value} ({self._src(i)} held)",
                    "run until idle",
                    "the button is still pressed and would never be idle: release it first",
                )
        events: list[ButtonEvent] = []
        while self.busy:
            events += self._tick()
        return events

    # -- the machine ------------------------------------------------------------------------

    def _run_ticks(self, due_ok: Callable[[float], bool]) -> list[ButtonEvent]:
        events: list[ButtonEvent] = []
        while (due := self.next_tick_ms) is not None and due_ok(due):
            events += self._tick()
        return events

    def _tick(self) -> list[ButtonEvent]:
        time_ms = self.next_tick_ms
        assert time_ms is not None
        self._count += 1
        self._now = time_ms
        events: list[ButtonEvent] = []
        for i, b in enumerate(self._buttons):
            if b.phase is Phase.IDLE:
                continue
            spec = self.controller.buttons[i]
            sample = _Sample(
                pressed=self.controller.is_pressed(i, b.level),
                age_ms=(self._count - b.age_ref) * TICK_MS,
                repeat_age_ms=(self._count - b.repeat_ref) * TICK_MS,
                regime=spec.regime,
            )
            for rule in TICK_RULES[b.phase]:
                if not _holds(rule.guard, sample):
                    continue
                if Restart.AGE in rule.restarts:
                    b.age_ref = self._count
                if Restart.REPEAT in rule.restarts:
                    b.repeat_ref = self._count
                if rule.goes_to is not None:
                    b.phase = rule.goes_to
                if rule.emits is not None:
                    events.append(
                        ButtonEvent(time_ms, self.controller.name, spec.name, rule.emits, i)
                    )
                break
        if all(b.phase is Phase.IDLE for b in self._buttons):
            self._origin_ms = None
        return events

    def _check_time(self, time_ms: float, event: str) -> None:
        if isinstance(time_ms, bool) or not isinstance(time_ms, int | float):
            raise ButtonError(f"{event}: a time is a number of milliseconds, got {time_ms!r}")
        if self._now is not None and time_ms < self._now:
            state = "monitor RUNNING" if self.busy else "monitor STOPPED"
            raise IllegalMove(
                state,
                event,
                f"the classifier is already at {format_ms(self._now)} ms (time only moves forward)",
            )

    def _src(self, index: int) -> str:
        return f"{self.controller.name}/{self.controller.buttons[index].name}"


def _check_level(level: int | bool) -> int:
    if isinstance(level, bool | int) and level in (0, 1):
        return int(level)
    raise ButtonConfigError(f"a level is 0 or 1 (or a bool), got {level!r}")
