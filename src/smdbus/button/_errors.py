"""Errors of the button classifier: each names the button, its state and what was refused."""

from __future__ import annotations


class ButtonError(Exception):
    """Base of every error raised by ``smdbus.button``."""


class RegimeError(ButtonError, ValueError):
    """A regime setting is unknown, of the wrong type or out of range."""


class ButtonConfigError(ButtonError, ValueError):
    """A controller, button, key map or line map is inconsistent."""


class IllegalMove(ButtonError):
    """An input the state machine cannot accept in its current state.

    ``state`` is the state of the button (or of the monitor) that refused,
    ``event`` what was fed to it.
    """

    def __init__(self, state: str, event: str, why: str) -> None:
        self.state, self.event = state, event
        super().__init__(f"{event} refused in state {state}: {why}")


class PatternError(ButtonError, ValueError):
    """A scripted press pattern such as ``"0-102,158-262"`` cannot be parsed."""


class SourceUnavailable(ButtonError, RuntimeError):
    """An optional source library (python-evdev, gpiod) or device is missing."""
