"""SNTP packets (pure) and the TIME_VALID gate against a real UDP responder on 127.0.0.1."""

from __future__ import annotations

import asyncio
import struct
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from smdbus.daemon._gates import TimeGate
from smdbus.daemon._sntp import (
    NTP_UNIX_DELTA,
    PACKET_SIZE,
    NotOurAnswer,
    SntpError,
    build_request,
    build_response,
    from_ntp,
    parse_response,
    to_ntp,
)
from smdbus.daemon._timecheck import WallClock, sntp_query
from smdbus.scheduler import ManualScheduler
from smdbus.system import State, StateManager

FUTURE = 4_100_000_000.0  # 2099-12-03


def test_timestamps_round_trip_across_the_2036_wrap() -> None:
    assert to_ntp(0) == NTP_UNIX_DELTA << 32
    assert to_ntp(0.5) == (NTP_UNIX_DELTA << 32) | 0x80000000
    for unix in (0.0, 1_594_017_754.25, 2_085_978_495.0, 2_085_978_496.0, FUTURE):
        assert abs(from_ntp(to_ntp(unix)) - unix) < 1e-6
    # 2036-02-07 06:28:16 UTC: the seconds field wraps to 0
    assert to_ntp(2_085_978_496) >> 32 == 0


def test_request_is_a_48_byte_version_4_client_packet() -> None:
    req = build_request(1_700_000_000.0)
    assert len(req) == PACKET_SIZE
    assert req[0] == 0x23  # LI 0, VN 4, mode 3
    assert req[1:40] == bytes(39)
    assert struct.unpack("!Q", req[40:48])[0] == to_ntp(1_700_000_000.0)


def test_offset_and_delay_follow_rfc_4330() -> None:
    t1 = 1_000.0
    req = build_request(t1)
    # server 500 s ahead; 0.1 s each way; 0.01 s inside the server
    resp = build_response(req, receive_unix=t1 + 500.1, transmit_unix=t1 + 500.11)
    answer = parse_response(resp, req, t1 + 0.21)
    assert answer.stratum == 1 and answer.reference_id == "LOCL"
    assert answer.offset == pytest.approx(500.0, abs=1e-6)
    assert answer.delay == pytest.approx(0.2, abs=1e-6)
    assert answer.corrected == pytest.approx(t1 + 500.21, abs=1e-6)


def _tamper(resp: bytes, index: int, value: int) -> bytes:
    b = bytearray(resp)
    b[index] = value
    return bytes(b)


@pytest.mark.parametrize(
    ("change", "error", "words"),
    [
        (lambda r: r[:47], SntpError, "47 bytes"),
        (lambda r: _tamper(r, 0, 0x23), SntpError, "mode 3"),
        (lambda r: _tamper(r, 0, 0x0C), SntpError, "version 1"),
        (lambda r: _tamper(_tamper(r, 1, 0), 12, ord("R")), SntpError, "kiss-o'-death"),
        (lambda r: _tamper(r, 1, 16), SntpError, "stratum 16"),
        (lambda r: _tamper(r, 0, 0xE4), SntpError, "leap indicator 3"),
        (lambda r: r[:24] + bytes(8) + r[32:], NotOurAnswer, "not for our request"),
        (lambda r: r[:40] + bytes(8), SntpError, "no transmit timestamp"),
    ],
)
def test_answers_that_must_not_set_the_clock(
    change: Callable[[bytes], bytes], error: type[Exception], words: str
) -> None:
    req = build_request(1_000.0)
    resp = build_response(req, receive_unix=FUTURE, transmit_unix=FUTURE)
    with pytest.raises(error, match=words):
        parse_response(change(resp), req, 1_000.1)


class Responder(asyncio.DatagramProtocol):
    """An SNTP server on 127.0.0.1: ignores the first ``silent`` requests, can send a stray."""

    def __init__(self, silent: int = 0, stray_first: bool = False) -> None:
        self.silent = silent
        self.stray_first = stray_first
        self.requests = 0
        self.transport: Any = None

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.requests += 1
        if self.requests <= self.silent:
            return
        if self.stray_first:
            self.stray_first = False
            other = build_request(123.0)
            self.transport.sendto(build_response(other, receive_unix=1.0, transmit_unix=1.0), addr)
        self.transport.sendto(build_response(data, receive_unix=FUTURE, transmit_unix=FUTURE), addr)


