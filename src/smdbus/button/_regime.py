"""The regime: the timing thresholds that turn edges into clicks.

Same fields, units and defaults as C's ``lws_button_regime_t``; the one flag
bit of C (``LWSBTNRGMFLAG_CLASSIFY_DOUBLECLICK``) is the boolean
``classify_doubleclick``. Values are whole milliseconds in a uint16, as in C;
the classifier only looks at them on its 5 ms ticks, so a value that is not a
multiple of 5 behaves as the next multiple up (and see :meth:`Regime.notes`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass, fields

from smdbus.button._errors import RegimeError

TICK_MS = 5
"""Period of C's monitor timer (``LWS_BUTTON_MON_TIMER_MS``)."""

UINT16_MAX = 0xFFFF

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


@dataclass(frozen=True, slots=True)
class Regime:
    """Per-button timing; the defaults are libwebsockets' default regime."""

    ms_min_down: int = 20
    """A press shorter than this is a glitch: no event at all."""
    ms_min_down_longpress: int = 300
    """Held this long (from the press): ``longclick``, while still held."""
    ms_up_settle: int = 20
    """After a release, the button is not looked at for this long."""
    ms_doubleclick_grace: int = 120
    """After a release, how long a second press may take to start a doubleclick."""
    ms_repeat_down: int = 0
    """While held, ``stilldown`` at this interval; 0 = never."""
    classify_doubleclick: bool = True
    """Off: ``click`` is reported at the release (no ``up``), never a doubleclick."""

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "classify_doubleclick":
                if not isinstance(value, bool):
                    raise RegimeError(f"classify_doubleclick must be a bool, got {value!r}")
                continue
            if isinstance(value, bool) or not isinstance(value, int):
                raise RegimeError(f"{f.name} must be whole milliseconds, got {value!r}")
            if not 0 <= value <= UINT16_MAX:
                raise RegimeError(f"{f.name} must be 0..{UINT16_MAX} ms (a uint16), got {value}")
        if self.ms_min_down_longpress <= self.ms_min_down:
            raise RegimeError(
                f"ms_min_down_longpress ({self.ms_min_down_longpress}) must be greater than "
                f"ms_min_down ({self.ms_min_down}): every press that qualifies would be a longclick"
            )

    @classmethod
    def setting_names(cls) -> list[str]:
        return [f.name for f in fields(cls)]

    def with_settings(self, settings: Iterable[str]) -> Regime:
        """A copy with ``"name=value"`` settings applied (``"a=1,b=2"`` is fine too).

        This is what ``smd button-replay --regime`` and config files use.
        """
        changes: dict[str, int | bool] = {}
        known = self.setting_names()
        for item in settings:
            for part in item.split(","):
                part = part.strip()
                if not part:
                    continue
                name, sep, raw = part.partition("=")
                name, raw = name.strip(), raw.strip()
                if not sep or not raw:
                    raise RegimeError(f"regime setting {part!r} is not name=value")
                if name not in known:
                    raise RegimeError(
                        f"unknown regime setting {name!r} (known: {', '.join(known)})"
                    )
                changes[name] = _parse_value(name, raw)
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]

    def notes(self) -> list[str]:
        """Consequences of these values that surprise people tuning a regime."""
        out: list[str] = []
        for name in ("ms_min_down", "ms_min_down_longpress", "ms_doubleclick_grace"):
            value = getattr(self, name)
            if value % TICK_MS:
                out.append(
                    f"{name}={value} is not a multiple of the {TICK_MS} ms tick: "
                    f"it acts as {value + TICK_MS - value % TICK_MS}"
                )
        if self.classify_doubleclick and self.ms_min_down % TICK_MS:
            out.append(
                f"ms_min_down={self.ms_min_down} is never hit exactly on a tick, so the "
                "second press of a doubleclick reports no 'down' (as in C)"
            )
        if self.ms_repeat_down and self.ms_repeat_down < TICK_MS:
            out.append(
                f"ms_repeat_down={self.ms_repeat_down} is under the tick: "
                f"stilldown comes every {2 * TICK_MS} ms"
            )
        return out

    def describe(self) -> str:
        """``ms_min_down=20 ms_min_down_longpress=300 ...``, for logs and the replay tool."""
        parts = []
        for f in fields(self):
            value = getattr(self, f.name)
            parts.append(
                f"{f.name}={'on' if value is True else 'off' if value is False else value}"
            )
        return " ".join(parts)


DEFAULT_REGIME = Regime()


def _parse_value(name: str, raw: str) -> int | bool:
    if name == "classify_doubleclick":
        low = raw.lower()
        if low in _TRUE:
            return True
        if low in _FALSE:
            return False
        raise RegimeError(f"classify_doubleclick must be on/off (or 1/0, true/false), got {raw!r}")
    try:
        return int(raw, 10)
    except ValueError:
        raise RegimeError(f"{name} must be whole milliseconds, got {raw!r}") from None
