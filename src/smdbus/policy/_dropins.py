"""Drop-in rule files in a directory, read only when root owns them and only root may write them.

As ubus' ``acl.d``: a file in the directory that another user could have
written would let that user grant themselves any class, so it is *skipped*,
with the reason given back (the caller logs it), never trusted:

- only regular ``*.toml`` files, read in name order (``10-net.toml`` before
  ``20-ui.toml``); anything else (a directory, a socket, a symbolic link:
  opened with ``O_NOFOLLOW``) is skipped;
- the file must be owned by ``trusted_uid`` (root) and not writable by group
  or others; the check is made on the open descriptor (``fstat``), so the
  file cannot be swapped between the check and the read;
- the directory itself must pass the same test, or nothing in it is read
  (whoever may write it may add files);
- at most :data:`MAX_FILES` files; the rest are skipped and said so.

A file that passes and does not parse is an *error* (the whole load fails,
and a reload keeps the old policy): silently dropping half a policy could
open what it closed.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path

from smdbus.policy._config import MAX_DROPIN_BYTES, parse_dropin
from smdbus.policy._rules import Resolver, Rule

MAX_FILES = 256
"""Drop-in files read from one directory."""


@dataclass(frozen=True)
class DropIns:
    rules: tuple[Rule, ...]
    skipped: tuple[str, ...]
    """One line per file left out, saying which and why."""


def _unsafe(st: os.stat_result, trusted_uid: int) -> str | None:
    if st.st_uid != trusted_uid:
        return f"owned by uid {st.st_uid}, not {trusted_uid}"
    if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        return f"writable by group or others (mode {stat.S_IMODE(st.st_mode):04o})"
    return None


def load_dropins(
    directory: Path, *, trusted_uid: int = 0, resolver: Resolver | None = None
) -> DropIns:
    """The rules of every trusted file in ``directory`` (missing directory: none)."""
    try:
        dst = os.stat(directory)
    except FileNotFoundError:
        return DropIns((), ())
    why = _unsafe(dst, trusted_uid)
    if not stat.S_ISDIR(dst.st_mode):
        why = "not a directory"
    if why is not None:
        return DropIns((), (f"{directory}: skipped, {why}",))
    names = sorted(n for n in os.listdir(directory) if n.endswith(".toml"))
    skipped: list[str] = []
    if len(names) > MAX_FILES:
        skipped.append(
            f"{directory}: {len(names) - MAX_FILES} files past the first {MAX_FILES} skipped"
        )
        names = names[:MAX_FILES]
    rules: list[Rule] = []
    for name in names:
        path = directory / name
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError as exc:
            skipped.append(f"{path}: skipped, cannot open: {exc.strerror}")
            continue
        try:
            st = os.fstat(fd)
            reason = (
                "not a regular file" if not stat.S_ISREG(st.st_mode) else _unsafe(st, trusted_uid)
            )
            if reason is not None:
                skipped.append(f"{path}: skipped, {reason}")
                continue
            data = os.read(fd, MAX_DROPIN_BYTES + 1)
        finally:
            os.close(fd)
        rules.extend(parse_dropin(data, str(path), resolver))
    return DropIns(tuple(rules), tuple(skipped))
