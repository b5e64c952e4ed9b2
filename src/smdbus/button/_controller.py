"""The static description of a button controller, as C's ``lws_button_controller_t``.

A controller has a name (``bc`` in ``"bc/user"``), up to 16 buttons (C indexes
them with a uint16 bitmap), each with a name and a regime, and an
``active_state_bitmap``: bit n set means button n is pressed when its line is
high (active-high); clear means pressed when low (active-low), as in C.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from smdbus.button._errors import ButtonConfigError
from smdbus.button._regime import DEFAULT_REGIME, Regime

MAX_BUTTONS = 16
"""C's ``lws_button_idx_t`` is a uint16 bitmap: one bit per button."""

MAX_NAME = 64
"""Longest controller or button name we accept: keeps the payload far under 384 bytes."""


@dataclass(frozen=True, slots=True)
class ButtonSpec:
    """One button: its name in events and its regime (C's ``lws_button_map_t`` minus the gpio)."""

    name: str
    regime: Regime = DEFAULT_REGIME

    def __post_init__(self) -> None:
        _check_name("button", self.name)
        if not isinstance(self.regime, Regime):
            raise ButtonConfigError(
                f"button {self.name!r}: regime must be a Regime, got {self.regime!r}"
            )


@dataclass(frozen=True, slots=True)
class Controller:
    """A named group of buttons sharing one 5 ms monitor."""

    name: str
    buttons: tuple[ButtonSpec, ...]
    active_state_bitmap: int = 0

    def __post_init__(self) -> None:
        _check_name("controller", self.name)
        if not isinstance(self.buttons, tuple) or not all(
            isinstance(b, ButtonSpec) for b in self.buttons
        ):
            raise ButtonConfigError(
                f"controller {self.name!r}: buttons must be a tuple of ButtonSpec"
            )
        if not 1 <= len(self.buttons) <= MAX_BUTTONS:
            raise ButtonConfigError(
                f"controller {self.name!r} has {len(self.buttons)} buttons; "
                f"it must have 1..{MAX_BUTTONS}"
            )
        names = [b.name for b in self.buttons]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ButtonConfigError(
                f"controller {self.name!r}: button names repeat: {', '.join(dupes)}"
            )
        bitmap = self.active_state_bitmap
        if isinstance(bitmap, bool) or not isinstance(bitmap, int):
            raise ButtonConfigError(f"active_state_bitmap must be an int, got {bitmap!r}")
        if bitmap < 0 or bitmap >> len(self.buttons):
            raise ButtonConfigError(
                f"active_state_bitmap 0x{bitmap:x} has bits beyond the "
                f"{len(self.buttons)} buttons of controller {self.name!r}"
            )

    @classmethod
    def of(
        cls,
        name: str,
        buttons: Iterable[str | ButtonSpec],
        *,
        regime: Regime = DEFAULT_REGIME,
        active_high: bool | int = False,
    ) -> Controller:
        """Build from names; ``active_high`` is True/False for all buttons, or a bitmap."""
        specs = tuple(b if isinstance(b, ButtonSpec) else ButtonSpec(b, regime) for b in buttons)
        if isinstance(active_high, bool):
            bitmap = (1 << len(specs)) - 1 if active_high else 0
        else:
            bitmap = active_high
        return cls(name, specs, bitmap)

    def index(self, button: int | str) -> int:
        """The index of a button given by index or by name; a clear error if there is none."""
        if isinstance(button, str):
            for i, b in enumerate(self.buttons):
                if b.name == button:
                    return i
            known = ", ".join(b.name for b in self.buttons)
            raise ButtonConfigError(
                f"controller {self.name!r} has no button {button!r} (it has: {known})"
            )
        if isinstance(button, bool) or not isinstance(button, int):
            raise ButtonConfigError(f"a button is an index or a name, got {button!r}")
        if not 0 <= button < len(self.buttons):
            raise ButtonConfigError(
                f"controller {self.name!r} has no button {button} "
                f"(indexes 0..{len(self.buttons) - 1})"
            )
        return button

    def active_high(self, index: int) -> bool:
        return bool(self.active_state_bitmap >> index & 1)

    def level(self, index: int, pressed: bool) -> int:
        """The electrical level a source reports for a pressed / released button."""
        return int(pressed == self.active_high(index))

    def is_pressed(self, index: int, level: int) -> bool:
        """C's ``read() ^ !(active_state_bitmap & (1 << n))``."""
        return bool(level) == self.active_high(index)


def _check_name(what: str, name: object) -> None:
    if not isinstance(name, str) or not name:
        raise ButtonConfigError(f"a {what} name must be a non-empty string, got {name!r}")
    if len(name) > MAX_NAME:
        raise ButtonConfigError(
            f"{what} name {name[:20]!r}... is {len(name)} chars; limit {MAX_NAME}"
        )
    if "/" in name or any(ord(c) < 0x20 for c in name) or '"' in name or "\\" in name:
        raise ButtonConfigError(
            f"{what} name {name!r} may not contain '/', quotes, backslashes or control "
            'characters: it goes into "src":"<controller>/<button>"'
        )
