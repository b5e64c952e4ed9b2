"""The device daemon (``smd daemon``): the bus, its proxy and the system helpers in one process.

``_config`` reads the TOML file, ``_sntp`` and ``_timecheck`` make the clock
valid, ``_systemd`` speaks sd_notify and socket activation, ``_gates`` (every boot gate)
hold the boot for real work, ``_signals`` keeps SIGHUP/SIGTERM from killing a
daemon that is still starting, ``_live`` draws the terminal view and ``_app``
composes it all. See docs/architecture.md.

The names below are imported on first use: ``smd daemon`` catches its
signals (``smdbus.daemon._signals``) before ``_app`` pulls in asyncio and the network side.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from smdbus._lazy import lazy_names

if TYPE_CHECKING:
    from smdbus.daemon._app import Daemon, DaemonError, Prepared, prepare, read_policy
    from smdbus.daemon._config import (
        DEFAULT_TOML,
        DaemonConfig,
        DaemonConfigError,
        load_config,
        parse_config,
    )
    from smdbus.daemon._live import BOOT_STATES, LiveView
    from smdbus.daemon._signals import PendingSignals

_HOME = {
    "smdbus.daemon._live": ("BOOT_STATES", "LiveView"),
    "smdbus.daemon._signals": ("PendingSignals",),
    "smdbus.daemon._app": ("Daemon", "DaemonError", "Prepared", "prepare", "read_policy"),
    "smdbus.daemon._config": (
        "DEFAULT_TOML",
        "DaemonConfigError",
        "DaemonConfig",
        "load_config",
        "parse_config",
    ),
}

__all__ = [
    "BOOT_STATES",
    "DEFAULT_TOML",
    "Daemon",
    "DaemonConfig",
    "DaemonConfigError",
    "DaemonError",
    "LiveView",
    "PendingSignals",
    "Prepared",
    "load_config",
    "parse_config",
    "prepare",
    "read_policy",
]


__getattr__, __dir__ = lazy_names(__name__, _HOME, __all__, globals())
