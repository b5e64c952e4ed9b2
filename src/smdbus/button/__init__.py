"""Button interaction events, as libwebsockets' lws_button makes them.

Edges from a source go into a pure :class:`Classifier`; a
:class:`ButtonDriver` ticks it on an asyncio loop and publishes each
:class:`ButtonEvent` on ``Class.INTERACTION`` as
``{"type":"button","src":"<controller>/<button>","event":"<event>"}``.

The pure parts are imported with the package; the driver (asyncio) and the
sources (evdev, gpiod) on first use, so the daemon's configuration reads a
:class:`Regime` without loading them; ``configure_live``/``run_live`` are
``smd buttons`` (and ``python -m smdbus.button``).

This ``__init__`` is the package's surface; the modules behind it are private
(``_name.py``).
"""

from typing import TYPE_CHECKING

from smdbus._lazy import lazy_names
from smdbus.button._classifier import Classifier, Phase
from smdbus.button._controller import ButtonSpec, Controller
from smdbus.button._errors import (
    ButtonConfigError,
    ButtonError,
    IllegalMove,
    PatternError,
    RegimeError,
    SourceUnavailable,
)
from smdbus.button._events import ButtonEvent, Edge, EventName
from smdbus.button._regime import DEFAULT_REGIME, TICK_MS, Regime
from smdbus.button._replay import replay

if TYPE_CHECKING:
    from smdbus._announce import Publisher
    from smdbus.button import sources
    from smdbus.button._config import load_controllers
    from smdbus.button._driver import ButtonDriver
    from smdbus.button._runner import configure_live, run_live

# Publisher: smdbus._announce's, as the driver takes it (imported with the driver)
_HOME = {
    "smdbus.button._config": ("load_controllers",),
    "smdbus.button._driver": ("ButtonDriver", "Publisher"),
    "smdbus.button._runner": ("configure_live", "run_live"),
}

__all__ = [
    "DEFAULT_REGIME",
    "TICK_MS",
    "ButtonConfigError",
    "ButtonDriver",
    "ButtonError",
    "ButtonEvent",
    "ButtonSpec",
    "Classifier",
    "Controller",
    "Edge",
    "EventName",
    "IllegalMove",
    "PatternError",
    "Phase",
    "Publisher",
    "Regime",
    "RegimeError",
    "SourceUnavailable",
    "configure_live",
    "load_controllers",
    "replay",
    "run_live",
    "sources",
]


__getattr__, __dir__ = lazy_names(__name__, _HOME, __all__, globals(), submodules=("sources",))
