"""Button interaction events, as libwebsockets' lws_button makes them.

Edges from a source go into a pure :class:`Classifier`; a
:class:`ButtonDriver` ticks it on an asyncio loop and publishes each
:class:`ButtonEvent` on ``Class.INTERACTION`` as
``{"type":"button","src":"<controller>/<button>","event":"<event>"}``.
"""

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
