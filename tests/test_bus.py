"""The in-process bus against lws_smd's rules (docs/bus.md), point by point."""

from __future__ import annotations

import asyncio
import logging
import threading
import time

import pytest

from smdbus import Bus, Class, PayloadTooLarge, QueueFull, SmdError, user_class
from smdbus.classes import class_names, format_mask, parse_mask

Log = list[tuple[str, int, int, bytes]]


class FakeClock:
    """Monotonic microseconds that move only when a test says so."""

    def __init__(self, start_us: int = 1_000_000) -> None:
        self.now = start_us

    def __call__(self) -> int:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += int(seconds * 1_000_000)


def recorder(log: Log, name: str) -> object:
    def cb(cls: int, ts: int, payload: bytes) -> None:
        log.append((name, cls, ts, payload))

    return cb


def register(bus: Bus, mask: int, log: Log, name: str) -> object:
    return bus.register(mask, recorder(log, name), name=name)  # type: ignore[arg-type]


# -- classes -------------------------------------------------------------------


def test_class_bits_and_user_classes() -> None:
    assert (Class.INTERACTION, Class.SYSTEM_STATE, Class.NETWORK, Class.METRICS) == (1, 2, 4, 8)
    assert [user_class(n) for n in (0, 7)] == [1 << 24, 1 << 31]
    with pytest.raises(ValueError, match=r"0\.\.7"):
        user_class(8)
    assert class_names(Class.NETWORK | user_class(2) | (1 << 5)) == ["NETWORK", "BIT5", "USER2"]
    assert format_mask(0) == "0"
    assert parse_mask("interaction|user1") == 1 | (1 << 25)
    assert parse_mask("0x0e") == 0x0E
    with pytest.raises(ValueError, match="unknown class 'bogus'"):
        parse_mask("bogus")


# -- sending and refusal -----------------------------------------------------------


async def test_nobody_listens_is_refused_and_no_work_is_done() -> None:
    bus = Bus()
    async with bus:
        assert bus.send(Class.NETWORK, b"x") is False
        assert bus.printf(Class.NETWORK, "%d", 1) is False
        assert bus.send_json(Class.NETWORK, {"a": 1}) is False
        # no formatting happens either: a broken format is not even looked at
        assert bus.printf(Class.NETWORK, "%d %d", 1) is False
        assert bus.queue_length == 0
    assert bus.stats()[Class.NETWORK].refused_nobody_listens == 4


async def test_class_flows_once_somebody_registers() -> None:
    log: Log = []
    bus = Bus()
    async with bus:
        assert not bus.send(Class.NETWORK, b"before")
        register(bus, Class.NETWORK, log, "net")
        assert bus.send(Class.NETWORK, b"after")
        await bus.drain()
    assert [e[3] for e in log] == [b"after"]


async def test_delivery_is_never_inside_send_and_sender_gets_its_own() -> None:
    log: Log = []
    bus = Bus()
    sent_from_callback: list[bool] = []

    def echoing(cls: int, ts: int, payload: bytes) -> None:
        log.append(("echo", cls, ts, payload))
        if payload == b"ping":
            depth_before = len(log)
            sent_from_callback.append(bus.send(Class.INTERACTION, b"pong"))
            assert len(log) == depth_before  # no recursion: pong not delivered yet

    async with bus:
        bus.register(Class.INTERACTION, echoing, name="echo")
        bus.send(Class.INTERACTION, b"ping")
        assert log == []  # not inside send
        await bus.drain()
    assert [e[3] for e in log] == [b"ping", b"pong"]
    assert sent_from_callback == [True]


