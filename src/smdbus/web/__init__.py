"""The live web view of the bus (``smd daemon --web``, ``[web]``): docs/web.md.

The sans-I/O core (:class:`BusView`: ring, class table, boot timeline,
sampler) needs only the standard library; :class:`WebService`, the HTTP
adapter on the daemon's loop, needs h11 (the ``web`` extra). Only the
``[web]`` table's checker is imported with this package (the daemon's config
loader reads ``[web]`` whether the view runs or not); the rest is imported on
first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from smdbus._lazy import lazy_names
from smdbus.web._config import (
    WEB_TOML,
    WebConfig,
    WebConfigError,
    default_runtime_dir,
    parse_web_config,
)

if TYPE_CHECKING:
    from smdbus.web._model import BusView
    from smdbus.web._runtime import RuntimeInfoError, read_info
    from smdbus.web._service import WebService

__all__ = [
    "WEB_TOML",
    "BusView",
    "RuntimeInfoError",
    "WebConfig",
    "WebConfigError",
    "WebService",
    "default_runtime_dir",
    "parse_web_config",
    "read_info",
]

_HOME = {
    "smdbus.web._model": ("BusView",),
    "smdbus.web._runtime": ("RuntimeInfoError", "read_info"),
    "smdbus.web._service": ("WebService",),
}


__getattr__, __dir__ = lazy_names(__name__, _HOME, __all__, globals())
