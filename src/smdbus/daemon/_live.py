"""The live view (``smd daemon --live``): the bus as it happens, in a terminal.

Rules
-----
- What a message *says* is decided by :func:`describe`, a pure function of
  the class and the payload; the view only lays lines out. Everything shown
  comes from the bus (what any client would see) or from the daemon's notes
  (what only the daemon knows: why a gate holds, where the clock came from).
- Plain ANSI escape codes, no curses. On a terminal the view keeps a footer
  at the bottom (the current state, the CPD result, counters, and how to
  talk to the bus from another terminal) and prints events above it. When
  stdout is not a terminal (a pipe, a log file, a test) every event is one
  plain line and the footer is printed once, as lines, when OPERATIONAL is
  reached. ``NO_COLOR`` turns colours off.
- **The daemon trusts itself.** Under the daemon the ``▸ STATE`` lines come
  from its own state manager (:meth:`LiveView.state`), never from a bus
  message: the daemon's own announcements are not shown twice, and a state
  announced by a peer (the proxy names the sender, :mod:`smdbus.proxy._monitor`)
  is shown as a warning naming who said it. The footer's state and CPD
  result are the manager's and the detector's (``Daemon.status``).
- What a peer sent is shown escaped (:func:`smdbus._escape.printable`): a
  payload cannot move the cursor, clear the screen or tear the footer.
- The footer fits the terminal (80 columns is the size to design for): the
  status line keeps the parts that fit, and a hint too long for one line is
  folded at its `` · `` separators rather than cut.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TextIO

from smdbus._escape import printable
from smdbus.classes import Class, class_names
from smdbus.system import State

_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")

STYLES = {
    "dim": "2",
    "bold": "1",
    "red": "31",
    "green": "32",
    "yellow": "33",
    "blue": "34",
    "magenta": "35",
    "cyan": "36",
    "state": "1;36",
    "ok": "1;32",
    "warn": "1;33",
    "bad": "1;31",
}

BOOT_STATES = tuple(
    s.name for s in State if State.CONTEXT_CREATED <= s <= State.OPERATIONAL
)  # the boot's way, CONTEXT_CREATED to OPERATIONAL, for "step n/14" in the view


@dataclass(frozen=True)
class Line:
    """One event as the view shows it: a short tag, the text, and how to colour it."""

    tag: str
    text: str
    style: str = ""
    detail: str = ""


def state_line(name: str) -> Line:
    """``▸ NAME``: a state the system entered."""
    style = "ok" if name == "OPERATIONAL" else "bad" if name == "DESTROYING" else "state"
    if name == "POLICY_INVALID":
        style = "warn"
    return Line("state", f"▸ {name}", style)


def describe(cls: int, payload: bytes) -> Line:
    """What a bus message means, in words (pure)."""
    try:
        obj: Any = json.loads(payload)
    except (ValueError, UnicodeDecodeError):
        obj = None
    raw = payload.decode("utf-8", "replace")
    if len(raw) > 160:
        raw = raw[:157] + "..."
    if isinstance(obj, dict):
        if cls & Class.SYSTEM_STATE:
            if isinstance(obj.get("state"), str):
                return state_line(obj["state"])
            if obj.get("query") == "state":
                return Line("state", "someone asked for the current state", "dim", raw)
            if isinstance(obj.get("current"), str):
                return Line("state", f"answered: current state is {obj['current']}", "dim", raw)
        if cls & Class.NETWORK:
            if obj.get("type") == "cpd" and isinstance(obj.get("result"), str):
                result = obj["result"]
                style = {"OK": "ok", "Captive": "warn"}.get(result, "bad")
                return Line("cpd", f"captive portal detection: {result}", style, raw)
            if obj.get("rt") in ("add", "del"):
                verb = "added" if obj["rt"] == "add" else "removed"
                return Line("route", f"route {verb}", "blue", raw)
            if obj.get("trigger") == "cpdcheck":
                src = obj.get("src")
                why = f" ({src})" if isinstance(src, str) else ""
                return Line("cpd", f"check requested{why}", "dim", raw)
            if obj.get("type") == "ipacq":
                return Line("net", "an interface acquired an address", "blue", raw)
        if cls & Class.INTERACTION and obj.get("type") == "button":
            src, event = obj.get("src"), obj.get("event")
            return Line("button", f"{src} {event}", "magenta")
    names = class_names(cls)
    label = names[0].lower() if len(names) == 1 else f"{cls:#x}"
    return Line(label[:8], raw, "", "")


@dataclass
class Status:
    """What the footer shows; the daemon fills it in."""

    state: str = "CONTEXT_CREATED"
    held_by: str | None = None
    cpd: str = "Unknown"
    routes: int = 0
    clients: int = 0
    messages: int = 0
    boot_seconds: float | None = None
    extra: list[str] = field(default_factory=list)


class LiveView:
    """Renders events to ``out``; ``tty`` decides between the footer view and plain lines."""

    def __init__(
        self,
        out: TextIO,
        *,
        tty: bool | None = None,
        color: bool | None = None,
        status: Callable[[], Status] | None = None,
        hints: list[str] | None = None,
        clock_us: Callable[[], int] | None = None,
        width: Callable[[], int] | None = None,
    ) -> None:
        self.out = out
        self.tty = out.isatty() if tty is None else tty
        self.color = (self.tty and "NO_COLOR" not in os.environ) if color is None else color
        self.status: Callable[[], Status] = status or Status
        """Where the footer's figures come from (the daemon sets its own once it exists)."""
        self.hints = hints or []
        self._clock_us = clock_us or (lambda: time.monotonic_ns() // 1000)
        self._width = width or (lambda: shutil.get_terminal_size((100, 24)).columns)
        self.start_us = self._clock_us()
        self._footer_lines = 0
        self._hints_shown = False
        self.lines_written = 0
        self.own_states = False
        """Whether the states shown come from the daemon's state manager (:meth:`state`)."""

    # -- styling --------------------------------------------------------------

    def paint(self, text: str, style: str) -> str:
        if not self.color or not style:
            return text
        codes = ";".join(STYLES[s] for s in style.split() if s in STYLES)
        return f"\x1b[{codes}m{text}\x1b[0m" if codes else text

    # -- events ---------------------------------------------------------------

    def banner(self, lines: list[str]) -> None:
        """The first lines: what runs where."""
        for i, text in enumerate(lines):
            self._emit(self.paint(text, "bold" if i == 0 else "dim"))
        self._emit(self.paint("─" * min(self._width(), 78), "dim"))

    def state(self, name: str) -> None:
        """The daemon's own state, from its state manager: from now on the only ``▸`` lines."""
        self.own_states = True
        self._shown(self._clock_us(), state_line(name))

    def message(self, cls: int, timestamp_us: int, payload: bytes, sender: Any = None) -> None:
        """A message seen on the bus; ``sender`` as the proxy names it (smdbus.proxy._monitor)."""
        line = describe(cls, payload)
        if line.tag == "state" and line.text.startswith("▸ "):
            if isinstance(sender, dict):  # a peer's word: never the state shown
                line = Line(
                    "warn",
                    f"#{sender.get('id')} pid {sender.get('pid')} uid {sender.get('uid')} "
                    f"comm '{sender.get('comm')}' published state {line.text[2:]}: "
                    "not the daemon's state (ignored)",
                    "yellow",
                )
            elif self.own_states:
                return  # the daemon's own announcement: shown from its state manager
        self._shown(timestamp_us, line)

    def _shown(self, timestamp_us: int, line: Line) -> None:
        self._event(timestamp_us, line)
        if line.text == "▸ OPERATIONAL" and not self._hints_shown:
            self._hints_shown = True
            if not self.tty:
                for hint in self.hints:
                    self._emit(f"  {hint}")

    def note(self, level: str, text: str, timestamp_us: int | None = None) -> None:
        """Something only the daemon knows (a gate waiting, a skipped source, a reload)."""
        style = {"warning": "yellow", "error": "red", "debug": "dim"}.get(level, "")
        tag = {"warning": "warn", "error": "error"}.get(level, "daemon")
        ts = self._clock_us() if timestamp_us is None else timestamp_us
        self._event(ts, Line(tag, text, style))

    def refresh(self) -> None:
        """Redraw the footer (tty only)."""
        if self.tty:
            self._clear_footer()
            self._draw_footer()
            self.out.flush()

    def close(self) -> None:
        if self.tty:
            self._clear_footer()
            self.out.flush()

    # -- layout ---------------------------------------------------------------

    def _event(self, timestamp_us: int, line: Line) -> None:
        t = (timestamp_us - self.start_us) / 1e6
        stamp = self.paint(f"{t:+9.3f}s", "dim")
        tag = self.paint(f"{printable(line.tag):<8}", "dim" if line.style == "dim" else "cyan")
        text = self.paint(printable(line.text), line.style)
        shown = printable(line.detail)
        detail = f"  {self.paint(shown, 'dim')}" if line.detail and self.tty else ""
        if line.detail and not self.tty:
            detail = f"  {shown}"
        self._emit(f"{stamp}  {tag} {text}{detail}")

    def _emit(self, text: str) -> None:
        if self.tty:
            self._clear_footer()
        self.out.write(text + "\n")
        self.lines_written += 1
        if self.tty:
            self._draw_footer()
        self.out.flush()

    def _clear_footer(self) -> None:
        if self._footer_lines:
            up = self._footer_lines - 1
            self.out.write("\r" + (f"\x1b[{up}A" if up else "") + "\x1b[J")
            self._footer_lines = 0

    def footer_lines(self) -> list[str]:
        """The footer's lines, fitted to the terminal width."""
        s = self.status()
        width = max(self._width(), 20)
        rule = self.paint("─" * min(width, 78), "dim")
        state_style = "ok" if s.state == "OPERATIONAL" else "state"
        if s.state in ("DESTROYING", "CONTEXT_DESTROYING"):
            state_style = "bad"
        parts = [self.paint("● " + s.state, state_style)]
        plain = ["● " + s.state]
        if s.held_by and s.state != "OPERATIONAL":
            parts.append(self.paint(f"held by {s.held_by}", "yellow"))
            plain.append(f"held by {s.held_by}")
        if s.boot_seconds is not None:
            parts.append(f"boot {s.boot_seconds:.2f} s")
            plain.append(f"boot {s.boot_seconds:.2f} s")
        cpd_style = {"OK": "green", "Captive": "yellow", "No internet": "red"}.get(s.cpd, "dim")
        for text, style in (
            (f"CPD {s.cpd}", cpd_style),
            (_count(s.routes, "route"), ""),
            (_count(s.clients, "client"), ""),
            (_count(s.messages, "message"), ""),
            *((x, "") for x in s.extra),
        ):
            parts.append(self.paint(text, style))
            plain.append(text)
        status = _fit(parts, plain, "  ·  ", width - 1)
        lines = [rule, " " + status]
        lines += [
            " " + self.paint(_cut(line, width - 2), "dim")
            for h in self.hints
            for line in fold(h, width - 2)
        ]
        return lines

    def _draw_footer(self) -> None:
        lines = self.footer_lines()
        self.out.write("\n".join(lines))
        self._footer_lines = len(lines)


def progress(state: str) -> str:
    """``7/15`` style position of a boot state, for status lines."""
    if state in BOOT_STATES:
        return f"{BOOT_STATES.index(state)}/{len(BOOT_STATES) - 1}"
    return ""


def strip_ansi(text: str) -> str:
    return _ANSI.sub("", text)


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


_SEPARATOR = re.compile(r" +· +")


def fold(text: str, width: int) -> list[str]:
    """``text`` in lines of at most ``width``, broken at its `` · `` separators.

    A piece that is longer than ``width`` on its own stays one line (the
    caller cuts it); the separators at a break are dropped.
    """
    if len(text) <= width:
        return [text]
    sep = _SEPARATOR.search(text)
    joiner = sep.group() if sep else " · "
    lines: list[str] = []
    for piece in _SEPARATOR.split(text):
        if lines and len(lines[-1]) + len(joiner) + len(piece) <= width:
            lines[-1] += joiner + piece
        else:
            lines.append(piece)
    return lines


def _cut(text: str, width: int) -> str:
    return text if len(text) <= width else text[: max(width - 1, 0)] + "…"


def _fit(parts: list[str], plain: list[str], sep: str, width: int) -> str:
    """Join as many parts as fit in ``width`` visible columns."""
    out: list[str] = []
    used = 0
    for styled, text in zip(parts, plain, strict=True):
        need = len(text) + (len(sep) if out else 0)
        if used + need > width:
            break
        out.append(styled)
        used += need
    return sep.join(out)