async def test_deferred_delivery_runs_in_the_callers_own_callback() -> None:
    """defer_delivery/deliver_now: the proxy's one loop pass per read (issue 17).

    Sends after defer_delivery schedule nothing; deliver_now delivers them before
    the caller returns, what callbacks send meanwhile included, without recursing.
    """
    got: list[bytes] = []
    bus = Bus()

    def echoing(cls: int, ts: int, payload: bytes) -> None:
        got.append(payload)
        if payload == b"ping":
            bus.send(Class.INTERACTION, b"pong")
            assert got[-1] == b"ping"  # still no delivery inside send
            bus.deliver_now()  # within a delivery: nothing, the running one takes it
            assert got[-1] == b"ping"

    assert not bus.defer_delivery()  # not bound: nothing to take on
    async with bus:
        bus.register(Class.INTERACTION, echoing, name="echo")
        loop = asyncio.get_running_loop()
        ready = loop._ready  # type: ignore[attr-defined]  # asyncio's: callbacks due this pass
        before = len(ready)
        assert bus.defer_delivery()
        bus.send(Class.INTERACTION, b"ping")
        assert len(ready) == before  # the send scheduled no delivery of its own
        assert got == []
        bus.deliver_now()
        assert got == [b"ping", b"pong"]
        assert bus.queue_length == 0
        # from another thread it refuses (the loop's thread delivers)
        other: list[bool] = []
        t = threading.Thread(target=lambda: other.append(bus.defer_delivery()))
        t.start()
        t.join()
        assert other == [False]
        bus.send(Class.INTERACTION, b"later")  # and sends wake the loop as before
        await bus.drain()
    assert got == [b"ping", b"pong", b"later"]


async def test_multi_bit_class_matches_any_bit() -> None:
    log: Log = []
    bus = Bus()
    async with bus:
        register(bus, Class.INTERACTION, log, "a")
        register(bus, Class.NETWORK, log, "b")
        register(bus, Class.METRICS, log, "c")
        bus.send(Class.INTERACTION | Class.NETWORK, b"both")
        await bus.drain()
    assert sorted(e[0] for e in log) == ["a", "b"]


async def test_payload_limit_is_384_and_errors_name_class_size_limit() -> None:
    bus = Bus()
    async with bus:
        bus.register(Class.INTERACTION, lambda c, t, p: None)
        assert bus.send(Class.INTERACTION, b"x" * 384)
        with pytest.raises(PayloadTooLarge) as err:
            bus.send(Class.INTERACTION, b"x" * 385)
        assert isinstance(err.value, SmdError)
        assert "385 bytes" in str(err.value) and "INTERACTION" in str(err.value)
        assert "384" in str(err.value)
        with pytest.raises(PayloadTooLarge):
            bus.printf(Class.INTERACTION, "%s", "y" * 400)
        await bus.drain()


async def test_printf_formats_like_c() -> None:
    log: Log = []
    bus = Bus()
    async with bus:
        register(bus, Class.NETWORK, log, "n")
        bus.printf(Class.NETWORK, '{"x":%d,"s":"%s","pc":"100%%"}', 7, "hi")
        bus.send_json(Class.NETWORK, {"state": "OPERATIONAL"})
        bus.send(Class.NETWORK, "text")
        await bus.drain()
    assert [e[3] for e in log] == [
        b'{"x":7,"s":"hi","pc":"100%"}',
        b'{"state":"OPERATIONAL"}',
        b"text",
    ]


async def test_timestamps_are_taken_at_allocation() -> None:
    clock = FakeClock()
    log: Log = []
    bus = Bus(clock=clock)
    async with bus:
        register(bus, Class.NETWORK, log, "n")
        bus.send(Class.NETWORK, b"a")
        clock.advance(0.5)
        bus.send(Class.NETWORK, b"b")
        clock.advance(0.25)
        await bus.drain()
    assert [e[2] for e in log] == [1_000_000, 1_500_000]


async def test_real_timestamps_are_monotonic_microseconds() -> None:
    log: Log = []
    bus = Bus()
    async with bus:
        register(bus, Class.NETWORK, log, "n")
        before = time.monotonic_ns() // 1000
        bus.send(Class.NETWORK, b"a")
        after = time.monotonic_ns() // 1000
        await bus.drain()
    assert before <= log[0][2] <= after


# -- queue depth and TTL ---------------------------------------------------------------


