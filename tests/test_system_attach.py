"""Attach: booked from any thread, run on the loop thread once, FIFO among ready items."""

from __future__ import annotations

import asyncio
import logging
import threading
from typing import Any

import pytest

from smdbus import Bus, Class
from smdbus.system import AttachClosed, AttachItem, AttachQueue, State, StateManager


async def settle(turns: int = 5) -> None:
    """Let the loop run what is already due (no time passes)."""
    for _ in range(turns):
        await asyncio.sleep(0)


async def test_eight_threads_mixed_states_each_fires_once_on_the_loop_fifo() -> None:
    loop = asyncio.get_running_loop()
    loop_thread = threading.get_ident()
    async with Bus() as bus:
        mgr = StateManager(bus)
        queue = AttachQueue(mgr, loop)
        targets = [State.CONTEXT_CREATED, State.DHCP, State.TIME_VALID, State.OPERATIONAL]
        fired: list[tuple[int, int, State]] = []  # (seq, thread id, state when run)
        items: list[AttachItem] = []
        items_lock = threading.Lock()
        barrier = threading.Barrier(8)

        def fire(opaque: Any) -> None:
            fired.append((opaque["item"].seq, threading.get_ident(), mgr.state))

        def worker(n: int) -> None:
            barrier.wait()
            for k in range(25):
                box: dict[str, AttachItem] = {}
                item = queue.attach(fire, targets[(n + k) % 4], box)
                box["item"] = item
                with items_lock:
                    items.append(item)

        threads = [threading.Thread(target=worker, args=(n,), name=f"w{n}") for n in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert fired == []  # nothing runs inside attach, nor before the loop turns
        assert len(queue.pending) == 200

        groups: list[list[int]] = []
        await settle()
        groups.append([s for s, _, _ in fired])
        for target in targets[1:]:
            before = len(fired)
            mgr.steps(target)
            await settle()
            groups.append([s for s, _, _ in fired[before:]])

    by_state = {st: sorted(i.seq for i in items if i.state == st) for st in targets}
    assert groups == [by_state[st] for st in targets]  # each group in attach order
    assert sorted(s for s, _, _ in fired) == list(range(200))  # each exactly once
    assert {tid for _, tid, _ in fired} == {loop_thread}
    seqs = {i.seq: i for i in items}
    assert all(st >= seqs[s].state for s, _, st in fired)
    assert {i.thread for i in items} == {f"w{n}" for n in range(8)}
    assert queue.ran == 200 and queue.pending == ()


async def test_attach_when_state_already_reached_runs_later_not_inline() -> None:
    mgr = StateManager(initial=State.OPERATIONAL)
    queue = AttachQueue(mgr, asyncio.get_running_loop())
    ran: list[str] = []
    queue.attach(ran.append, State.OPERATIONAL, "a")
    queue.attach(ran.append, State.DHCP, "b")
    assert ran == []
    await settle()
    assert ran == ["a", "b"]  # FIFO (C would run b first)


async def test_callback_attaching_again_waits_for_the_next_pass() -> None:
    mgr = StateManager(initial=State.OPERATIONAL)
    queue = AttachQueue(mgr, asyncio.get_running_loop())
    ran: list[str] = []

    def first(_: Any) -> None:
        ran.append("first")
        queue.attach(lambda _: ran.append("inner"), State.OPERATIONAL)
        ran.append("first done")

    queue.attach(first, State.OPERATIONAL)
    queue.attach(lambda _: ran.append("second"), State.OPERATIONAL)
    await settle()
    assert ran == ["first", "first done", "second", "inner"]


async def test_a_raising_callback_is_logged_and_others_still_run(
    caplog: pytest.LogCaptureFixture,
) -> None:
    mgr = StateManager(initial=State.OPERATIONAL)
    queue = AttachQueue(mgr, asyncio.get_running_loop())
    ran: list[int] = []

    def bad(_: Any) -> None:
        raise ValueError("boom")

    queue.attach(bad, State.OPERATIONAL)
    queue.attach(ran.append, State.OPERATIONAL, 7)
    await settle()
    assert ran == [7]
    assert "callback" in caplog.text and "bad" in caplog.text and "boom" in caplog.text


async def test_shutdown_reports_and_drops_pending_items(caplog: pytest.LogCaptureFixture) -> None:
    mgr = StateManager(initial=State.DHCP)
    queue = AttachQueue(mgr, asyncio.get_running_loop())
    ran: list[Any] = []

    def upload_metrics(opaque: Any) -> None:
        ran.append(opaque)

    def from_thread() -> None:
        queue.attach(upload_metrics, State.OPERATIONAL, "m")

    t = threading.Thread(target=from_thread, name="uploader")
    t.start()
    t.join()
    with caplog.at_level(logging.WARNING):
        mgr.destroy(force=True)
    await settle()
    assert ran == []
    assert queue.pending == ()
    assert "dropping" in caplog.text and "upload_metrics" in caplog.text
    assert "waiting for OPERATIONAL, attached from uploader" in caplog.text
    with pytest.raises(AttachClosed, match="shutting down"):
        queue.attach(upload_metrics, State.OPERATIONAL)
    assert queue.shutdown() == []


async def test_explicit_shutdown_returns_the_pending_items() -> None:
    mgr = StateManager(initial=State.CONTEXT_CREATED)
    queue = AttachQueue(mgr, asyncio.get_running_loop())
    a = queue.attach(print, State.OPERATIONAL, 1)
    b = queue.attach(print, State.AUTH1, 2)
    assert queue.shutdown() == [a, b]
    await settle()
    assert queue.ran == 0


async def test_attach_rejects_bad_arguments() -> None:
    queue = AttachQueue(StateManager(), asyncio.get_running_loop())
    with pytest.raises(TypeError, match="callable"):
        queue.attach("not callable", State.OPERATIONAL)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="numbered 42"):
        queue.attach(print, 42)


