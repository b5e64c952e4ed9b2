"""The live view: what messages mean (pure), plain lines off a terminal, a footer on one."""

from __future__ import annotations

import io
import logging
import re
import sys

import pytest

from smdbus.classes import Class, user_class
from smdbus.daemon._live import LiveView, Status, describe, fold, progress, strip_ansi


@pytest.mark.parametrize(
    ("cls", "payload", "tag", "text", "style"),
    [
        (Class.SYSTEM_STATE, b'{"state":"DHCP"}', "state", "▸ DHCP", "state"),
        (Class.SYSTEM_STATE, b'{"state":"OPERATIONAL"}', "state", "▸ OPERATIONAL", "ok"),
        (Class.SYSTEM_STATE, b'{"state":"POLICY_INVALID"}', "state", "▸ POLICY_INVALID", "warn"),
        (Class.SYSTEM_STATE, b'{"state":"DESTROYING"}', "state", "▸ DESTROYING", "bad"),
        (
            Class.SYSTEM_STATE,
            b'{"query":"state"}',
            "state",
            "someone asked for the current state",
            "dim",
        ),
        (
            Class.NETWORK,
            b'{"type":"cpd","result":"OK"}',
            "cpd",
            "captive portal detection: OK",
            "ok",
        ),
        (
            Class.NETWORK,
            b'{"type":"cpd","result":"Captive"}',
            "cpd",
            "captive portal detection: Captive",
            "warn",
        ),
        (
            Class.NETWORK,
            b'{"type":"cpd","result":"No internet"}',
            "cpd",
            "captive portal detection: No internet",
            "bad",
        ),
        (Class.NETWORK, b'{"rt":"add"}', "route", "route added", "blue"),
        (Class.NETWORK, b'{"rt":"del"}', "route", "route removed", "blue"),
        (
            Class.NETWORK,
            b'{"trigger":"cpdcheck","src":"gw-change"}',
            "cpd",
            "check requested (gw-change)",
            "dim",
        ),
        (
            Class.INTERACTION,
            b'{"type":"button","src":"bc/user","event":"click"}',
            "button",
            "bc/user click",
            "magenta",
        ),
        (Class.INTERACTION, b'{"hello":1}', "interact", '{"hello":1}', ""),
        (user_class(2), b"raw bytes \xff", "user2", "raw bytes \ufffd", ""),
    ],
)
def test_describe(cls: int, payload: bytes, tag: str, text: str, style: str) -> None:
    line = describe(cls, payload)
    assert (line.tag, line.text, line.style) == (tag, text, style)


def test_describe_does_not_mistake_other_classes() -> None:
    # a NETWORK message shaped like a state announcement is not a state
    assert describe(Class.NETWORK, b'{"state":"DHCP"}').tag == "network"


def _view(tty: bool, width: int = 80, **kw: object) -> tuple[LiveView, io.StringIO, list[int]]:
    out = io.StringIO()
    clock = [1_000_000]
    view = LiveView(
        out,
        tty=tty,
        hints=["smd monitor", "smd send INTERACTION '{\"hello\":1}'"],
        clock_us=lambda: clock[0],
        width=lambda: width,
        **kw,  # type: ignore[arg-type]
    )
    return view, out, clock


def test_plain_lines_without_a_terminal() -> None:
    view, out, _ = _view(tty=False)
    view.banner(["smd daemon · pid 1", "config x"])
    view.message(Class.SYSTEM_STATE, 1_250_000, b'{"state":"DHCP"}')
    view.note("warning", "DHCP: no usable address", 1_500_000)
    view.message(Class.SYSTEM_STATE, 2_000_000, b'{"state":"OPERATIONAL"}')
    view.message(Class.SYSTEM_STATE, 3_000_000, b'{"state":"POLICY_INVALID"}')
    view.message(Class.SYSTEM_STATE, 4_000_000, b'{"state":"OPERATIONAL"}')
    view.close()
    text = out.getvalue()
    assert "\x1b" not in text
    lines = text.splitlines()
    assert lines[0] == "smd daemon · pid 1"
    assert lines[3] == "   +0.250s  state    ▸ DHCP"
    assert lines[4] == "   +0.500s  warn     DHCP: no usable address"
    assert lines[5] == "   +1.000s  state    ▸ OPERATIONAL"
    assert lines[6:8] == ["  smd monitor", "  smd send INTERACTION '{\"hello\":1}'"]
    assert text.count("smd monitor") == 1, "the hints are printed once"


class Screen:
    """Just enough of a terminal for the view: text, CR, LF, cursor up, erase below."""

    def __init__(self) -> None:
        self.rows: list[str] = [""]
        self.row = self.col = 0

    def feed(self, data: str) -> None:
        i = 0
        while i < len(data):
            m = re.match(r"\x1b\[([0-9;]*)([A-Za-z])", data[i:])
            if m:
                arg, cmd = m.groups()
                if cmd == "A":
                    self.row -= int(arg or 1)
                elif cmd == "J":
                    del self.rows[self.row + 1 :]
                    self.rows[self.row] = self.rows[self.row][: self.col]
                i += len(m.group(0))
                continue
            c = data[i]
            if c == "\r":
                self.col = 0
            elif c == "\n":
                self.row += 1
                self.col = 0
                if self.row == len(self.rows):
                    self.rows.append("")
            else:
                r = self.rows[self.row].ljust(self.col)
                self.rows[self.row] = r[: self.col] + c + r[self.col + 1 :]
                self.col += 1
            i += 1