async def test_queue_full_at_depth_and_recovers_after_the_loop_runs() -> None:
    bus = Bus(queue_depth=40)
    got: list[bytes] = []
    async with bus:
        bus.register(Class.SYSTEM_STATE, lambda c, t, p: got.append(p))
        for i in range(40):
            assert bus.printf(Class.SYSTEM_STATE, "%d", i)
        with pytest.raises(QueueFull) as err:
            bus.send(Class.SYSTEM_STATE, b"41st")
        assert "40" in str(err.value) and "SYSTEM_STATE" in str(err.value)
        assert bus.queue_length == 40
        await bus.drain()
        assert bus.send(Class.SYSTEM_STATE, b"again")
        await bus.drain()
    assert len(got) == 41 and got[-1] == b"again"
    s = bus.stats()[Class.SYSTEM_STATE]
    assert (s.sent, s.refused_queue_full, s.delivered, s.queued) == (41, 1, 41, 0)


async def test_ttl_expires_old_messages_and_counts_them() -> None:
    clock = FakeClock()
    log: Log = []
    bus = Bus(ttl=2.0, clock=clock)
    register(bus, Class.NETWORK, log, "n")
    bus.send(Class.NETWORK, b"old")  # queued before any loop runs
    clock.advance(1.5)
    bus.send(Class.NETWORK, b"young")
    clock.advance(0.6)  # old is now 2.1 s old, young 0.6 s
    async with bus:
        await bus.drain()
    assert [e[3] for e in log] == [b"young"]
    s = bus.stats()[Class.NETWORK]
    assert (s.expired, s.delivered, s.sent) == (1, 1, 2)


def test_settings_are_validated() -> None:
    with pytest.raises(ValueError, match="queue_depth"):
        Bus(queue_depth=0)
    with pytest.raises(ValueError, match="ttl"):
        Bus(ttl=0)
    with pytest.raises(ValueError, match="mask"):
        Bus().register(0, lambda c, t, p: None)


# -- refcounts, late registrants, unregistering -------------------------------------


async def test_late_registrant_gets_already_queued_messages_it_matches() -> None:
    log: Log = []
    bus = Bus()
    register(bus, Class.NETWORK, log, "early")
    bus.send(Class.NETWORK, b"m1")
    register(bus, Class.NETWORK, log, "late")
    async with bus:
        await bus.drain()
    assert [(e[0], e[3]) for e in log] == [("early", b"m1"), ("late", b"m1")]


async def test_unregistered_participant_gives_up_its_share() -> None:
    log: Log = []
    bus = Bus()
    register(bus, Class.NETWORK, log, "stays")
    leaver = register(bus, Class.NETWORK, log, "leaves")
    bus.send(Class.NETWORK, b"m")
    bus.unregister(leaver)  # type: ignore[arg-type]
    async with bus:
        await bus.drain()
    assert [e[0] for e in log] == ["stays"]


async def test_message_whose_only_participant_left_is_discarded_for_good() -> None:
    log: Log = []
    bus = Bus()
    only = register(bus, Class.NETWORK, log, "only")
    bus.send(Class.NETWORK, b"orphan")
    bus.unregister(only)  # type: ignore[arg-type]
    register(bus, Class.NETWORK, log, "newcomer")  # C freed the message: never seen
    bus.send(Class.NETWORK, b"fresh")
    async with bus:
        await bus.drain()
    assert [(e[0], e[3]) for e in log] == [("newcomer", b"fresh")]
    assert bus.stats()[Class.NETWORK].discarded == 1


async def test_register_and_unregister_inside_callbacks() -> None:
    log: Log = []
    bus = Bus()
    holder: dict[str, object] = {}

    def first(cls: int, ts: int, payload: bytes) -> None:
        log.append(("first", cls, ts, payload))
        if payload == b"1":
            bus.unregister(holder["second"])  # type: ignore[arg-type]
            holder["third"] = register(bus, Class.NETWORK, log, "third")

    async with bus:
        bus.register(Class.NETWORK, first, name="first")
        holder["second"] = register(bus, Class.NETWORK, log, "second")
        bus.send(Class.NETWORK, b"1")
        bus.send(Class.NETWORK, b"2")
        await bus.drain()
    # second left during message 1, before its turn: it sees nothing;
    # third joined during message 1: it gets message 2, still queued then.
    assert [(e[0], e[3]) for e in log] == [("first", b"1"), ("first", b"2"), ("third", b"2")]


