"""asyncio without ``ssl``: what a process that speaks no TLS through asyncio imports.

asyncio imports :mod:`ssl` when it is imported (``asyncio.base_events``,
``sslproto``, ``selector_events``), and ``ssl`` maps libssl and libcrypto:
4.1 MiB of the daemon's RSS, 4.4 MiB of the proxy's (docs/performance.md),
in processes whose only TLS is none (the proxy) or a CPD probe that does
its own (:mod:`smdbus.net._transport`, over memory BIOs).

Rules of this module:

- :func:`import_asyncio_without_ssl` imports asyncio as on a Python built
  without ``ssl``, a build asyncio supports: while asyncio loads, ``import
  ssl`` fails (a ``None`` entry in ``sys.modules``, the import system's
  documented way to refuse a module); the entry is then removed, so a later
  ``import ssl`` (CPD over https, paho for the fleet bridge) works as ever.
- Only asyncio's *own* TLS is gone for the process: ``ssl=`` to
  ``open_connection``/``start_server``/``start_tls`` raises. The ``smd`` commands
  that call it are listed in :data:`smdbus.cli.NO_ASYNCIO_TLS`.
- It does nothing once asyncio or ssl is imported (tests, a program that
  embeds smdbus): it never takes TLS away from code that has it.
"""

from __future__ import annotations

import sys


def import_asyncio_without_ssl() -> bool:
    """Import asyncio with ``ssl`` held back; True if it did, False if it was too late."""
    if "asyncio" in sys.modules or "ssl" in sys.modules:
        return False
    sys.modules["ssl"] = None  # type: ignore[assignment]
    try:
        import asyncio  # noqa: F401
    finally:
        del sys.modules["ssl"]
    return True