async def _serve(proto: Responder) -> int:
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(lambda: proto, local_addr=("127.0.0.1", 0))
    port: int = transport.get_extra_info("sockname")[1]
    return port


@pytest.fixture
async def responder() -> AsyncIterator[tuple[Responder, int]]:
    proto = Responder()
    port = await _serve(proto)
    yield proto, port
    proto.transport.close()


async def test_query_a_real_udp_server(responder: tuple[Responder, int]) -> None:
    proto, port = responder
    answer = await sntp_query("127.0.0.1", port, timeout=2.0, now=lambda: 50.0)
    assert proto.requests == 1
    assert answer.sent == pytest.approx(50.0)
    assert answer.corrected == pytest.approx(FUTURE, abs=1e-3)


async def test_a_stray_answer_is_skipped_and_ours_is_taken() -> None:
    proto = Responder(stray_first=True)
    port = await _serve(proto)
    try:
        answer = await sntp_query("127.0.0.1", port, timeout=2.0)
        assert answer.transmit == pytest.approx(FUTURE, abs=1e-3)
    finally:
        proto.transport.close()


async def test_a_silent_server_times_out_with_a_clear_error() -> None:
    proto = Responder(silent=1)
    port = await _serve(proto)
    try:
        with pytest.raises(TimeoutError, match=f"no SNTP answer from 127.0.0.1:{port} within"):
            await sntp_query("127.0.0.1", port, timeout=0.2)
    finally:
        proto.transport.close()


def test_wall_clock_validity_and_set_clock_modes() -> None:
    now = [1_000.0]
    clock = WallClock(1_594_017_754, mode="process", now=lambda: now[0])
    assert not clock.valid()
    clock.set_clock(1_700_000_000_000_000)
    assert clock.valid() and clock.now() == pytest.approx(1_700_000_000.0)
    now[0] += 10
    assert clock.now() == pytest.approx(1_700_000_010.0)

    set_to: list[float] = []
    system = WallClock(0, mode="system", now=lambda: 5.0, settime=set_to.append)
    system.set_clock(7_000_000)
    assert set_to == [7.0] and system.offset == 0 and system.mode == "system"

    def refuse(t: float) -> None:
        raise PermissionError(1, "Operation not permitted")

    fallback = WallClock(0, mode="system", now=lambda: 5.0, settime=refuse)
    fallback.set_clock(7_000_000)
    assert fallback.mode == "process" and fallback.now() == pytest.approx(7.0)
    assert "Operation not permitted" in (fallback.fallback_reason or "")


async def test_time_gate_holds_until_sntp_answers_then_the_boot_goes_on() -> None:
    proto = Responder(silent=1)  # the first attempt fails: the gate retries
    port = await _serve(proto)
    clock = WallClock(4_000_000_000, mode="process", now=lambda: 1_000.0)
    notes: list[str] = []
    timers = ManualScheduler()
    gate = TimeGate(
        clock,
        clock.set_clock,
        lambda: "127.0.0.1",
        port=port,
        timeout=0.2,
        retry_interval=5.0,
        on_note=lambda level, text: notes.append(f"{level}: {text}"),
        scheduler=timers,
    )
    manager = StateManager(scheduler=timers)
    manager.register(gate, "time")
    try:
        assert manager.steps(State.OPERATIONAL) is False
        assert manager.state == State.CPD_PRE_TIME and manager.held_by is not None
        async with asyncio.timeout(5):
            while gate.last_error is None:  # the first query times out (a real 0.2 s)
                await asyncio.sleep(0.01)
            assert gate.attempts == 1 and timers.pending == 1
            timers.advance(5.0)  # the retry interval, on the manual clock
            await manager.wait_for(State.OPERATIONAL)
        assert clock.valid() and clock.now() == pytest.approx(FUTURE, abs=1e-3)
        assert gate.attempts == 2 and proto.requests == 2
        assert any("SNTP attempt 1 failed" in n for n in notes)
        assert any(n.startswith("info: clock set from 127.0.0.1 (stratum 1") for n in notes)
        # A valid clock passes at once next time (a POLICY_INVALID cycle).
        assert manager.policy_invalid() is True
    finally:
        await gate.aclose()
        proto.transport.close()