async def test_self_unregister_in_callback_stops_further_delivery() -> None:
    got: list[bytes] = []
    bus = Bus()
    holder: list[object] = []

    def once(cls: int, ts: int, payload: bytes) -> None:
        got.append(payload)
        bus.unregister(holder[0])  # type: ignore[arg-type]

    async with bus:
        holder.append(bus.register(Class.NETWORK, once))
        bus.register(Class.NETWORK, lambda c, t, p: None)
        for i in range(5):
            bus.printf(Class.NETWORK, "%d", i)
        await bus.drain()
    assert got == [b"0"]


async def test_a_callback_that_unregisters_then_sends_loses_nothing() -> None:
    """A discard must not fall on a later message (issue 10, 1): with mixed classes queued,
    "b" leaves inside its own callback and "a" keeps a chain of sends going."""
    got: list[bytes] = []
    bus = Bus()
    holder: list[object] = []

    def chain(cls: int, ts: int, payload: bytes) -> None:
        got.append(payload)
        n = int(payload)
        if n < 20:
            bus.printf(Class.NETWORK, "%d", n + 1)

    def leaver(cls: int, ts: int, payload: bytes) -> None:
        bus.unregister(holder[0])  # type: ignore[arg-type]

    async with bus:
        bus.register(Class.NETWORK, chain, name="a")
        holder.append(bus.register(Class.INTERACTION, leaver, name="b"))
        bus.send(Class.INTERACTION, b"x")
        bus.send(Class.NETWORK, b"0")
        bus.send(Class.INTERACTION, b"orphan")
        await bus.drain()
    assert got == [b"%d" % i for i in range(21)]
    net, interaction = bus.stats()[Class.NETWORK], bus.stats()[Class.INTERACTION]
    assert (net.sent, net.delivered, net.discarded) == (21, 21, 0)
    assert (interaction.sent, interaction.delivered, interaction.discarded) == (2, 1, 1)


async def test_registered_during_mixed_passes_gets_what_has_not_begun() -> None:
    log: Log = []
    bus = Bus()

    def joiner(cls: int, ts: int, payload: bytes) -> None:
        log.append(("first", cls, ts, payload))
        if payload == b"1":
            register(bus, Class.NETWORK, log, "late")

    async with bus:
        bus.register(Class.NETWORK, joiner, name="first")
        register(bus, Class.INTERACTION, log, "other")
        bus.send(Class.NETWORK, b"1")
        bus.send(Class.INTERACTION, b"i")  # mixed classes: C's passes
        bus.send(Class.NETWORK, b"2")
        await bus.drain()
    assert [(e[0], e[3]) for e in log] == [
        ("first", b"1"),
        ("other", b"i"),
        ("first", b"2"),
        ("late", b"2"),
    ]


# -- round robin -----------------------------------------------------------------


async def test_round_robin_one_message_per_participant_per_pass() -> None:
    log: Log = []
    bus = Bus()
    for name in ("a", "b", "c"):
        register(bus, Class.NETWORK, log, name)
    for i in range(3):
        bus.printf(Class.NETWORK, "%d", i)
    async with bus:
        await bus.drain()
    assert [(e[0], e[3]) for e in log] == [
        (n, str(i).encode()) for i in range(3) for n in ("a", "b", "c")
    ]


async def test_round_robin_with_mixed_classes_follows_c_passes() -> None:
    log: Log = []
    bus = Bus()
    register(bus, Class.NETWORK, log, "net")
    register(bus, Class.INTERACTION, log, "ui")
    register(bus, Class.NETWORK | Class.INTERACTION, log, "all")
    bus.send(Class.NETWORK, b"n1")
    bus.send(Class.NETWORK, b"n2")
    bus.send(Class.INTERACTION, b"i1")
    async with bus:
        await bus.drain()
    # pass 1: each participant's first message; pass 2: the next; ...
    assert [(e[0], e[3]) for e in log] == [
        ("net", b"n1"),
        ("ui", b"i1"),
        ("all", b"n1"),
        ("net", b"n2"),
        ("all", b"n2"),
        ("all", b"i1"),
    ]


