"""The state manager against lws_system's rules (docs/system.md): moves, plans, modal."""

# The manager's state changes under mypy's feet (it narrows mgr.state after an assert).
# mypy: disable-error-code="comparison-overlap"

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import pytest

from smdbus import Bus, Class
from smdbus.scheduler import ManualScheduler
from smdbus.system import (
    JUMPS,
    IllegalTransition,
    NotifierError,
    NotifyLink,
    ReentrantTransition,
    ShutdownError,
    State,
    StateManager,
)

BOOT_NAMES = [
    "PRE_PRIV_DROP",
    "INITIALIZED",
    "COLLECTING_STDIN",
    "IFACE_COLDPLUG",
    "DHCP",
    "CPD_PRE_TIME",
    "TIME_VALID",
    "CPD_POST_TIME",
    "POLICY_VALID",
    "REGISTERED",
    "AUTH1",
    "AUTH2",
    "ONE_TIME_UPDATES",
    "OPERATIONAL",
]


class Recorder:
    """A publisher that keeps what the manager announces (the sans-IO side)."""

    def __init__(self) -> None:
        self.sent: list[tuple[int, bytes]] = []

    def send(self, cls: int, payload: bytes) -> bool:
        self.sent.append((cls, payload))
        return True

    @property
    def names(self) -> list[str]:
        return [json.loads(p)["state"] for _, p in self.sent]


Calls = list[tuple[str, State, State]]


def spy(calls: Calls, name: str, refuse: set[tuple[State, State]] | None = None) -> Any:
    """A notifier recording (name, current, target), refusing the moves in ``refuse``."""

    def cb(manager: StateManager, link: NotifyLink, current: State, target: State) -> int:
        calls.append((name, current, target))
        return 1 if refuse and (current, target) in refuse else 0

    return cb


# -- states -----------------------------------------------------------------


def test_state_numbers_and_published_names() -> None:
    assert len(State) == 20
    assert [s.value for s in State] == list(range(20))
    assert State.CONTEXT_DESTROYING == 17
    assert State.CONTEXT_DESTROYING.published_name == "DESTROYING"
    assert State.MODAL_UPDATING == 19 and State.POLICY_INVALID == 16
    assert State.OPERATIONAL.published_name == "OPERATIONAL"
    assert State.parse("destroying") is State.CONTEXT_DESTROYING
    assert State.parse("15") is State.OPERATIONAL
    assert State.parse(6) is State.DHCP
    with pytest.raises(ValueError, match="unknown system state 'BOOTING'"):
        State.parse("BOOTING")
    with pytest.raises(ValueError, match="numbered 20"):
        State.parse(20)


def test_jump_table_covers_every_state() -> None:
    assert set(JUMPS) == set(State)
    assert JUMPS[State.CONTEXT_DESTROYING] == frozenset()
    assert State.MODAL_UPDATING in JUMPS[State.OPERATIONAL]
    assert State.MODAL_UPDATING not in JUMPS[State.DHCP]


# -- boot -------------------------------------------------------------------


async def test_boot_with_no_notifiers_publishes_14_states_on_the_real_bus() -> None:
    got: list[tuple[int, bytes]] = []
    async with Bus() as bus:
        bus.register(Class.SYSTEM_STATE, lambda c, t, p: got.append((c, bytes(p))), name="watch")
        mgr = StateManager(bus)
        assert mgr.state is State.CONTEXT_CREATED
        assert mgr.steps(State.OPERATIONAL) is True
        assert mgr.state is State.OPERATIONAL
        await bus.drain()
    assert [p for _, p in got] == [b'{"state":"%s"}' % n.encode() for n in BOOT_NAMES]
    assert {c for c, _ in got} == {Class.SYSTEM_STATE}


def test_steps_does_nothing_at_or_above_target() -> None:
    pub = Recorder()
    mgr = StateManager(pub, initial=State.AUTH1)
    assert mgr.steps(State.DHCP) is True
    assert mgr.steps(State.AUTH1) is True
    assert mgr.state is State.AUTH1 and pub.sent == []


