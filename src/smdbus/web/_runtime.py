"""``web.json``: how ``smd web-url`` finds the running view (its URL and token).

Rules
-----
- The daemon writes it in the runtime directory when the view is up and
  removes it when the view stops; the directory is made 0700 and the file
  0600 (it holds the token), written whole (a temporary file renamed).
- The reader gets a clear error naming the path when there is none (the
  daemon is not running with the view, or runs as another user).
- A token file (``web.token_file``) keeps the same token across restarts:
  read when it exists, else made (0600) with a new token.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

FILE = "web.json"
SOCKET = "web.sock"
MIN_TOKEN = 16


class RuntimeInfoError(RuntimeError):
    """No usable ``web.json`` (or token file); the message says where and why."""


def prepare_dir(directory: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(directory, 0o700)


def write_info(directory: Path, info: dict[str, Any]) -> Path:
    path = directory / FILE
    tmp = directory / f".{FILE}.{os.getpid()}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(info, f, indent=1)
        f.write("\n")
    os.replace(tmp, path)
    return path


def remove_info(directory: Path, pid: int) -> None:
    """Remove ``web.json`` if this process wrote it (a newer daemon's stays)."""
    path = directory / FILE
    try:
        if json.loads(path.read_text()).get("pid") == pid:
            path.unlink()
    except (OSError, ValueError, AttributeError):
        pass


def read_info(directory: Path) -> dict[str, Any]:
    path = directory / FILE
    try:
        info = json.loads(path.read_text())
    except FileNotFoundError:
        raise RuntimeInfoError(
            f"{path}: not found (is `smd daemon --web` running, as this user, "
            "with this runtime directory?)"
        ) from None
    except (OSError, ValueError) as e:
        raise RuntimeInfoError(f"{path}: cannot read it: {e}") from None
    if not isinstance(info, dict) or not isinstance(info.get("token"), str):
        raise RuntimeInfoError(f"{path}: not a web.json written by smd daemon")
    return info


def load_token(path: Path | None) -> str:
    """The token kept in ``path`` (made if missing), or a new one when ``path`` is None."""
    from smdbus.web._auth import new_token

    if path is None:
        return new_token()
    try:
        token = path.read_text().strip()
    except FileNotFoundError:
        token = new_token()
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(token + "\n")
        return token
    except OSError as e:
        raise RuntimeInfoError(f"web.token_file {path}: cannot read it: {e}") from None
    if len(token) < MIN_TOKEN or not token.isprintable() or " " in token:
        raise RuntimeInfoError(
            f"web.token_file {path}: the token must be at least {MIN_TOKEN} printable "
            "characters without spaces"
        )
    return token
