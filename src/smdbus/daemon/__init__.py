"""The device daemon (``smd daemon``): the bus, its proxy and the system helpers in one process.

``config`` reads the TOML file, ``sntp`` and ``timecheck`` make the clock
valid, ``systemd`` speaks sd_notify and socket activation, ``gates`` (every boot gate) hold
the boot for real work, ``signals`` keeps SIGHUP/SIGTERM from killing a
daemon that is still starting, ``live`` draws the terminal view and ``app``
composes it all. See docs/architecture.md.

The names below are imported on first use: ``smd daemon`` catches its
signals (``smdbus.daemon.signals``) before ``app`` pulls in asyncio and the network side.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from smdbus.daemon.app import Daemon, DaemonError, Prepared, prepare, read_policy
    from smdbus.daemon.config import (
        DEFAULT_TOML,
        ConfigError,
        DaemonConfig,
        load_config,
        parse_config,
    )

_WHERE = {
    "Daemon": "app",
    "DaemonError": "app",
    "Prepared": "app",
    "prepare": "app",
    "read_policy": "app",
    "DEFAULT_TOML": "config",
    "ConfigError": "config",
    "DaemonConfig": "config",
    "load_config": "config",
    "parse_config": "config",
}

__all__ = [
    "DEFAULT_TOML",
    "ConfigError",
    "Daemon",
    "DaemonConfig",
    "DaemonError",
    "Prepared",
    "load_config",
    "parse_config",
    "prepare",
    "read_policy",
]


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'smdbus.daemon' has no attribute {name!r}")
    return getattr(importlib.import_module(f"smdbus.daemon.{module}"), name)