# -- forwarding ----------------------------------------------------------------------


async def test_forward_keeps_timestamp_and_skips_the_forwarder() -> None:
    log: Log = []
    bus = Bus()
    bridge = register(bus, Class.NETWORK, log, "bridge")
    register(bus, Class.NETWORK, log, "local")
    origin = time.monotonic_ns() // 1000 - 1500  # stamped 1.5 ms ago by another process
    async with bus:
        assert bus.forward(Class.NETWORK, origin, b"remote", exclude=bridge)  # type: ignore[arg-type]
        await bus.drain()
    assert [(e[0], e[2], e[3]) for e in log] == [("local", origin, b"remote")]


async def test_forwarded_message_older_than_ttl_expires() -> None:
    log: Log = []
    bus = Bus()
    register(bus, Class.NETWORK, log, "local")
    async with bus:
        assert bus.forward(Class.NETWORK, 42, b"ancient")
        await bus.drain()
    assert log == [] and bus.stats()[Class.NETWORK].expired == 1


async def test_forward_nobody_else_listens_is_refused() -> None:
    log: Log = []
    bus = Bus()
    bridge = register(bus, Class.NETWORK, log, "bridge")
    async with bus:
        assert not bus.forward(Class.NETWORK, 42, b"x", exclude=bridge)  # type: ignore[arg-type]
        await bus.drain()
    assert log == []


# -- failing callbacks ----------------------------------------------------------------


async def test_callback_that_raises_is_logged_by_name_and_others_still_get_it(
    caplog: pytest.LogCaptureFixture,
) -> None:
    log: Log = []
    bus = Bus()

    def broken(cls: int, ts: int, payload: bytes) -> None:
        raise RuntimeError("boom")

    async with bus:
        bus.register(Class.NETWORK, broken, name="broken-one")
        register(bus, Class.NETWORK, log, "fine")
        with caplog.at_level(logging.ERROR, logger="smdbus.bus"):
            bus.send(Class.NETWORK, b"a")
            bus.send(Class.NETWORK, b"b")
            await bus.drain()
    assert [e[3] for e in log] == [b"a", b"b"]
    assert "broken-one" in caplog.text and "boom" in caplog.text


async def test_a_failing_when_room_waiter_does_not_drop_the_others(
    caplog: pytest.LogCaptureFixture,
) -> None:
    woken: list[str] = []
    bus = Bus()

    def broken_waiter() -> None:
        raise RuntimeError("waiter boom")

    async with bus:
        bus.register(Class.NETWORK, lambda c, t, p: None)
        bus.send(Class.NETWORK, b"x")
        bus.when_room(lambda: woken.append("before"))
        bus.when_room(broken_waiter)
        bus.when_room(lambda: woken.append("after"))
        with caplog.at_level(logging.ERROR, logger="smdbus.bus"):
            await bus.drain()
    assert woken == ["before", "after"]
    assert "broken_waiter" in caplog.text and "waiter boom" in caplog.text


# -- bounds ----------------------------------------------------------------------------