def test_refusal_at_dhcp_holds_and_resume_continues() -> None:
    pub = Recorder()
    calls: Calls = []
    lease = {"bound": False}

    def dhcp(m: StateManager, link: NotifyLink, cur: State, tgt: State) -> int:
        calls.append(("dhcp", cur, tgt))
        return 1 if tgt == State.DHCP and cur != tgt and not lease["bound"] else 0

    mgr = StateManager(pub, notifiers=[dhcp])
    assert mgr.steps(State.OPERATIONAL) is False
    assert mgr.state is State.IFACE_COLDPLUG
    assert mgr.held_by is not None and mgr.held_by.name == "dhcp"
    assert pub.names == BOOT_NAMES[:4]
    assert "step toward OPERATIONAL" in repr(mgr)

    assert mgr.resume() is False  # still not bound: asked again, still holds
    assert calls[-1] == ("dhcp", State.IFACE_COLDPLUG, State.DHCP)
    lease["bound"] = True
    assert mgr.resume() is True
    assert mgr.state is State.OPERATIONAL and mgr.plan == () and mgr.held_by is None
    assert pub.names == BOOT_NAMES


def test_notifier_order_newest_first_creation_list_reversed_before_internal() -> None:
    calls: Calls = []
    mgr = StateManager(
        Recorder(),
        notifiers=[("a", spy(calls, "a")), ("b", spy(calls, "b"))],
        internal=[("internal", spy(calls, "internal"))],
        initial=State.DHCP,
    )
    mgr.register(spy(calls, "late"), "late")
    assert [n.name for n in mgr.notifiers] == ["late", "b", "a", "internal"]
    mgr.transition(State.CPD_PRE_TIME)
    asked = [(n, c, t) for n, c, t in calls if c != t]
    assert [n for n, _, _ in asked] == ["late", "b", "a", "internal"]


def test_first_refusal_stops_the_asking_and_confirmation_pass_follows_success() -> None:
    calls: Calls = []
    mgr = StateManager(Recorder(), initial=State.DHCP)
    mgr.register(spy(calls, "last"), "last")
    mgr.register(spy(calls, "refuser", {(State.DHCP, State.CPD_PRE_TIME)}), "refuser")
    mgr.register(spy(calls, "first"), "first")
    assert mgr.transition(State.CPD_PRE_TIME) is False
    assert calls == [
        ("first", State.DHCP, State.CPD_PRE_TIME),
        ("refuser", State.DHCP, State.CPD_PRE_TIME),
    ]
    calls.clear()
    mgr.unregister(mgr.notifiers[1])
    assert mgr.resume() is True
    assert calls == [
        ("first", State.DHCP, State.CPD_PRE_TIME),
        ("last", State.DHCP, State.CPD_PRE_TIME),
        ("first", State.CPD_PRE_TIME, State.CPD_PRE_TIME),
        ("last", State.CPD_PRE_TIME, State.CPD_PRE_TIME),
    ]


def test_publish_comes_after_the_confirmation_pass() -> None:
    pub = Recorder()
    seen: list[int] = []

    def watcher(m: StateManager, link: NotifyLink, cur: State, tgt: State) -> int:
        seen.append(len(pub.sent))
        return 0

    mgr = StateManager(pub, notifiers=[watcher], initial=State.DHCP)
    mgr.transition(State.TIME_VALID)
    assert seen == [0, 0]  # asked, then confirmed, both before the message
    assert pub.names == ["TIME_VALID"]


def test_transition_jumps_both_ways_and_illegal_moves_name_state_and_target() -> None:
    pub = Recorder()
    mgr = StateManager(pub, initial=State.DHCP)
    assert mgr.transition(State.AUTH1) and mgr.state is State.AUTH1
    assert mgr.transition(State.INITIALIZED) and mgr.state is State.INITIALIZED
    assert pub.names == ["AUTH1", "INITIALIZED"]
    with pytest.raises(IllegalTransition, match=r"INITIALIZED -> MODAL_UPDATING"):
        mgr.transition(State.MODAL_UPDATING)
    with pytest.raises(IllegalTransition, match="UNKNOWN is never a target"):
        mgr.transition(State.UNKNOWN)
    with pytest.raises(IllegalTransition, match="steps only walk"):
        mgr.steps(State.AWAITING_MODAL_UPDATING)
    mgr.destroy()
    with pytest.raises(IllegalTransition, match="CONTEXT_DESTROYING -> OPERATIONAL"):
        mgr.transition(State.OPERATIONAL)


def test_notifier_that_raises_names_itself_and_keeps_the_state() -> None:
    def broken(m: StateManager, link: NotifyLink, cur: State, tgt: State) -> int:
        raise KeyError("lease")

    mgr = StateManager(Recorder(), notifiers=[("broken", broken)], initial=State.DHCP)
    with pytest.raises(NotifierError, match=r"'broken' raised when asked DHCP -> CPD_PRE_TIME"):
        mgr.steps(State.OPERATIONAL)
    assert mgr.state is State.DHCP


