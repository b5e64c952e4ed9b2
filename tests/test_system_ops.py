"""Platform ops: optional hooks, clear errors when missing, trust queries answered later."""

from __future__ import annotations

import asyncio
import threading

import pytest

from smdbus.system import OTA_PERIODIC_CHECK_SECS, MissingOp, OtaOps, SystemOps, TrustQuery


def test_no_ops_at_all_is_valid_and_each_missing_op_names_itself() -> None:
    ops = SystemOps()
    assert ops.wake_latency_us == 0 and ops.ota.periodic_check_secs == 24 * 3600
    assert OTA_PERIODIC_CHECK_SECS == 86400
    with pytest.raises(MissingOp, match="'reboot' is not provided"):
        ops.reboot()
    with pytest.raises(MissingOp, match="'set_clock'"):
        ops.set_clock(1_700_000_000_000_000)
    with pytest.raises(MissingOp, match="'jit_trust_query'"):
        ops.jit_trust_query(b"\x01\x02")
    with pytest.raises(MissingOp, match="'captive_portal_detect_request'"):
        ops.captive_portal_detect_request()
    with pytest.raises(MissingOp, match=r"'ota\.queue'"):
        ops.ota.queue(b"chunk")
    with pytest.raises(MissingOp, match=r"'ota.start' is not provided \(needed by updater\)"):
        ops.require("ota.start", "updater")
    assert "none" in repr(ops)


def test_provided_ops_are_called_with_checked_arguments() -> None:
    calls: list[object] = []
    ops = SystemOps(
        reboot=lambda: calls.append("reboot"),
        set_clock=calls.append,
        captive_portal_detect_request=lambda: calls.append("cpd"),
        ota=OtaOps(
            start=lambda: calls.append("start"),
            queue=calls.append,
            report_current=calls.append,
            progress=lambda s, p: calls.append((s, p)),
            last_fw_unixtime=lambda: 1_600_000_000,
            periodic_check_secs=600,
        ),
        wake_latency_us=1500,
    )
    ops.reboot()
    ops.set_clock(1_700_000_000_123_456)
    ops.captive_portal_detect_request()
    ops.ota.start()
    ops.ota.queue(bytearray(b"img"))
    ops.ota.report_current(False)
    ops.ota.progress("writing", 40)
    assert ops.ota.last_fw_unixtime() == 1_600_000_000
    assert calls == [
        "reboot",
        1_700_000_000_123_456,
        "cpd",
        "start",
        b"img",
        False,
        ("writing", 40),
    ]
    assert ops.provides("reboot") and ops.provides("ota.progress")
    assert not ops.provides("jit_trust_query")
    ops.require("reboot", "watchdog")
    with pytest.raises(ValueError, match=r"0\.\.100"):
        ops.ota.progress("writing", 140)
    with pytest.raises(TypeError, match="integer Unix microseconds"):
        ops.set_clock(1.5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=">= 0"):
        ops.set_clock(-1)
    with pytest.raises(ValueError, match="wake_latency_us"):
        SystemOps(wake_latency_us=-5)
    with pytest.raises(ValueError, match="periodic_check_secs"):
        OtaOps(periodic_check_secs=0)


async def test_jit_trust_query_answered_later_from_another_thread() -> None:
    asked: list[TrustQuery] = []
    ops = SystemOps(jit_trust_query=asked.append)
    query = ops.jit_trust_query(bytes.fromhex("a1b2c3"))
    assert asked == [query] and not query.done
    assert "a1b2c3 pending" in repr(query)
    t = threading.Thread(target=query.answer, args=(b"\x30\x82DER",))
    t.start()
    assert await asyncio.wait_for(query.wait(), 5) == b"\x30\x82DER"
    t.join()
    with pytest.raises(RuntimeError, match="already answered"):
        query.answer(None)
    unknown = ops.jit_trust_query(b"\xff")
    unknown.answer(None)
    assert unknown.result(0) is None
    with pytest.raises(ValueError, match="non-empty"):
        TrustQuery(b"")
