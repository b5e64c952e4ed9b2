"""The system state: the boot sequence, the notifiers that may hold it, its announcements.

Rules
-----
- Everything that decides whether the system state changes lives in this
  module. It never opens a socket, starts a thread or sleeps: announcements go
  to an injected publisher (the bus), time comes from an injected
  :class:`~smdbus.scheduler.Scheduler`.
- States are numbered as in lws and compared numerically
  (:class:`~smdbus.system._states.State`, re-exported here).
- A move ``current -> target`` asks every notifier ``(current, target)``,
  newest registered first, and stops at the first nonzero answer: the move is
  refused, the state does not change, and *that notifier owns the retry* (it
  calls :meth:`StateManager.resume` when its work is done, or returns
  ``link.hold(work)`` so the manager resumes by itself). If nobody refuses, the
  state becomes ``target``, every notifier is told ``(target, target)`` (the
  confirmation pass; answers there are ignored), and ``{"state":"NAME"}`` is
  published on SYSTEM_STATE.
- Which jumps are legal is the table :data:`JUMPS`; anything else raises
  :class:`IllegalTransition` naming the state and the target.
- The manager belongs to the loop thread. Other threads use
  :class:`~smdbus.system._attach.AttachQueue`.

Theory of operation
-------------------
Every request (:meth:`~StateManager.steps`, :meth:`~StateManager.transition`,
:meth:`~StateManager.policy_invalid`, :meth:`~StateManager.enter_modal`,
:meth:`~StateManager.leave_modal`, :meth:`~StateManager.destroy`) becomes a
*plan*: a short list of moves, each "jump to X" or "step toward X". The
manager runs the plan until it is done or a notifier refuses; a refused plan
stays remembered, so :meth:`~StateManager.resume` continues it without the
notifier having to know where the system was going. A new request replaces
the plan.

The POLICY_INVALID cycle is the plan [jump POLICY_INVALID, jump INITIALIZED,
step toward OPERATIONAL]. Entering a modal update is the plan [jump
MODAL_UPDATING] plus a retry timer (1 s, for up to 30 s by default).
"""

from __future__ import annotations

import enum
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from smdbus._announce import Announcer, Publisher
from smdbus.classes import Class
from smdbus.scheduler import LoopScheduler, Scheduler, Timer
from smdbus.system._states import State as State  # re-exported: its home for most callers

if TYPE_CHECKING:
    import asyncio
# asyncio is imported by the methods that run on a loop: ``smd state`` reads State
# without it (a one-shot tool; see smdbus.wire._blocking).

log = logging.getLogger("smdbus.system.state")


_BOOT = frozenset(State(n) for n in range(State.CONTEXT_CREATED, State.POLICY_INVALID + 1))
_MODAL = frozenset({State.AWAITING_MODAL_UPDATING, State.MODAL_UPDATING})
_DOWN = frozenset({State.CONTEXT_DESTROYING})

JUMPS: dict[State, frozenset[State]] = {
    **{s: _BOOT | _DOWN for s in _BOOT | {State.UNKNOWN}},
    State.OPERATIONAL: _BOOT | _DOWN | _MODAL,
    State.AWAITING_MODAL_UPDATING: frozenset({State.MODAL_UPDATING, State.OPERATIONAL}) | _DOWN,
    State.MODAL_UPDATING: frozenset({State.OPERATIONAL}) | _DOWN,
    State.CONTEXT_DESTROYING: frozenset(),
}
"""Legal jump targets by current state. Boot states reach each other and
shutdown; only OPERATIONAL enters a modal update; a modal update leaves only
to OPERATIONAL (or shutdown); nothing leaves CONTEXT_DESTROYING. A step is a
jump to ``state + 1`` and so obeys the same table."""


class StateError(Exception):
    """Base of the state manager's errors."""


class IllegalTransition(StateError):
    """The move is not in :data:`JUMPS` (or the request makes no sense from here)."""

    def __init__(self, current: State, target: State, why: str) -> None:
        self.current, self.target = current, target
        super().__init__(f"illegal move {current.name} -> {target.name}: {why}")


class ReentrantTransition(StateError):
    """A notifier asked for a move while the manager was asking notifiers."""


class NotifierError(StateError):
    """A notifier raised while asked about a move; the state did not change."""

    def __init__(self, link: NotifyLink, current: State, target: State) -> None:
        self.link, self.current, self.target = link, current, target
        super().__init__(
            f"notifier {link.name!r} raised when asked {current.name} -> {target.name}; "
            f"state stays {current.name} (resume() retries)"
        )


