"""Controllers and their sources from configuration (a TOML table or any mapping).

One ``[[controller]]`` per group of buttons read from one device::

    [[controller]]
    name = "bc"
    source = "evdev"                      # python-evdev: a Linux input device
    device = "/dev/input/by-path/platform-gpio-keys-event"
    grab = true                           # keep the keys from the console
    regime = { ms_min_down = 30 }         # for every button of this controller

      [[controller.button]]
      name = "user"
      key = "KEY_ENTER"
      regime = { ms_repeat_down = 250 }   # this button only, on top of the above

    [[controller]]
    name = "panel"
    source = "gpiod"                      # libgpiod v2: GPIO lines
    chip = "/dev/gpiochip0"

      [[controller.button]]
      name = "mode"
      line = 17                           # offset, or the line's name "GPIO17"
      active_low = true                   # pressing pulls the line to ground
      bias = "pull-up"

Errors name the place in the file: ``controller[1].button[0]: missing 'line'``.
"""

from __future__ import annotations

import tomllib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from smdbus.button._controller import ButtonSpec, Controller
from smdbus.button._errors import ButtonConfigError, ButtonError
from smdbus.button._events import Edge
from smdbus.button._regime import DEFAULT_REGIME, Regime
from smdbus.button.sources import EvdevSource, GpiodSource, LineSpec


class Source(Protocol):
    """What every source offers: its controller, its clock (ms) and ``run(sink)``."""

    controller: Controller

    def clock(self) -> float: ...

    async def run(self, sink: Callable[[Edge], None]) -> None: ...


@dataclass(frozen=True)
class Configured:
    controller: Controller
    source: Source


_CONTROLLER_KEYS = {"name", "source", "regime", "button", "device", "grab", "chip", "consumer"}
_BUTTON_KEYS = {"name", "regime", "key", "line", "active_low", "bias", "debounce_ms"}


def load_file(path: str | Path) -> list[Configured]:
    """Read a TOML file; its ``[[controller]]`` tables (or ``[[buttons.controller]]``)."""
    try:
        data: Mapping[str, Any] = tomllib.loads(Path(path).read_text())
    except (OSError, tomllib.TOMLDecodeError) as e:
        raise ButtonConfigError(f"{path}: {e}") from e
    if "buttons" in data and isinstance(data["buttons"], Mapping):
        data = data["buttons"]
    return load_controllers(data, where=str(path))


def load_controllers(data: Mapping[str, Any], *, where: str = "config") -> list[Configured]:
    controllers = data.get("controller")
    if not isinstance(controllers, list) or not controllers:
        raise ButtonConfigError(f"{where}: no [[controller]] tables")
    out = [_controller(c, f"{where}: controller[{i}]") for i, c in enumerate(controllers)]
    names = [c.controller.name for c in out]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ButtonConfigError(f"{where}: controller names repeat: {', '.join(dupes)}")
    return out


def _controller(table: Any, where: str) -> Configured:
    if not isinstance(table, Mapping):
        raise ButtonConfigError(f"{where}: must be a table")
    _no_unknown(table, _CONTROLLER_KEYS, where)
    name = _get(table, "name", str, where)
    kind = _get(table, "source", str, where)
    regime = _regime(table.get("regime"), DEFAULT_REGIME, where)
    buttons = table.get("button")
    if not isinstance(buttons, list) or not buttons:
        raise ButtonConfigError(f"{where}: no [[controller.button]] tables")
    for i, b in enumerate(buttons):
        if not isinstance(b, Mapping):
            raise ButtonConfigError(f"{where}.button[{i}]: must be a table")
        _no_unknown(b, _BUTTON_KEYS, f"{where}.button[{i}]")
    try:
        specs = tuple(
            ButtonSpec(
                _get(b, "name", str, f"{where}.button[{i}]"),
                _regime(b.get("regime"), regime, f"{where}.button[{i}]"),
            )
            for i, b in enumerate(buttons)
        )
        if kind == "evdev":
            controller = Controller(name, specs, (1 << len(specs)) - 1)
            keys: dict[int | str, str] = {}
            for i, b in enumerate(buttons):
                key = b.get("key")
                if not isinstance(key, str | int) or isinstance(key, bool):
                    raise ButtonConfigError(
                        f"{where}.button[{i}]: missing 'key' (e.g. \"KEY_ENTER\")"
                    )
                keys[key] = specs[i].name
            device = _get(table, "device", str, where)
            grab = _flag(table, "grab", where)
            return Configured(controller, EvdevSource(device, keys, controller, grab=grab))
        if kind == "gpiod":
            lines = [_line(b, specs[i].name, f"{where}.button[{i}]") for i, b in enumerate(buttons)]
            bitmap = sum(1 << i for i, spec in enumerate(lines) if not spec.active_low)
            controller = Controller(name, specs, bitmap)
            chip = _get(table, "chip", str, where)
            consumer = str(table.get("consumer", "smdbus-button"))
            return Configured(controller, GpiodSource(chip, lines, controller, consumer=consumer))
    except ButtonConfigError as e:
        if str(e).startswith(where):
            raise
        raise ButtonConfigError(f"{where}: {e}") from e
    raise ButtonConfigError(f"{where}: source {kind!r} is not 'evdev' or 'gpiod'")


def _line(b: Mapping[str, Any], button: str, where: str) -> LineSpec:
    line = b.get("line")
    if not isinstance(line, int | str) or isinstance(line, bool):
        raise ButtonConfigError(
            f"{where}: missing 'line' (an offset such as 17 or a name \"GPIO17\")"
        )
    debounce = b.get("debounce_ms", 0)
    if isinstance(debounce, bool) or not isinstance(debounce, int | float):
        raise ButtonConfigError(f"{where}: debounce_ms must be a number of ms, got {debounce!r}")
    active_low = _flag(b, "active_low", where)
    try:
        return LineSpec(
            line,
            button,
            active_low=active_low,
            bias=str(b.get("bias", "as-is")),
            debounce_ms=float(debounce),
        )
    except ButtonError as e:
        raise ButtonConfigError(f"{where}: {e}") from e


def _regime(table: Any, base: Regime, where: str) -> Regime:
    if table is None:
        return base
    if not isinstance(table, Mapping):
        raise ButtonConfigError(f"{where}: regime must be a table such as {{ ms_min_down = 30 }}")
    settings: Sequence[str] = [
        f"{k}={'on' if v is True else 'off' if v is False else v}" for k, v in table.items()
    ]
    try:
        return base.with_settings(settings)
    except ButtonError as e:
        raise ButtonConfigError(f"{where}: regime: {e}") from e


def _flag(table: Mapping[str, Any], key: str, where: str) -> bool:
    """A true/false key (a string "no" is not silently true)."""
    value = table.get(key, False)
    if not isinstance(value, bool):
        raise ButtonConfigError(f"{where}: {key} must be true or false, got {value!r}")
    return value


def _get(table: Mapping[str, Any], key: str, kind: type, where: str) -> Any:
    value = table.get(key)
    if not isinstance(value, kind):
        raise ButtonConfigError(f"{where}: missing '{key}' ({kind.__name__})")
    return value


def _no_unknown(table: Mapping[str, Any], known: set[str], where: str) -> None:
    unknown = sorted(set(table) - known)
    if unknown:
        raise ButtonConfigError(
            f"{where}: unknown setting(s) {', '.join(unknown)} (known: {', '.join(sorted(known))})"
        )