async def test_counters_stay_bounded_whatever_the_class_values() -> None:
    """A peer picks the class value (64 bits on the wire): 100 000 distinct values must
    not mean 100 000 counter rows or cached callback lists (issue 10, 6)."""
    from smdbus import bus as bus_module

    bound = getattr(bus_module, "MAX_CLASS_ROWS", 128)
    other_key = getattr(bus_module, "OTHER_CLASSES", -1)
    n = 100_000
    bus = Bus(queue_depth=1000)
    async with bus:
        bus.register((1 << 64) - 1, lambda c, t, p: None, name="all")
        for bit in range(64):  # every single-bit class keeps its own row
            bus.send(1 << bit, b"b")
        for i in range(n):
            bus.send(3 + (i << 2), b"m")  # two bits or more: a distinct multi-bit value
            bus.send(1 << 64 | i << 65, b"r")  # no bit below 64: refused, nobody listens
            if bus.queue_length >= 999:
                await bus.drain()
        await bus.drain()
    assert len(bus._fan) <= 128
    stats = bus.stats()
    assert len(stats) <= 64 + bound + 1
    other = stats[other_key]
    assert other.sent + other.refused_nobody_listens >= 2 * n - bound
    assert sum(s.sent for s in stats.values()) == 64 + n
    assert sum(s.delivered for s in stats.values()) == 64 + n
    assert sum(s.refused_nobody_listens for s in stats.values()) == n
    assert bus.folded_mask & 0b11 == 0b11 and bus.folded_mask < 1 << 20
    assert "other classes" in bus.describe()


# -- threads ---------------------------------------------------------------------------


def test_running_gives_a_loop_thread_and_threads_can_send() -> None:
    bus = Bus()
    seen: list[tuple[bytes, int]] = []
    with bus.running():
        bus.register(Class.INTERACTION, lambda c, t, p: seen.append((p, threading.get_ident())))
        senders = [
            threading.Thread(target=lambda i=i: bus.printf(Class.INTERACTION, "t%d", i))
            for i in range(4)
        ]
        for t in senders:
            t.start()
        for t in senders:
            t.join()
        bus.drain_sync(timeout=5)
        loop_thread = bus._loop_thread
    assert sorted(p for p, _ in seen) == [b"t0", b"t1", b"t2", b"t3"]
    assert {tid for _, tid in seen} == {loop_thread}
    assert loop_thread != threading.get_ident()


async def test_introspection_lists_participants_and_counters() -> None:
    bus = Bus()
    async with bus:
        bus.register(Class.NETWORK | user_class(0), lambda c, t, p: None, name="watcher")
        bus.send(Class.NETWORK, b"x")
        bus.send(Class.METRICS, b"nobody")
        await bus.drain()
        assert [(p.name, p.mask) for p in bus.participants()] == [
            ("watcher", Class.NETWORK | user_class(0))
        ]
        text = bus.describe()
    assert "watcher" in text and "NETWORK|USER0" in text
    assert "NETWORK: sent 1, delivered 1" in text and "METRICS: sent 0" in text


async def test_drain_with_nothing_queued_returns_and_unbound_bus_says_why() -> None:
    bus = Bus()
    with pytest.raises(RuntimeError, match="not bound"):
        await bus.drain()
    async with bus:
        await asyncio.wait_for(bus.drain(), 1)


async def test_printf_gives_the_same_bytes_whatever_the_argument_types() -> None:
    log: Log = []
    bus = Bus()
    async with bus:
        register(bus, Class.NETWORK, log, "n")
        fmt = '{"n":%d,"s":"%s","x":"%x"}'
        bus.printf(Class.NETWORK, fmt, 1, b"raw", 255)  # bytes formatting
        bus.printf(Class.NETWORK, fmt, 2, "text", 255)  # str argument: falls back
        bus.printf(Class.NETWORK, fmt, 3, b"raw", 255)  # still raw bytes after the fallback
        bus.printf(Class.NETWORK, '{"é":"%s"}', "ü")  # a non-ASCII format
        bus.printf(Class.NETWORK, "%s", 5)
        await bus.drain()
    assert [e[3] for e in log] == [
        b'{"n":1,"s":"raw","x":"ff"}',
        b'{"n":2,"s":"text","x":"ff"}',
        b'{"n":3,"s":"raw","x":"ff"}',
        '{"é":"ü"}'.encode(),
        b"5",
    ]


def test_printf_format_errors_are_the_callers() -> None:
    bus = Bus()
    bus.register(Class.NETWORK, lambda c, t, p: None)
    with pytest.raises(TypeError):
        bus.printf(Class.NETWORK, "%d %d", 1)
    assert bus.queue_length == 0


