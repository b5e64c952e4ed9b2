"""smdbus: a system message bus for Linux devices, faithful to libwebsockets' lws_smd.

The public API lives here; modules are named from the domain (bus, classes,
wire, proxy, client, system, button, net).

Boundaries
----------
- **A package's ``__init__`` is its surface.** Every other module of a
  package is private (``_name.py``); only the package's own modules import
  them. Everything else, the ``smd`` commands included, imports
  ``smdbus.<package>``. Tests may reach a private core to unit-test it.
- **A top-level module is public when it is a concept a user names**
  (:mod:`~smdbus.bus`, :mod:`~smdbus.classes`, :mod:`~smdbus.errors`,
  :mod:`~smdbus.runtime`, :mod:`~smdbus.scheduler`, :mod:`~smdbus.hostloop`)
  or the entry point (:mod:`~smdbus.cli`); the helpers the packages share
  (``_announce``, ``_escape``, ``_wakeup``, ``_logsetup``, ``_lazy``,
  ``_nossl``, ``_clidoc``) are private to smdbus.
- **Layers, no cycles**: cli, commands, daemon, then fleet/web,
  button/net, system/proxy/client, policy, bus/wire, and the helpers; a
  module imports only below itself. The contracts in pyproject.toml
  (``lint-imports``, run by ``make lint``) check all three rules; see
  docs/architecture.md.

The names are imported on first use (PEP 562), not when the package is: the
``smd`` command starts in ``smdbus.cli`` and must take over Ctrl-C before
anything heavy (asyncio, the client) is imported, and a subcommand should
pay only for the modules it uses.

``SMDBUS_PURE=1`` in the environment makes every module load from its Python
source even where a compiled (mypyc) build of it is installed (:mod:`smdbus._pure`).
"""

from __future__ import annotations

import os

from smdbus._lazy import lazy_names

if os.environ.get("SMDBUS_PURE", "") not in ("", "0"):  # see smdbus._pure
    from smdbus._pure import install

    install()

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (7 ms)
if TYPE_CHECKING:
    from smdbus.bus import MAX_PAYLOAD, Bus, ClassStats, Participant, ParticipantInfo
    from smdbus.classes import (
        ALL_CLASSES,
        Class,
        class_names,
        format_mask,
        parse_mask,
        user_class,
    )
    from smdbus.client import (
        BufferFull,
        Client,
        ClientClosed,
        Message,
        ProxyUnavailable,
        ThreadedClient,
        connect,
        connect_threaded,
    )
    from smdbus.errors import PayloadTooLarge, QueueFull, SmdError
    from smdbus.proxy import Proxy, ProxySettings

_HOME = {
    "smdbus.bus": ("MAX_PAYLOAD", "Bus", "ClassStats", "Participant", "ParticipantInfo"),
    "smdbus.classes": (
        "ALL_CLASSES",
        "Class",
        "class_names",
        "format_mask",
        "parse_mask",
        "user_class",
    ),
    "smdbus.client": (
        "BufferFull",
        "Client",
        "ClientClosed",
        "Message",
        "ProxyUnavailable",
        "ThreadedClient",
        "connect",
        "connect_threaded",
    ),
    "smdbus.errors": ("PayloadTooLarge", "QueueFull", "SmdError"),
    "smdbus.proxy": ("Proxy", "ProxySettings"),
}

__all__ = [
    "ALL_CLASSES",
    "MAX_PAYLOAD",
    "BufferFull",
    "Bus",
    "Class",
    "ClassStats",
    "Client",
    "ClientClosed",
    "Message",
    "Participant",
    "ParticipantInfo",
    "PayloadTooLarge",
    "Proxy",
    "ProxySettings",
    "ProxyUnavailable",
    "QueueFull",
    "SmdError",
    "ThreadedClient",
    "class_names",
    "connect",
    "connect_threaded",
    "format_mask",
    "parse_mask",
    "user_class",
]


__getattr__, __dir__ = lazy_names(__name__, _HOME, __all__, globals())