def test_footer_stays_at_the_bottom_on_a_terminal() -> None:
    status = Status(state="DHCP", held_by="dhcp", cpd="Unknown", routes=3, clients=1)
    view, out, _ = _view(tty=True, color=True, status=lambda: status)
    view.banner(["smd daemon"])
    view.message(Class.SYSTEM_STATE, 1_100_000, b'{"state":"IFACE_COLDPLUG"}')
    view.message(Class.SYSTEM_STATE, 1_200_000, b'{"state":"DHCP"}')
    status.state, status.held_by, status.cpd, status.boot_seconds = "OPERATIONAL", None, "OK", 0.84
    view.message(Class.SYSTEM_STATE, 1_300_000, b'{"state":"OPERATIONAL"}')
    view.refresh()
    screen = Screen()
    screen.feed(out.getvalue())
    rows = [strip_ansi(r) for r in screen.rows]
    assert rows[0] == "smd daemon"
    assert rows[2].endswith("▸ IFACE_COLDPLUG") and rows[4].endswith("▸ OPERATIONAL")
    assert rows[5].startswith("─")
    assert rows[6] == " ● OPERATIONAL  ·  boot 0.84 s  ·  CPD OK  ·  3 routes  ·  1 client"
    assert rows[7:] == [" smd monitor", " smd send INTERACTION '{\"hello\":1}'"]
    assert all(len(r) <= 80 for r in rows[5:]), "the footer fits the terminal width"
    assert "\x1b[1;32m" in out.getvalue()  # OPERATIONAL in bold green


def test_a_narrow_terminal_gets_a_shorter_status_line() -> None:
    status = Status(state="OPERATIONAL", cpd="OK", routes=3, clients=1, boot_seconds=0.84)
    view, _, _ = _view(tty=True, width=40, color=False, status=lambda: status)
    lines = view.footer_lines()
    assert lines[1] == " ● OPERATIONAL  ·  boot 0.84 s"
    assert all(len(x) <= 40 for x in lines)


def test_footer_shows_who_holds_the_boot() -> None:
    status = Status(state="DHCP", held_by="dhcp", cpd="checking")
    view, _, _ = _view(tty=True, color=False, status=lambda: status)
    assert view.footer_lines()[1].startswith(" ● DHCP  ·  held by dhcp  ·  CPD checking")


def test_close_erases_the_footer() -> None:
    view, out, _ = _view(tty=True, color=False)
    view.note("info", "hello", 1_000_000)
    view.close()
    screen = Screen()
    screen.feed(out.getvalue())
    assert [r for r in screen.rows if r] == ["   +0.000s  daemon   hello"]


def test_progress() -> None:
    assert progress("CONTEXT_CREATED") == "0/14"
    assert progress("OPERATIONAL") == "14/14"
    assert progress("POLICY_INVALID") == ""


def test_the_daemons_hints_fit_80_columns_without_being_cut(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """As `make run` shows them (``.venv/bin/smd ...``, a socket of its own): folded, not cut."""
    from smdbus.commands._daemon import _make_view
    from smdbus.daemon import parse_config

    monkeypatch.setattr(sys, "argv", [".venv/bin/smd", "daemon", "--live"])
    config = parse_config('[bus]\nsocket = "/run/smd/proxy.sock"\n')
    hints = _make_view(config).hints
    status = Status("OPERATIONAL", None, "No internet", 12, 1, 1234, 12.5)
    view, _, _ = _view(tty=True, color=False, width=80, status=lambda: status)
    view.hints = hints
    lines = view.footer_lines()
    assert all(len(line) <= 80 for line in lines), lines
    assert not any("…" in line for line in lines), lines
    text = " ".join(lines)
    for needed in ("monitor --socket", "INTERACTION", "state", "peers", "Ctrl-C stops"):
        assert needed in text
    assert "·  1 client  ·" in lines[1] or lines[1].endswith("1 client")


def test_fold_breaks_at_separators() -> None:
    assert fold("a · b · c", 20) == ["a · b · c"]
    assert fold("aaaa   ·   bbbb   ·   cc", 13) == ["aaaa", "bbbb   ·   cc"]
    assert fold("x" * 30, 10) == ["x" * 30]  # the caller cuts what cannot fold


def test_the_live_view_shows_cpd_progress_and_leaves_its_result_to_the_daemons_note() -> None:
    """``smd daemon --live`` picks the detector's records by logger name, not by wording."""
    from smdbus.commands._daemon import _ViewHandler
    from smdbus.net import CPD_LOGGER, CPD_RESULT_LOGGER

    class Notes:
        def __init__(self) -> None:
            self.notes: list[tuple[str, str]] = []

        def note(self, level: str, text: str) -> None:
            self.notes.append((level, text))

    notes = Notes()
    handler = _ViewHandler(notes)  # type: ignore[arg-type]

    def record(name: str, level: int, msg: str) -> logging.LogRecord:
        return logging.LogRecord(name, level, __file__, 1, msg, None, None)

    handler.emit(record(CPD_LOGGER, logging.INFO, "cpd: check 1 (boot) of http://x/"))
    handler.emit(record(CPD_RESULT_LOGGER, logging.INFO, "cpd: OK after 1 probe(s): 204"))
    handler.emit(record(CPD_RESULT_LOGGER, logging.WARNING, "cpd: result listener raised"))
    handler.emit(record("smdbus.proxy", logging.INFO, "a proxy detail"))
    assert notes.notes == [
        ("info", "cpd: check 1 (boot) of http://x/"),
        ("warning", f"{CPD_RESULT_LOGGER}: cpd: result listener raised"),
    ]
