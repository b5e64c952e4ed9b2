"""Button interaction events, as libwebsockets' lws_button makes them.

Edges from a source go into a pure :class:`Classifier`; a
:class:`ButtonDriver` ticks it on an asyncio loop and publishes each
:class:`ButtonEvent` on ``Class.INTERACTION`` as
``{"type":"button","src":"<controller>/<button>","event":"<event>"}``.

The names below are imported on first use: the daemon's configuration reads
a :class:`Regime` without loading the driver, the sources and asyncio.
"""

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from smdbus.button import sources
    from smdbus.button.classifier import Classifier, Phase
    from smdbus.button.controller import ButtonSpec, Controller
    from smdbus.button.driver import ButtonDriver, Publisher
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

_WHERE = {
    "Classifier": "classifier",
    "Phase": "classifier",
    "ButtonSpec": "controller",
    "Controller": "controller",
    "ButtonDriver": "driver",
    "Publisher": "driver",
    "ButtonError": "errors",
    "ConfigError": "errors",
    "IllegalMove": "errors",
    "PatternError": "errors",
    "RegimeError": "errors",
    "SourceUnavailable": "errors",
    "ButtonEvent": "events",
    "Edge": "events",
    "Event": "events",
    "DEFAULT_REGIME": "regime",
    "TICK_MS": "regime",
    "Regime": "regime",
    "replay": "replay",
    "sources": "sources",
}

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
