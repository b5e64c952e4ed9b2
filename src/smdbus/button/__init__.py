"""Button interaction events, as libwebsockets' lws_button makes them.

Edges from a source go into a pure :class:`Classifier`; a
:class:`ButtonDriver` ticks it on an asyncio loop and publishes each
:class:`ButtonEvent` on ``Class.INTERACTION`` as
``{"type":"button","src":"<controller>/<button>","event":"<event>"}``.

The pure parts are imported with the package; the driver (asyncio) and the
sources (evdev, gpiod) on first use, so the daemon's configuration reads a
:class:`Regime` without loading them.
"""

import importlib
from typing import TYPE_CHECKING, Any

from smdbus.button.classifier import Classifier, Phase
from smdbus.button.controller import ButtonSpec, Controller
from smdbus.button.errors import (
    ButtonError,
    ConfigError,
    IllegalMove,
    PatternError,
    RegimeError,
    SourceUnavailable,
)
from smdbus.button.events import ButtonEvent, Edge, Event
from smdbus.button.regime import DEFAULT_REGIME, TICK_MS, Regime
from smdbus.button.replay import replay

if TYPE_CHECKING:
    from smdbus.announce import Publisher
    from smdbus.button import sources
    from smdbus.button.driver import ButtonDriver

_WHERE = {"ButtonDriver": "driver", "Publisher": "driver", "sources": "sources"}  # Publisher:
# smdbus.announce's, as the driver takes it (imported with the driver)

__all__ = [
    "DEFAULT_REGIME",
    "TICK_MS",
    "ButtonDriver",
    "ButtonError",
    "ButtonEvent",
    "ButtonSpec",
    "Classifier",
    "ConfigError",
    "Controller",
    "Edge",
    "Event",
    "IllegalMove",
    "PatternError",
    "Phase",
    "Publisher",
    "Regime",
    "RegimeError",
    "SourceUnavailable",
    "replay",
    "sources",
]


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'smdbus.button' has no attribute {name!r}")
    value = importlib.import_module(f"smdbus.button.{module}")
    return value if name == module else getattr(value, name)
