"""The device daemon (``smd daemon``): the bus, its proxy and the system helpers in one process.

``config`` reads the TOML file, ``sntp`` and ``timecheck`` make the clock
valid, ``systemd`` speaks sd_notify and socket activation, ``gates`` hold
the boot for real work, ``live`` draws the terminal view and ``app``
composes it all. See docs/architecture.md.
"""

from smdbus.daemon.app import Daemon, DaemonError, Prepared, prepare, read_policy
from smdbus.daemon.config import DEFAULT_TOML, ConfigError, DaemonConfig, load_config, parse_config

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
