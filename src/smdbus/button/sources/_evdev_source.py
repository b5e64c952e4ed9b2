"""Buttons from a Linux input device (python-evdev): keyboards, gpio-keys, remotes.

Key codes map to button names of one controller. Key down (value 1) is a
press, key up (0) a release; autorepeat (2) is the kernel's idea of a held
key, not an edge, and is ignored: ``ms_repeat_down`` is ours. Edges carry the
kernel's own timestamps, so a busy loop does not shift the classification.
We ask the device for CLOCK_MONOTONIC stamps (EVIOCSCLOCKID) so they compare
with the loop's clock; where a kernel refuses, stamps stay CLOCK_REALTIME and
:meth:`EvdevSource.clock` reads that clock instead.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import struct
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Protocol, TextIO

from smdbus.button._controller import Controller
from smdbus.button._errors import ButtonConfigError, SourceUnavailable
from smdbus.button._events import Edge
from smdbus.button.sources._optional import require

if TYPE_CHECKING:
    from evdev import InputDevice

log = logging.getLogger(__name__)

EV_KEY = 0x01
KEY_UP, KEY_DOWN, KEY_HOLD = 0, 1, 2
EVIOCSCLOCKID = 0x400445A0  # _IOW('E', 0xa0, int)


class InputEventLike(Protocol):
    """The fields of ``evdev.events.InputEvent`` we read."""

    sec: int
    usec: int
    type: int
    code: int
    value: int


class EvdevSource:
    """Turns one input device's key events into edges for one controller."""

    def __init__(
        self,
        device: str | InputDevice[str],
        keys: Mapping[int | str, str],
        controller: Controller,
        *,
        grab: bool = False,
    ) -> None:
        """``keys``: key code or name (``"KEY_ENTER"``, ``"BTN_0"``, 28) → button name."""
        self.device = device
        self.controller = controller
        self.grab = grab
        self.codes: dict[int, int] = {}
        """Key code → button index."""
        for key, button in keys.items():
            code = _key_code(key)
            if code in self.codes:
                raise ButtonConfigError(f"key {key!r} (code {code}) is mapped twice")
            self.codes[code] = controller.index(button)
        if not self.codes:
            raise ButtonConfigError("an evdev source needs at least one key mapped to a button")
        self.monotonic = False
        """True once the device agreed to stamp events with CLOCK_MONOTONIC."""
        self._dev: InputDevice[str] | None = None

    def translate(self, event: InputEventLike) -> Edge | None:
        """The edge an input event means, or None (other types, unmapped keys, autorepeat)."""
        if event.type != EV_KEY or event.value not in (KEY_UP, KEY_DOWN):
            return None
        index = self.codes.get(event.code)
        if index is None:
            return None
        time_ms = event.sec * 1000 + event.usec / 1000
        return Edge(time_ms, index, self.controller.level(index, event.value == KEY_DOWN))

    def clock(self) -> float:
        """Now, in ms, on the clock the device stamps events with."""
        if self.monotonic:
            return time.monotonic_ns() / 1e6
        return time.time_ns() / 1e6

    def open(self) -> InputDevice[str]:
        """Open (once) the device, ask for monotonic stamps, grab it if asked."""
        if self._dev is not None:
            return self._dev
        evdev = require("evdev")
        if isinstance(self.device, str):
            try:
                dev: InputDevice[str] = evdev.InputDevice(self.device)
            except OSError as e:
                raise SourceUnavailable(f"cannot open input device {self.device}: {e}") from e
        else:
            dev = self.device
        try:
            fcntl.ioctl(dev.fd, EVIOCSCLOCKID, struct.pack("i", time.CLOCK_MONOTONIC))
            self.monotonic = True
        except OSError as e:
            log.info("%s keeps CLOCK_REALTIME stamps (EVIOCSCLOCKID: %s)", dev.path, e)
        if self.grab:
            dev.grab()
        self._dev = dev
        return dev

    async def run(self, sink: Callable[[Edge], None]) -> None:
        """Read the device until it goes away or the task is cancelled."""
        dev = self.open()
        try:
            async for event in dev.async_read_loop():
                edge = self.translate(event)
                if edge is not None:
                    sink(edge)
        finally:
            self.close()

    def close(self) -> None:
        dev, self._dev = self._dev, None
        if dev is None:
            return
        if self.grab:
            with contextlib.suppress(OSError):  # the device is gone: nothing to release
                dev.ungrab()
        dev.close()


def _key_code(key: int | str) -> int:
    if isinstance(key, bool):
        raise ButtonConfigError(f"a key is a code or a name such as 'KEY_ENTER', got {key!r}")
    if isinstance(key, int):
        if not 0 <= key <= 0x2FF:  # KEY_MAX
            raise ButtonConfigError(f"key code {key} is out of range 0..767")
        return key
    if key.isdigit():
        return _key_code(int(key))
    ecodes: Any = require("evdev").ecodes
    code = ecodes.ecodes.get(key.upper())
    if not isinstance(code, int) or not (key.upper().startswith(("KEY_", "BTN_"))):
        raise ButtonConfigError(
            f"unknown key name {key!r} (use KEY_* / BTN_* names from linux/input-event-codes.h)"
        )
    return code


def list_key_devices(out: TextIO) -> int:
    """Print the input devices that have keys (``smd buttons --list``); the exit status."""
    evdev = require("evdev")
    found = 0
    for path in evdev.list_devices():
        dev = evdev.InputDevice(path)
        keys = dev.capabilities(verbose=False).get(evdev.ecodes.EV_KEY, [])
        if keys:
            found += 1
            names = [evdev.ecodes.KEY.get(k) or evdev.ecodes.BTN.get(k) or str(k) for k in keys]
            flat = [n if isinstance(n, str) else n[0] for n in names][:8]
            more = " ..." if len(keys) > 8 else ""
            print(f"{path}  {dev.name!r}  {' '.join(flat)}{more}", file=out)
        dev.close()
    if not found:
        print("no input devices with keys (is /dev/input there, and are we allowed?)", file=out)
    return 0
