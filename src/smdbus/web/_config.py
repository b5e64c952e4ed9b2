"""The ``[web]`` table of the daemon's configuration: checked here, used by the service.

Rules
-----
- Every key is optional and checked (type and range); an unknown key is an
  error. :class:`WebConfigError` names the field inside the table (``port``);
  the daemon's config loader adds the file and the ``web.`` prefix.
- Safe by default: off; when on, TCP on 127.0.0.1 only, a Unix socket only
  the daemon's user can open, a token on every request, sending from the page
  off. Listening on another address is possible only by writing it here.
- This module opens nothing; it builds values (stdlib only, so the daemon's
  config loader can call it without the ``web`` extra installed).
"""

from __future__ import annotations

import ipaddress
import os
import pwd
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from smdbus.policy import Identity

DEFAULT_PORT = 8765


class WebConfigError(ValueError):
    """A ``[web]`` value that cannot be used: ``field`` is its key, ``problem`` says why."""

    def __init__(self, field: str, problem: str) -> None:
        self.field, self.problem = field, problem
        super().__init__(f"{field}: {problem}")


@dataclass(frozen=True)
class WebConfig:
    """``[web]``: the live web view (docs/web.md)."""

    enabled: bool = False
    host: str = "127.0.0.1"
    """TCP address to listen on; "" = no TCP (the Unix socket alone)."""
    port: int = DEFAULT_PORT
    """TCP port; 0 = any free port (tests; ``smd web-url`` tells which)."""
    unix_socket: bool = True
    """Also listen on ``<runtime_dir>/web.sock`` (mode 0600: the daemon's user only)."""
    runtime_dir: Path | None = None
    """Where the socket and ``web.json`` (the URL and token for ``smd web-url``) go."""
    token_file: Path | None = None
    """A file holding the token (kept across restarts); None: a new random token each start."""
    ring: int = 2000
    """Messages kept for ``/api/messages`` and for resuming an event stream."""
    max_rate: int = 200
    """Messages a second passed on to the page; the rest are counted per class, not shown."""
    max_clients: int = 16
    """HTTP connections at once (event streams included)."""
    allow_send: bool = False
    """Whether the page may publish (``POST /api/send``)."""
    send_as: str = "nobody"
    """The user (name or uid) the page's sends are checked as against the bus's access policy,
    as any peer of that user would be: the token opens the page, it does not make its holder
    the daemon."""

    def directory(self) -> Path:
        """The runtime directory, configured or the default for this user."""
        return self.runtime_dir if self.runtime_dir is not None else default_runtime_dir()

    def is_loopback(self) -> bool:
        if not self.host:
            return True
        if self.host == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return False


def default_runtime_dir() -> Path:
    """``$XDG_RUNTIME_DIR/smd``; as root ``/run/smd``; else ``/tmp/smd-<uid>``."""
    xdg = os.environ.get("XDG_RUNTIME_DIR")
    if xdg:
        return Path(xdg) / "smd"
    if os.geteuid() == 0:
        return Path("/run/smd")
    return Path(f"/tmp/smd-{os.geteuid()}")


WEB_TOML = f"""\
[web]
enabled = false           # the live web view (also: smd daemon --web); docs/web.md
host = "127.0.0.1"        # TCP address ("" = none); anything but loopback opens it to the network
port = {DEFAULT_PORT}               # 0 = any free port (smd web-url tells which)
unix_socket = true        # also <runtime_dir>/web.sock, mode 0600
runtime_dir = ""          # "" = $XDG_RUNTIME_DIR/smd, /run/smd as root, else /tmp/smd-<uid>
token_file = ""           # a file holding the token; "" = a new random token each start
ring = {WebConfig.ring}               # messages kept (/api/messages, resuming an event stream)
max_rate = {WebConfig.max_rate}            # messages a second shown; the rest are counted per class
max_clients = {WebConfig.max_clients}          # HTTP connections at once
allow_send = false        # let the page publish (POST /api/send)
send_as = "nobody"        # the user the page's sends are checked as against the access policy
"""

_BOUNDS: dict[str, tuple[int, int]] = {
    "port": (0, 65535),
    "ring": (1, 100_000),
    "max_rate": (1, 100_000),
    "max_clients": (1, 1024),
}
_BOOLS = ("enabled", "unix_socket", "allow_send")
_PATHS = ("runtime_dir", "token_file")


def parse_web_config(table: Mapping[str, Any], *, base: Path) -> WebConfig:
    """A checked :class:`WebConfig` from the ``[web]`` TOML table; relative paths from ``base``."""
    values: dict[str, Any] = {}
    for key, value in table.items():
        if key in _BOOLS:
            if not isinstance(value, bool):
                raise WebConfigError(key, f"must be true or false, got {value!r}")
            values[key] = value
        elif key in _BOUNDS:
            lo, hi = _BOUNDS[key]
            if isinstance(value, bool) or not isinstance(value, int):
                raise WebConfigError(key, f"must be a whole number, got {value!r}")
            if not lo <= value <= hi:
                raise WebConfigError(key, f"must be {lo}..{hi}, got {value}")
            values[key] = value
        elif key == "send_as":
            if isinstance(value, bool) or not isinstance(value, (str, int)):
                raise WebConfigError(key, f"must be a user name or uid, got {value!r}")
            try:
                sender_identity(str(value))
            except LookupError as e:
                raise WebConfigError(key, str(e)) from None
            values[key] = str(value)
        elif key in _PATHS or key == "host":
            if not isinstance(value, str):
                raise WebConfigError(key, f"must be a string, got {value!r}")
            if key == "host":
                values[key] = value
            elif value:
                p = Path(value).expanduser()
                values[key] = p if p.is_absolute() else base / p
        else:
            known = ", ".join(sorted((*_BOOLS, *_BOUNDS, *_PATHS, "host", "send_as")))
            raise WebConfigError(key, f"unknown key; known keys here: {known}")
    config = WebConfig(**values)
    if config.enabled and not config.host and not config.unix_socket:
        raise WebConfigError("host", 'is "" and unix_socket is false: nowhere to listen')
    return config


def sender_identity(user: str) -> Identity:
    """The identity the page's sends are checked as: ``user`` (a name or a uid) with its
    primary and supplementary groups, as the kernel would vouch for a process of that user.

    Raises LookupError naming the user when there is no such user.
    """
    try:
        entry = pwd.getpwuid(int(user)) if user.isdigit() else pwd.getpwnam(user)
    except (KeyError, OverflowError):
        raise LookupError(f"no such user {user!r}") from None
    groups = frozenset(os.getgrouplist(entry.pw_name, entry.pw_gid))
    return Identity(entry.pw_uid, entry.pw_gid, None, groups, comm="web view")