def test_attach_from_a_worker_onto_a_bus_running_its_own_loop_thread() -> None:
    bus = Bus()
    with bus.running():
        loop = bus.loop
        assert loop is not None
        done = threading.Event()
        seen: list[int] = []
        box: dict[str, object] = {}

        def setup() -> None:  # runs on the bus's loop thread
            mgr = StateManager(bus, initial=State.OPERATIONAL)
            box["queue"] = AttachQueue(mgr, loop)
            done.set()

        loop.call_soon_threadsafe(setup)
        assert done.wait(5)
        done.clear()
        queue = box["queue"]
        assert isinstance(queue, AttachQueue)

        def on_loop(_: Any) -> None:
            seen.append(threading.get_ident())
            bus.send(Class.NETWORK, b"ignored: nobody listens")
            done.set()

        queue.attach(on_loop, State.OPERATIONAL)
        assert done.wait(5)
        assert seen and seen[0] != threading.get_ident()


async def test_system_context_boots_attaches_answers_and_closes(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from smdbus.system import SystemContext, SystemOps

    got: list[bytes] = []
    async with Bus() as bus:
        bus.register(Class.SYSTEM_STATE, lambda c, t, p: got.append(bytes(p)), name="w")
        ctx = SystemContext(bus, ops=SystemOps(wake_latency_us=10))
        ran: list[str] = []
        ctx.attach(ran.append, State.OPERATIONAL, "early")
        late = ctx.attach(ran.append, State.MODAL_UPDATING, "never")
        assert ctx.boot() is True
        assert await ctx.wait_operational(5) is State.OPERATIONAL
        await settle()
        assert ran == ["early"]
        bus.send_json(Class.SYSTEM_STATE, {"query": "state"})
        await bus.drain()
        await bus.drain()
        assert b'{"current":"OPERATIONAL","n":15}' in got
        assert ctx.blobs.ntp_server() == "pool.ntp.org" and ctx.ops.wake_latency_us == 10
        assert ctx.close() == [late]
        assert ctx.state is State.CONTEXT_DESTROYING
        await bus.drain()
    assert got[-1] == b'{"state":"DESTROYING"}'
    assert "dropping" in caplog.text
