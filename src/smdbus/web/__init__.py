"""The live web view of the bus (``smd daemon --web``, ``[web]``): docs/web.md.

The sans-I/O core (:class:`BusView`: ring, class table, boot timeline,
sampler) needs only the standard library; :class:`WebService`, the HTTP
adapter on the daemon's loop, needs h11 (the ``web`` extra) and is imported
on first use, so the daemon's config loader can read ``[web]`` without it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from smdbus.web._config import (
    WEB_TOML,
    WebConfig,
    WebConfigError,
    default_runtime_dir,
    parse_web_config,
)
from smdbus.web._model import BusView
from smdbus.web._runtime import RuntimeInfoError, read_info

if TYPE_CHECKING:
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


def __getattr__(name: str) -> Any:
    if name == "WebService":
        from smdbus.web._service import WebService

        return WebService
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