class ShutdownError(StateError):
    """The system is shutting down: the awaited state will not come."""


Notifier = Callable[["StateManager", "NotifyLink", State, State], int | bool | None]
"""``cb(manager, link, current, target)``: nonzero (truthy) refuses the move."""

Listener = Callable[[State, State], None]
"""``listener(previous, new)``: called after each change is published."""


class NotifyLink:
    """A registered notifier (lws ``lws_state_notify_link_t``)."""

    __slots__ = ("callback", "manager", "name")

    def __init__(self, callback: Notifier, name: str, manager: StateManager) -> None:
        self.callback = callback
        self.name = name
        self.manager = manager

    def hold(self, work: Awaitable[object]) -> int:
        """Refuse this move and resume the plan when ``work`` completes.

        Return its value from the notifier: ``return link.hold(fetch_policy())``.
        The notifier is asked again on resume and must then answer 0.
        """
        return self.manager.hold_until(work, link=self)

    def __repr__(self) -> str:
        return f"<NotifyLink {self.name!r}>"


class _Kind(enum.Enum):
    JUMP = "jump to"
    STEPS = "step toward"


@dataclass(frozen=True)
class Move:
    """One element of a plan."""

    kind: _Kind
    target: State

    def __str__(self) -> str:
        return f"{self.kind.value} {self.target.name}"


class ModalRequest:
    """A pending attempt to enter a modal update, retried on a timer.

    ``entered`` is None while pending, then True (entered) or False (gave
    up, cancelled or superseded).
    """

    def __init__(self, manager: StateManager, target: State) -> None:
        self.manager = manager
        self.target = target
        self.attempts = 0
        self.entered: bool | None = None
        self.started = 0.0
        self._timer: Timer | None = None
        self._callbacks: list[Callable[[ModalRequest], None]] = []

    @property
    def done(self) -> bool:
        return self.entered is not None

    def cancel(self) -> None:
        """Stop retrying (the state stays where it is)."""
        if not self.done:
            if self.manager._modal is self:
                self.manager._plan.clear()
            self._finish(False)

    def add_done_callback(self, callback: Callable[[ModalRequest], None]) -> None:
        if self.done:
            callback(self)
        else:
            self._callbacks.append(callback)

    async def wait(self) -> bool:
        """Until entered (True) or given up (False)."""
        if self.done:
            return bool(self.entered)
        import asyncio

        fut: asyncio.Future[bool] = asyncio.get_running_loop().create_future()

        def _set(req: ModalRequest) -> None:
            if not fut.done():
                fut.set_result(bool(req.entered))

        self.add_done_callback(_set)
        return await fut

    def _finish(self, entered: bool) -> None:
        if self.done:
            return
        self.entered = entered
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self.manager._modal is self:
            self.manager._modal = None
        callbacks, self._callbacks = self._callbacks, []
        for cb in callbacks:
            cb(self)

    def __repr__(self) -> str:
        status = "pending" if not self.done else ("entered" if self.entered else "gave up")
        return f"<ModalRequest {self.target.name} {status} after {self.attempts} attempt(s)>"


