"""Text from peers reaches no terminal raw: the monitor, peers, state and the live view."""

from __future__ import annotations

import io
import json
from collections.abc import AsyncIterator

from smdbus._escape import printable
from smdbus.commands._monitor import format_json
from smdbus.commands._peers import format_table
from smdbus.commands._state import report
from smdbus.daemon import LiveView
from smdbus.wire import RxPayload

HOSTILE = "ok\x1b[2J\x1b]0;owned\x07\r\u202eevil\u200b\n"


def _raw(text: str) -> bool:
    """True if any character a terminal would act on is still there."""
    return any(c in text for c in "\x1b\x07\r\u202e\u200b")


def test_printable_escapes_controls_and_bidi_and_keeps_letters() -> None:
    assert printable(HOSTILE) == "ok\\x1b[2J\\x1b]0;owned\\x07\\r\\u202eevil\\u200b\\n"
    assert printable("café ▸ 東京 · ok") == "café ▸ 東京 · ok"
    assert printable("a\nb\tc", keep_newlines=True) == "a\nb\\tc"


def test_peers_table_escapes_what_a_peer_named() -> None:
    peer = {"id": 1, "state": "closed", "streamtype": HOSTILE, "reason": f"bad name {HOSTILE}"}
    table = format_table([peer], {"address": "@x"})
    assert not _raw(table) and "\\x1b[2J" in table


async def test_state_escapes_an_unknown_state_name() -> None:
    async def messages() -> AsyncIterator[tuple[int, bytes]]:
        yield 1, json.dumps({"state": HOSTILE}).encode()

    out = io.StringIO()
    assert await report(messages(), watch=False, timeout=None, out=out) == 0
    assert not _raw(out.getvalue().rstrip("\n")) and "\\x1b" in out.getvalue()


def test_monitor_json_lines_are_ascii() -> None:
    line = format_json(RxPayload(1, 0, HOSTILE.encode()))
    assert line.isascii() and json.loads(line)["payload"] == HOSTILE


def test_live_view_escapes_payloads() -> None:
    out = io.StringIO()
    view = LiveView(out, tty=False, color=False, clock_us=lambda: 0)
    view.message(1 << 24, 0, HOSTILE.encode())
    button = json.dumps({"type": "button", "src": HOSTILE, "event": "click"}).encode()
    view.message(1, 0, button)
    assert not _raw(out.getvalue().replace("\n", "")) and out.getvalue().count("\n") == 2