def test_notifier_may_not_move_the_state_from_inside(caplog: pytest.LogCaptureFixture) -> None:
    def pushy(m: StateManager, link: NotifyLink, cur: State, tgt: State) -> int:
        if tgt == State.DHCP:
            m.resume()
        return 0

    mgr = StateManager(Recorder(), notifiers=[pushy], initial=State.IFACE_COLDPLUG)
    with pytest.raises(ReentrantTransition, match="from inside a notifier"):
        mgr.steps(State.DHCP)
    assert mgr.state is State.IFACE_COLDPLUG

    def pushy_confirm(m: StateManager, link: NotifyLink, cur: State, tgt: State) -> int:
        if cur == tgt == State.DHCP:
            m.steps(State.OPERATIONAL)
        return 0

    mgr = StateManager(Recorder(), notifiers=[pushy_confirm], initial=State.IFACE_COLDPLUG)
    assert mgr.steps(State.DHCP) is True  # the confirmation pass logs and goes on
    assert mgr.state is State.DHCP
    assert "'pushy_confirm' raised confirming DHCP" in caplog.text


# -- hold / resume / wait_for -------------------------------------------------


async def test_hold_until_async_work_completes_then_resumes_by_itself() -> None:
    pub = Recorder()
    ntp_answered = asyncio.Event()
    clock: dict[str, bool] = {"valid": False}

    async def ask_ntp() -> None:
        await ntp_answered.wait()
        clock["valid"] = True

    def ntp(m: StateManager, link: NotifyLink, cur: State, tgt: State) -> int:
        if tgt == State.TIME_VALID and cur != tgt and not clock["valid"]:
            return link.hold(ask_ntp())
        return 0

    mgr = StateManager(pub, notifiers=[ntp])
    assert mgr.steps(State.OPERATIONAL) is False
    assert mgr.state is State.CPD_PRE_TIME
    waiter = asyncio.ensure_future(mgr.wait_for(State.OPERATIONAL))
    await asyncio.sleep(0)
    assert not waiter.done()
    ntp_answered.set()
    assert await asyncio.wait_for(waiter, 5) is State.OPERATIONAL
    assert pub.names == BOOT_NAMES