class StateManager:
    """Owns the system state; asks notifiers, moves, publishes (lws ``lws_state_manager_t``).

    ``notifiers`` are registered at creation (they see every move) and are
    asked before ``internal`` ones, each list in reverse order, as C's
    context does. Later :meth:`register` calls go first.
    """

    def __init__(
        self,
        bus: Publisher | None = None,
        *,
        notifiers: Iterable[Notifier | tuple[str, Notifier]] = (),
        internal: Iterable[Notifier | tuple[str, Notifier]] = (),
        scheduler: Scheduler | None = None,
        name: str = "system",
        smd_class: int = Class.SYSTEM_STATE,
        initial: State = State.CONTEXT_CREATED,
        modal_retry_interval: float = 1.0,
        modal_retry_limit: float = 30.0,
        publish_retry: float = 0.05,
    ) -> None:
        if modal_retry_interval <= 0:
            raise ValueError(f"modal_retry_interval must be > 0 s, got {modal_retry_interval}")
        if publish_retry <= 0:
            raise ValueError(f"publish_retry must be > 0 s, got {publish_retry}")
        if modal_retry_limit < 0:
            raise ValueError(f"modal_retry_limit must be >= 0 s, got {modal_retry_limit}")
        self.name = name
        self.smd_class = smd_class
        self.modal_retry_interval = modal_retry_interval
        self.modal_retry_limit = modal_retry_limit
        self.publish_retry = publish_retry
        self._scheduler = scheduler
        self._state = State(initial)
        self._links: list[NotifyLink] = []  # asking order: newest first
        self._listeners: list[Listener] = []
        self._plan: deque[Move] = deque()
        self._busy = False
        self._modal: ModalRequest | None = None
        self._holds: set[asyncio.Future[object]] = set()
        self._waiters: list[tuple[State, bool, asyncio.Future[State]]] = []
        # a full bus queue delays announcements, in order, never drops them (smdbus._announce)
        self.announcer = Announcer(bus, name, retry=publish_retry, timers=lambda: self.scheduler)
        self.held_by: NotifyLink | None = None
        """The notifier that refused the last move, while the plan is held."""
        for entry in internal:
            self.register(*_named(entry))
        for entry in notifiers:
            self.register(*_named(entry))

    # -- introspection -------------------------------------------------------

    @property
    def state(self) -> State:
        return self._state

    @property
    def plan(self) -> tuple[Move, ...]:
        """What is left of the current request (empty when done)."""
        return tuple(self._plan)

    @property
    def notifiers(self) -> tuple[NotifyLink, ...]:
        """In asking order (newest first)."""
        return tuple(self._links)

    @property
    def bus(self) -> Publisher | None:
        """Where the states are announced (None: nowhere)."""
        return self.announcer.bus

    @property
    def publish_delays(self) -> int:
        """Announcements that met a full queue and were sent later."""
        return self.announcer.delayed

    @property
    def scheduler(self) -> Scheduler:
        """The injected scheduler, or one on the running asyncio loop."""
        if self._scheduler is None:
            import asyncio

            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                raise RuntimeError(
                    "the state manager needs a timer but has no scheduler and no asyncio "
                    "loop is running: pass scheduler=LoopScheduler(loop) or ManualScheduler()"
                ) from None
            self._scheduler = LoopScheduler(loop)
        return self._scheduler

    def __repr__(self) -> str:
        plan = ", ".join(map(str, self._plan)) or "none"
        held = f" held by {self.held_by.name!r}" if self.held_by else ""
        return f"<StateManager {self.name!r} {self._state.name} plan: {plan}{held}>"

    # -- registration --------------------------------------------------------

    def register(self, callback: Notifier, name: str | None = None) -> NotifyLink:
        """Add a notifier; it is asked before every one registered earlier."""
        if not callable(callback):
            raise TypeError(f"notifier must be callable, got {callback!r}")
        label = name or str(getattr(callback, "__name__", None) or repr(callback))
        link = NotifyLink(callback, label, self)
        self._links.insert(0, link)
        return link

    def unregister(self, link: NotifyLink) -> None:
        try:
            self._links.remove(link)
        except ValueError:
            raise ValueError(f"{link!r} is not registered with {self!r}") from None
        if self.held_by is link:
            self.held_by = None

    def add_listener(self, listener: Listener) -> Callable[[], None]:
        """Call ``listener(previous, new)`` after each published change; returns a remover."""
        self._listeners.append(listener)

        def remove() -> None:
            if listener in self._listeners:
                self._listeners.remove(listener)

        return remove

    # -- requests ------------------------------------------------------------

    def steps(self, target: State | int) -> bool:
        """Step one state at a time toward ``target``, each step notified and published.

        Does nothing if the state is already at or above ``target`` (so it
        does nothing during a modal update). Returns True when at or above
        ``target``, False when a notifier holds the way.
        """
        target = State.parse(target)
        if not State.CONTEXT_CREATED <= target <= State.CONTEXT_DESTROYING:
            raise IllegalTransition(
                self._state, target, "steps only walk CONTEXT_CREATED..CONTEXT_DESTROYING"
            )
        return self._start([Move(_Kind.STEPS, target)])

    def transition(self, target: State | int) -> bool:
        """Jump straight to ``target`` (either direction); False if a notifier refused."""
        target = State.parse(target)
        self._check_jump(self._state, target)
        return self._start([Move(_Kind.JUMP, target)])

    def policy_invalid(self) -> bool:
        """Drop the old policy: POLICY_INVALID, back to INITIALIZED, onward to OPERATIONAL.

        Notifiers are asked at each move (drop connections on entering
        POLICY_INVALID; refuse leaving it until the new policy is in).
        """
        plan = [
            Move(_Kind.JUMP, State.INITIALIZED),
            Move(_Kind.STEPS, State.OPERATIONAL),
        ]
        if self._state != State.POLICY_INVALID:
            self._check_jump(self._state, State.POLICY_INVALID)
            plan.insert(0, Move(_Kind.JUMP, State.POLICY_INVALID))
        return self._start(plan)

    def enter_modal(self, target: State | int = State.MODAL_UPDATING) -> ModalRequest:
        """Ask to enter a modal update; any notifier may refuse, and the request retries.

        Retries every ``modal_retry_interval`` seconds until
        ``modal_retry_limit`` seconds after the first attempt, then gives up
        (state unchanged). The returned request tells how it went.
        """
        target = State.parse(target)
        if target not in _MODAL:
            raise IllegalTransition(self._state, target, "enter_modal() targets a modal state")
        self._check_jump(self._state, target)
        request = ModalRequest(self, target)
        request.attempts = 1
        if not self._start([Move(_Kind.JUMP, target)], modal=request):
            request.started = self.scheduler.now()
            request._timer = self.scheduler.call_later(self.modal_retry_interval, self._modal_tick)
        return request

    def leave_modal(self) -> bool:
        """Return from a modal update to OPERATIONAL (or stop a pending entry)."""
        if self._modal is not None and self._state == State.OPERATIONAL:
            self._modal.cancel()
            return True
        if self._state not in _MODAL:
            raise IllegalTransition(self._state, State.OPERATIONAL, "not in a modal update")
        return self._start([Move(_Kind.JUMP, State.OPERATIONAL)])

    def destroy(self, *, force: bool = False) -> bool:
        """Step toward CONTEXT_DESTROYING (a jump from a modal update).

        A notifier may hold shutdown like any move; with ``force`` the
        manager then goes to CONTEXT_DESTROYING anyway (confirmation pass and
        announcement still happen), for a daemon that must exit.
        """
        kind = _Kind.JUMP if self._state in _MODAL else _Kind.STEPS
        try:
            moved = self._start([Move(kind, State.CONTEXT_DESTROYING)])
        except NotifierError:
            if not force:
                raise
            log.exception("%s: a notifier raised during shutdown", self.name)
            moved = False
        if not moved and force:
            log.warning(
                "%s: shutdown held by %r at %s; forced",
                self.name,
                self.held_by.name if self.held_by else None,
                self._state.name,
            )
            self._plan.clear()
            self.held_by = None
            self._commit(State.CONTEXT_DESTROYING)
            moved = True
        return moved

    def resume(self) -> bool:
        """Continue the remembered plan (call it when the work you refused for is done).

        Returns True when the plan is complete (or there was none).
        """
        self._not_busy("resume()")
        return self._run()

    def hold_until(self, work: Awaitable[object], link: NotifyLink | None = None) -> int:
        """Run ``work`` on the loop and :meth:`resume` when it completes; returns 1.

        For a notifier: ``return manager.hold_until(get_lease())``. If the
        work raises, the error is logged and the state stays held (call
        :meth:`resume` to retry later).
        """
        import asyncio

        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            if asyncio.iscoroutine(work):
                work.close()
            raise RuntimeError(
                "hold needs a running asyncio loop; without one, refuse and call "
                "manager.resume() when the work is done"
            ) from None
        fut = asyncio.ensure_future(work, loop=loop)
        self._holds.add(fut)
        who = link.name if link is not None else "hold_until"

        def done(f: asyncio.Future[object]) -> None:
            self._holds.discard(f)
            if f.cancelled():
                log.info(
                    "%s: work held by %r was cancelled; state stays %s",
                    self.name,
                    who,
                    self._state.name,
                )
                return
            exc = f.exception()
            if exc is not None:
                log.error(
                    "%s: work held by %r failed (%s: %s); state stays %s until resume()",
                    self.name,
                    who,
                    type(exc).__name__,
                    exc,
                    self._state.name,
                )
                return
            try:
                self.resume()
            except StateError as e:
                log.error("%s: resuming after %r's work: %s", self.name, who, e)

        fut.add_done_callback(done)
        return 1

    async def wait_for(self, target: State | int, *, exact: bool = False) -> State:
        """Until the state is at or above ``target`` (or exactly it); returns the state.

        Comparisons are numeric, as for attach: POLICY_INVALID and the modal
        states count as "past OPERATIONAL". Shutdown never satisfies a wait for
        an earlier state: such a wait raises :class:`ShutdownError`.
        """
        target = State.parse(target)
        if self._satisfies(target, exact):
            return self._state
        if self._state == State.CONTEXT_DESTROYING:
            raise ShutdownError(f"{self.name} is shutting down: {target.name} will not come")
        import asyncio

        fut: asyncio.Future[State] = asyncio.get_running_loop().create_future()
        self._waiters.append((target, exact, fut))
        return await fut

    # -- the engine ------------------------------------------------------------

    def _check_jump(self, current: State, target: State) -> None:
        if target != current and target not in JUMPS[current]:
            if current == State.CONTEXT_DESTROYING:
                why = "nothing leaves CONTEXT_DESTROYING"
            elif target == State.UNKNOWN:
                why = "UNKNOWN is never a target"
            elif target in _MODAL:
                why = "a modal update is entered only from OPERATIONAL"
            elif current in _MODAL:
                why = "a modal update leaves only to OPERATIONAL (leave_modal) or shutdown"
            else:
                why = "not in the JUMPS table"
            raise IllegalTransition(current, target, why)

    def _not_busy(self, what: str) -> None:
        if self._busy:
            raise ReentrantTransition(
                f"{what} called from inside a notifier of {self.name!r}; refuse and call "
                "resume() later, or return link.hold(work)"
            )

    def _start(self, plan: list[Move], modal: ModalRequest | None = None) -> bool:
        self._not_busy(f"{plan[0]}")
        if self._modal is not None:
            self._modal._finish(False)
        self._plan = deque(plan)
        self._modal = modal
        self.held_by = None
        return self._run()

    def _run(self) -> bool:
        while self._plan:
            move = self._plan[0]
            if move.kind is _Kind.JUMP:
                if self._state != move.target and not self._move(move.target):
                    return False
            else:
                while self._state < move.target:
                    if not self._move(State(self._state + 1)):
                        return False
            self._plan.popleft()
        self.held_by = None
        return True

    def _move(self, target: State) -> bool:
        current = self._state
        self._check_jump(current, target)
        self._busy = True
        try:
            for link in tuple(self._links):
                try:
                    refused = link.callback(self, link, current, target)
                except ReentrantTransition:
                    raise
                except Exception as e:
                    self.held_by = link
                    raise NotifierError(link, current, target) from e
                if refused:
                    self.held_by = link
                    log.debug(
                        "%s: %r holds %s -> %s", self.name, link.name, current.name, target.name
                    )
                    return False
        finally:
            self._busy = False
        self._commit(target)
        return True

    def _commit(self, target: State) -> None:
        previous, self._state = self._state, target
        self._busy = True  # listeners and confirmations may not request moves either
        try:
            for link in tuple(self._links):
                try:
                    link.callback(self, link, target, target)
                except Exception:
                    log.exception(
                        "%s: notifier %r raised confirming %s", self.name, link.name, target.name
                    )
            log.info("%s: %s -> %s", self.name, previous.name, target.name)
            self._publish(target)
            self._after_change(previous, target)
        finally:
            self._busy = False

    def _publish(self, state: State) -> None:
        """Announce in order; a full bus queue delays announcements, never drops them."""
        self.announcer.announce(self.smd_class, {"state": state.published_name})

    def _after_change(self, previous: State, new: State) -> None:
        modal = self._modal
        if modal is not None and new == modal.target:
            modal._finish(True)
        if self._waiters:
            keep: list[tuple[State, bool, asyncio.Future[State]]] = []
            for target, exact, fut in self._waiters:
                if fut.done():
                    continue
                if self._satisfies(target, exact):
                    fut.set_result(new)
                elif new == State.CONTEXT_DESTROYING:
                    fut.set_exception(
                        ShutdownError(f"{self.name} is shutting down: {target.name} will not come")
                    )
                else:
                    keep.append((target, exact, fut))
            self._waiters = keep
        for listener in tuple(self._listeners):
            try:
                listener(previous, new)
            except Exception:
                log.exception("%s: state listener %r raised", self.name, listener)

    def _satisfies(self, target: State, exact: bool) -> bool:
        if exact or self._state == State.CONTEXT_DESTROYING:
            return self._state == target
        return self._state >= target

    def _modal_tick(self) -> None:
        request = self._modal
        if request is None or request.done:
            return
        request._timer = None
        request.attempts += 1
        try:
            if self.resume():
                return
        except StateError as e:
            log.error("%s: retrying %s: %s", self.name, request.target.name, e)
        elapsed = self.scheduler.now() - request.started
        if request.done:
            return
        if elapsed + self.modal_retry_interval > self.modal_retry_limit + 1e-9:
            log.warning(
                "%s: %s refused by %r for %.0f s: giving up",
                self.name,
                request.target.name,
                self.held_by.name if self.held_by else None,
                elapsed,
            )
            self._plan.clear()
            request._finish(False)
            return
        request._timer = self.scheduler.call_later(self.modal_retry_interval, self._modal_tick)


def _named(entry: Notifier | tuple[str, Notifier]) -> tuple[Notifier, str | None]:
    if isinstance(entry, tuple):
        name, callback = entry
        return callback, name
    return entry, None
