"""Where edges come from: Linux input devices, GPIO lines, or a script.

Every source turns its native events into :class:`~smdbus.button._events.Edge`
records (time in ms on the source's own clock, button index, electrical level)
and has ``async run(sink)`` plus ``clock()``. python-evdev and gpiod are
imported only when a device is opened or a key name looked up.

This ``__init__`` is the package's surface; the modules behind it are private.
"""

from smdbus.button.sources._evdev_source import EvdevSource, list_key_devices
from smdbus.button.sources._gpiod_source import BIASES, GpiodSource, LineSpec
from smdbus.button.sources._scripted import (
    Press,
    ScriptedSource,
    controller_for,
    parse_pattern,
)

__all__ = [
    "BIASES",
    "EvdevSource",
    "GpiodSource",
    "LineSpec",
    "Press",
    "ScriptedSource",
    "controller_for",
    "list_key_devices",
    "parse_pattern",
]