# -- a BaseException from a callback ------------------------------------------------------
# KeyboardInterrupt, SystemExit: not Exceptions, so not logged and swallowed. They go
# through, and the bus must deliver afterwards, what they interrupted included.


def _interrupting(got: list[bytes], exc: BaseException) -> object:
    """A callback that raises ``exc`` the first time it is given b"stop"."""
    raised: list[bool] = []

    def cb(cls: int, ts: int, payload: bytes) -> None:
        got.append(payload)
        if payload == b"stop" and not raised:
            raised.append(True)
            raise exc

    return cb


def _one_pass(loop: asyncio.AbstractEventLoop) -> None:
    """Run the callbacks due now (those scheduled before this call), then return."""
    loop.call_soon(loop.stop)
    loop.run_forever()


def test_keyboard_interrupt_in_a_callback_leaves_delivery_running() -> None:
    got: list[bytes] = []
    bus = Bus()
    loop = asyncio.new_event_loop()
    try:
        bus.bind(loop)
        bus.register(Class.NETWORK, _interrupting(got, KeyboardInterrupt()), name="ki")  # type: ignore[arg-type]
        for m in (b"a", b"stop", b"c"):
            bus.send(Class.NETWORK, m)
        with pytest.raises(KeyboardInterrupt):
            _one_pass(loop)
        assert got == [b"a", b"stop"]
        assert bus.queue_length == 2  # b"stop" (in hand) and b"c": nothing lost
        _one_pass(loop)  # delivery was scheduled again
        assert got == [b"a", b"stop", b"stop", b"c"]
        bus.send(Class.NETWORK, b"d")  # and sends wake the loop again
        _one_pass(loop)
        assert got[-1] == b"d" and bus.queue_length == 0
    finally:
        bus.unbind()
        loop.close()


def test_system_exit_in_deferred_delivery_leaves_delivery_running() -> None:
    got: list[bytes] = []
    bus = Bus()
    loop = asyncio.new_event_loop()

    def reading() -> None:  # as the proxy does per read of a socket
        assert bus.defer_delivery()
        try:
            for m in (b"a", b"stop", b"c"):
                bus.send(Class.NETWORK, m)
        finally:
            bus.deliver_now()

    try:
        bus.bind(loop)
        bus.register(Class.NETWORK, _interrupting(got, SystemExit(3)), name="exits")  # type: ignore[arg-type]
        loop.call_soon(reading)
        with pytest.raises(SystemExit):
            _one_pass(loop)
        assert got == [b"a", b"stop"]
        _one_pass(loop)
        assert got == [b"a", b"stop", b"stop", b"c"] and bus.queue_length == 0
    finally:
        bus.unbind()
        loop.close()


def test_base_exception_in_c_passes_on_a_host_loop_leaves_delivery_running() -> None:
    """Mixed classes (C's passes), bound to a host loop: the descriptor stays readable."""
    import select

    got: list[bytes] = []
    other: list[bytes] = []
    bus = Bus()
    fd = bus.fileno()
    try:
        bus.register(Class.NETWORK, _interrupting(got, KeyboardInterrupt()), name="ki")  # type: ignore[arg-type]
        bus.register(Class.INTERACTION, lambda c, t, p: other.append(p), name="other")
        bus.send(Class.NETWORK, b"a")
        bus.send(Class.INTERACTION, b"x")
        bus.send(Class.NETWORK, b"stop")
        bus.send(Class.INTERACTION, b"y")
        with pytest.raises(KeyboardInterrupt):
            bus.service()
        assert bus.queue_length == 4  # the round stays queued until it ends
        assert select.select([fd], [], [], 0)[0] == [fd]  # due again
        bus.service()
        assert b"stop" in got[2:] and other[-1] == b"y" and bus.queue_length == 0
        bus.send(Class.NETWORK, b"later")
        assert select.select([fd], [], [], 0)[0] == [fd]
        bus.service()
        assert got[-1] == b"later"
    finally:
        bus.unbind()
