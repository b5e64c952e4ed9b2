"""The client's sans-IO parts: the outbox (bounds, partial writes, rewind) and the echo filter."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from smdbus.client._echo import EchoFilter
from smdbus.client._outbox import Outbox
from smdbus.wire import Decoder, Role, TxPayload, tx_payload_frame


def frame(i: int) -> bytes:
    return tx_payload_frame(4, i, b"body-%d" % i, 0)


def test_bounds_by_count_and_bytes() -> None:
    ob = Outbox(max_messages=2, max_bytes=10_000)
    assert ob.room_for(10)
    ob.put(frame(0))
    ob.put(frame(1))
    assert not ob.room_for(1)
    ob2 = Outbox(max_messages=100, max_bytes=len(frame(0)) + 5)
    ob2.put(frame(0))
    assert not ob2.room_for(len(frame(1)))


def test_partial_write_then_rewind_resends_the_cut_frame_whole() -> None:
    ob = Outbox(100, 100_000)
    for i in range(3):
        ob.put(frame(i), key=(4, b"body-%d" % i, False) if i != 1 else None)
    first = len(frame(0))
    keys = ob.written(first + 5)  # frame 0 whole, 5 bytes of frame 1
    assert keys == [(4, b"body-0", False)]
    assert ob.count == 2
    ob.rewind()  # connection died with frame 1 cut
    events = list(Decoder(Role.PROXY).feed(bytes(ob.data())))
    assert [e.timestamp_us for e in events if isinstance(e, TxPayload)] == [1, 2]


def test_everything_written_at_once() -> None:
    ob = Outbox(100, 100_000)
    for i in range(4):
        ob.put(frame(i), key=(4, b"%d" % i, False))
    keys = ob.written(len(bytes(ob.data())))
    assert keys == [(4, b"%d" % i, False) for i in range(4)]
    assert (ob.count, ob.nbytes) == (0, 0)


@given(st.lists(st.integers(min_value=0, max_value=200), min_size=1, max_size=30), st.data())
def test_any_write_pattern_delivers_each_frame_once(sizes: list[int], data: st.DataObject) -> None:
    """Whatever the kernel takes and wherever the connection dies: whole frames, in order."""
    ob = Outbox(1000, 1_000_000)
    for i, size in enumerate(sizes):
        ob.put(tx_payload_frame(4, i, bytes(size), 0))
    wire = bytearray()  # what the proxy received whole, across connections
    conn = bytearray()
    while ob.count:
        chunk = bytes(ob.data())
        n = data.draw(st.integers(min_value=1, max_value=len(chunk)))
        conn += chunk[:n]
        ob.written(n)
        if data.draw(st.booleans()):  # the connection dies: only whole frames counted
            dec = Decoder(Role.PROXY)
            whole = [e for e in dec.feed(bytes(conn)) if isinstance(e, TxPayload)]
            wire += b"".join(tx_payload_frame(e.cls, e.timestamp_us, e.payload, 0) for e in whole)
            conn.clear()
            ob.rewind()
    wire += conn
    got = [
        e.timestamp_us for e in Decoder(Role.PROXY).feed(bytes(wire)) if isinstance(e, TxPayload)
    ]
    assert got == list(range(len(sizes)))


def test_long_run_of_partial_writes_keeps_count_keys_and_order() -> None:
    """Thousands of frames taken a few hundred bytes at a time (the bookkeeping compacts)."""
    ob = Outbox(10_000, 10_000_000)
    n = 5000
    for i in range(n):
        ob.put(frame(i), key=(4, b"body-%d" % i, False) if i % 7 == 0 else None)
    sent = bytearray()
    keys: list[tuple[int, bytes, bool]] = []
    counts = []
    while ob.count:
        chunk = bytes(ob.data())[:777]
        sent += chunk
        keys += ob.written(len(chunk))
        counts.append(ob.count)
    assert counts == sorted(counts, reverse=True) and ob.nbytes == 0
    got = [
        e.timestamp_us for e in Decoder(Role.PROXY).feed(bytes(sent)) if isinstance(e, TxPayload)
    ]
    assert got == list(range(n))
    assert keys == [(4, b"body-%d" % i, False) for i in range(0, n, 7)]
    ob.put(frame(n))  # and it goes on after being emptied
    after = [ob.count]  # a list: mypy would narrow ob.count across separate asserts
    assert ob.written(len(frame(n))) == []
    after.append(ob.count)
    assert after == [1, 0]


class FakeClock:
    def __init__(self) -> None:
        self.now = 0

    def __call__(self) -> int:
        return self.now


def test_echo_used_up_once() -> None:
    clock = FakeClock()
    f = EchoFilter(ttl_us=1_000_000, max_pending=100, clock=clock)
    f.expect((4, b"a"))
    f.expect((4, b"a"))
    assert not f.is_echo((4, b"b"))
    assert not f.is_echo((8, b"a"))
    assert f.is_echo((4, b"a"))
    assert f.is_echo((4, b"a"))
    assert not f.is_echo((4, b"a"))
    assert f.suppressed == 2


def test_echo_expires_after_ttl_without_eating_newer_ones() -> None:
    clock = FakeClock()
    f = EchoFilter(ttl_us=1000, max_pending=100, clock=clock)
    f.expect((4, b"a"))  # t=0: its echo never comes (dropped by a proxy)
    clock.now = 900
    f.expect((4, b"a"))  # t=900
    clock.now = 1500  # the first expired, the second not
    assert f.is_echo((4, b"a"))
    assert not f.is_echo((4, b"a"))


def test_consumed_echo_is_not_expired_twice() -> None:
    clock = FakeClock()
    f = EchoFilter(ttl_us=1000, max_pending=100, clock=clock)
    f.expect((4, b"a"))  # t=0
    assert f.is_echo((4, b"a"))  # used up
    clock.now = 500
    f.expect((4, b"a"))  # t=500
    clock.now = 1200  # the t=0 entry expires: it must not take the t=500 one with it
    assert f.is_echo((4, b"a"))


def test_bounded_number_of_expectations() -> None:
    f = EchoFilter(ttl_us=10**9, max_pending=3, clock=FakeClock())
    for i in range(5):
        f.expect((4, b"%d" % i))
    assert len(f) == 3
    assert not f.is_echo((4, b"0"))
    assert f.is_echo((4, b"4"))


def test_clear_forgets_everything() -> None:
    f = EchoFilter(ttl_us=10**9, max_pending=10, clock=FakeClock())
    f.expect((4, b"x"))
    f.clear()
    assert not f.is_echo((4, b"x"))


def test_classes_held_is_the_union_of_the_unsent_frames() -> None:
    ob = Outbox(100, 100_000)
    assert ob.classes() == 0
    for cls in (4, 8, 4, 1 << 24):
        ob.put(tx_payload_frame(cls, 0, b"x", 0))
    assert ob.classes() == 4 | 8 | 1 << 24
    ob.written(len(tx_payload_frame(4, 0, b"x", 0)) + 3)  # the first whole, 3 bytes of the next
    assert ob.classes() == 4 | 8 | 1 << 24  # the cut frame (8) is still held
    ob.written(len(bytes(ob.data())))
    assert ob.classes() == 0