async def test_held_work_that_fails_keeps_the_state_and_logs(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def fails() -> None:
        raise OSError("no route to policy server")

    def policy(m: StateManager, link: NotifyLink, cur: State, tgt: State) -> int:
        return link.hold(fails()) if tgt == State.POLICY_VALID and cur != tgt else 0

    mgr = StateManager(Recorder(), notifiers=[("policy", policy)], initial=State.CPD_POST_TIME)
    assert mgr.steps(State.OPERATIONAL) is False
    for _ in range(3):
        await asyncio.sleep(0)
    assert mgr.state is State.CPD_POST_TIME
    assert "'policy' failed (OSError: no route to policy server)" in caplog.text


def test_hold_without_a_loop_is_a_clear_error() -> None:
    async def work() -> None:
        pass

    def holder(m: StateManager, link: NotifyLink, cur: State, tgt: State) -> int:
        return link.hold(work())

    mgr = StateManager(Recorder(), notifiers=[holder])
    with pytest.raises(NotifierError) as info:
        mgr.steps(State.INITIALIZED)
    assert "running asyncio loop" in str(info.value.__cause__)


async def test_wait_for_returns_at_once_when_reached_and_raises_on_shutdown() -> None:
    mgr = StateManager(Recorder(), initial=State.OPERATIONAL)
    assert await mgr.wait_for(State.DHCP) is State.OPERATIONAL
    exact = asyncio.ensure_future(mgr.wait_for(State.POLICY_VALID, exact=True))
    later = asyncio.ensure_future(mgr.wait_for(State.AWAITING_MODAL_UPDATING))
    await asyncio.sleep(0)
    mgr.policy_invalid()  # passes POLICY_VALID on the way back to OPERATIONAL
    assert await exact is State.POLICY_VALID
    assert not later.done()
    mgr.destroy()
    with pytest.raises(ShutdownError, match="AWAITING_MODAL_UPDATING will not come"):
        await later
    with pytest.raises(ShutdownError):
        await mgr.wait_for(State.OPERATIONAL)


# -- POLICY_INVALID cycle -----------------------------------------------------


def test_policy_invalid_cycle_tells_notifiers_each_step() -> None:
    pub = Recorder()
    calls: Calls = []
    mgr = StateManager(pub, notifiers=[("n", spy(calls, "n"))], initial=State.OPERATIONAL)
    assert mgr.policy_invalid() is True
    assert mgr.state is State.OPERATIONAL
    assert pub.names == ["POLICY_INVALID", *BOOT_NAMES[1:]]
    asked = [(c, t) for _, c, t in calls if c != t]
    assert asked[0] == (State.OPERATIONAL, State.POLICY_INVALID)
    assert asked[1] == (State.POLICY_INVALID, State.INITIALIZED)
    assert asked[2:] == [(State(n), State(n + 1)) for n in range(3, 15)]
    confirmed = [c for _, c, t in calls if c == t]
    assert confirmed == [State.POLICY_INVALID, *[State(n) for n in range(3, 16)]]


def test_policy_invalid_cycle_held_until_the_new_policy_arrives() -> None:
    pub = Recorder()
    have_policy = {"new": False}

    def fetcher(m: StateManager, link: NotifyLink, cur: State, tgt: State) -> int:
        return int(cur == State.POLICY_INVALID and tgt != cur and not have_policy["new"])

    mgr = StateManager(pub, notifiers=[fetcher], initial=State.OPERATIONAL)
    assert mgr.policy_invalid() is False
    assert mgr.state is State.POLICY_INVALID
    assert mgr.steps(State.OPERATIONAL) is True  # 16 > 15: steps do nothing here
    assert mgr.state is State.POLICY_INVALID
    assert mgr.policy_invalid() is False  # asking again from inside the cycle is fine
    have_policy["new"] = True
    assert mgr.resume() is True and mgr.state is State.OPERATIONAL
    assert pub.names == ["POLICY_INVALID", *BOOT_NAMES[1:]]


# -- modal updating ---------------------------------------------------------


def test_modal_refused_then_retried_each_second_until_accepted() -> None:
    sched = ManualScheduler()
    pub = Recorder()
    busy = {"refusals": 3}
    asked: list[float] = []

    def player(m: StateManager, link: NotifyLink, cur: State, tgt: State) -> int:
        if tgt == State.MODAL_UPDATING and cur != tgt:
            asked.append(sched.now())
            if busy["refusals"]:
                busy["refusals"] -= 1
                return 1
        return 0

    mgr = StateManager(pub, notifiers=[player], scheduler=sched, initial=State.OPERATIONAL)
    req = mgr.enter_modal()
    assert not req.done and mgr.state is State.OPERATIONAL
    sched.advance(0.999)
    assert asked == [0.0]
    sched.advance(2.5)
    assert asked == [0.0, 1.0, 2.0, 3.0]
    assert req.entered is True and req.attempts == 4
    assert mgr.state is State.MODAL_UPDATING and sched.pending == 0
    assert pub.names == ["MODAL_UPDATING"]

    assert mgr.steps(State.OPERATIONAL) is True  # does nothing while modal
    assert mgr.state is State.MODAL_UPDATING
    assert mgr.leave_modal() is True
    assert mgr.state is State.OPERATIONAL
    assert pub.names == ["MODAL_UPDATING", "OPERATIONAL"]


def test_modal_gives_up_after_the_limit() -> None:
    sched = ManualScheduler()
    attempts: list[float] = []

    def never(m: StateManager, link: NotifyLink, cur: State, tgt: State) -> int:
        if tgt in (State.AWAITING_MODAL_UPDATING, State.MODAL_UPDATING) and cur != tgt:
            attempts.append(sched.now())
            return 1
        return 0

    mgr = StateManager(
        Recorder(),
        notifiers=[never],
        scheduler=sched,
        initial=State.OPERATIONAL,
        modal_retry_limit=5.0,
    )
    done: list[bool | None] = []
    req = mgr.enter_modal(State.AWAITING_MODAL_UPDATING)
    req.add_done_callback(lambda r: done.append(r.entered))
    sched.advance(60)
    assert attempts == [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]
    assert done == [False] and req.attempts == 6
    assert mgr.state is State.OPERATIONAL and mgr.plan == ()
    assert "gave up" in repr(req)


def test_modal_default_retry_window_is_30_seconds() -> None:
    sched = ManualScheduler()
    count = {"n": 0}

    def never(m: StateManager, link: NotifyLink, cur: State, tgt: State) -> int:
        if tgt == State.MODAL_UPDATING and cur != tgt:
            count["n"] += 1
            return 1
        return 0

    mgr = StateManager(Recorder(), notifiers=[never], scheduler=sched, initial=State.OPERATIONAL)
    req = mgr.enter_modal()
    sched.advance(29.5)
    assert not req.done
    sched.advance(100)
    assert req.entered is False and count["n"] == 31  # t = 0, 1, ..., 30


def test_awaiting_modal_then_modal_then_leave() -> None:
    pub = Recorder()
    mgr = StateManager(pub, scheduler=ManualScheduler(), initial=State.OPERATIONAL)
    assert mgr.enter_modal(State.AWAITING_MODAL_UPDATING).entered is True
    with pytest.raises(IllegalTransition, match="AWAITING_MODAL_UPDATING -> DHCP"):
        mgr.transition(State.DHCP)
    assert mgr.enter_modal(State.MODAL_UPDATING).entered is True
    assert mgr.leave_modal() is True
    assert pub.names == ["AWAITING_MODAL_UPDATING", "MODAL_UPDATING", "OPERATIONAL"]
    with pytest.raises(IllegalTransition, match="not in a modal update"):
        mgr.leave_modal()


def test_modal_entry_only_from_operational() -> None:
    mgr = StateManager(Recorder(), scheduler=ManualScheduler(), initial=State.DHCP)
    with pytest.raises(IllegalTransition, match="DHCP -> MODAL_UPDATING"):
        mgr.enter_modal()
    with pytest.raises(IllegalTransition, match="enter_modal"):
        StateManager(Recorder(), initial=State.OPERATIONAL).enter_modal(State.DHCP)


def test_leave_modal_while_entry_is_being_retried_cancels_it() -> None:
    sched = ManualScheduler()
    mgr = StateManager(
        Recorder(),
        notifiers=[lambda m, link, c, t: int(t == State.MODAL_UPDATING and c != t)],
        scheduler=sched,
        initial=State.OPERATIONAL,
    )
    req = mgr.enter_modal()
    assert mgr.leave_modal() is True
    assert req.entered is False and sched.pending == 0
    sched.advance(5)
    assert mgr.state is State.OPERATIONAL


async def test_modal_request_wait_on_the_loop_scheduler() -> None:
    mgr = StateManager(Recorder(), initial=State.OPERATIONAL)
    req = mgr.enter_modal()
    assert await req.wait() is True


# -- destroy ------------------------------------------------------------------


def test_destroy_steps_through_policy_invalid_and_force_overrides_a_hold(
    caplog: pytest.LogCaptureFixture,
) -> None:
    pub = Recorder()
    mgr = StateManager(pub, initial=State.OPERATIONAL)
    assert mgr.destroy() is True
    assert pub.names == ["POLICY_INVALID", "DESTROYING"]

    pub2 = Recorder()
    stubborn = StateManager(
        pub2, notifiers=[("stubborn", lambda m, link, c, t: int(c != t))], initial=State.DHCP
    )
    assert stubborn.destroy() is False and stubborn.state is State.DHCP
    with caplog.at_level(logging.WARNING):
        assert stubborn.destroy(force=True) is True
    assert stubborn.state is State.CONTEXT_DESTROYING and pub2.names == ["DESTROYING"]
    assert "held by 'stubborn' at DHCP; forced" in caplog.text


def test_destroy_from_modal_jumps() -> None:
    pub = Recorder()
    mgr = StateManager(pub, initial=State.MODAL_UPDATING)
    assert mgr.destroy() is True
    assert pub.names == ["DESTROYING"]


def test_manager_without_a_bus_still_moves_and_tells_listeners() -> None:
    changes: list[tuple[State, State]] = []
    mgr = StateManager()
    remove = mgr.add_listener(lambda a, b: changes.append((a, b)))
    mgr.steps(State.INITIALIZED)
    remove()
    mgr.steps(State.DHCP)
    assert changes == [
        (State.CONTEXT_CREATED, State.PRE_PRIV_DROP),
        (State.PRE_PRIV_DROP, State.INITIALIZED),
    ]


def test_forced_destroy_survives_a_raising_notifier_and_bad_targets_are_named(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def broken(m: StateManager, link: NotifyLink, cur: State, tgt: State) -> int:
        if cur != tgt:
            raise RuntimeError("driver gone")
        return 0

    mgr = StateManager(Recorder(), notifiers=[("broken", broken)], initial=State.OPERATIONAL)
    with pytest.raises(NotifierError):
        mgr.destroy()
    assert mgr.destroy(force=True) is True
    assert mgr.state is State.CONTEXT_DESTROYING
    assert "a notifier raised during shutdown" in caplog.text
    with pytest.raises(ValueError, match="no system state numbered 42"):
        StateManager().transition(42)
    with pytest.raises(ValueError, match="publish_retry"):
        StateManager(publish_retry=0)
