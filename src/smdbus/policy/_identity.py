"""Who is on the other end of a Unix socket: uid, gid, groups, pid and command name.

Rules:

- The kernel's word comes first. ``SO_PEERCRED`` gives the pid, uid and gid
  the peer had when it connected; ``SO_PEERGROUPS`` its supplementary groups
  at that moment. Nothing the peer sends changes them.
- ``/proc`` is asked only for what the socket cannot say (the command name,
  and the groups on a kernel without ``SO_PEERGROUPS``). A pid can be reused
  once its process exits, so what ``/proc/PID`` says is believed only when it
  still describes the connecting process: its real uid must be the
  credential's uid, and where the kernel offers ``SO_PEERPIDFD`` (Linux 6.5,
  option 77) the pidfd must still refer to a live process after the read.
  Otherwise the command name is ``?`` and the groups are the ones the socket
  gave (or none).
- The pidfd is closed once the identity is read: keeping one per connection
  would spend a descriptor per peer on a proxy whose descriptors bound its
  connections. The identity records whether it was checked (:attr:`Identity.pidfd`).
- The command name is peer-chosen text (``prctl(PR_SET_NAME)``): it is kept
  escaped (:func:`smdbus._escape.printable`), ready for a log line or a screen.

The parsing of what the kernel returns is pure (:func:`parse_peercred`,
:func:`parse_peergroups`, :func:`parse_status`); :func:`read_identity` is the
thin adapter that asks a socket and ``/proc``.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import struct
from dataclasses import dataclass

from smdbus._escape import printable

SO_PEERGROUPS = 59
"""``getsockopt`` option: the peer's supplementary groups (Linux 4.13)."""
SO_PEERPIDFD = 77
"""``getsockopt`` option: a pidfd of the peer process (Linux 6.5)."""
MAX_GROUPS = 65536
"""NGROUPS_MAX: the most supplementary groups a process can have."""

_PEERCRED = struct.Struct("3i")
_COMM_MAX = 64
"""Bytes read from ``/proc/PID/comm`` (the kernel keeps 16)."""
UNKNOWN_COMM = "?"


@dataclass(frozen=True, slots=True)
class Identity:
    """A peer as the kernel vouches for it. ``uid`` None: the socket gave no credentials."""

    uid: int | None
    gid: int | None
    pid: int | None
    groups: frozenset[int] = frozenset()
    comm: str = UNKNOWN_COMM
    """Escaped command name, or ``?`` when it could not be read reliably."""
    pidfd: bool = False
    """The /proc reads were checked against a pidfd (no pid reuse could mislead them)."""

    def in_group(self, gid: int) -> bool:
        return gid == self.gid or gid in self.groups

    def label(self) -> str:
        """``pid 42 uid 1000 comm 'sensor'`` for log lines (the comm is escaped already)."""
        if self.uid is None:
            return "unknown peer"
        return f"pid {self.pid} uid {self.uid} comm '{self.comm}'"

    def to_json(self) -> dict[str, object]:
        return {
            "uid": self.uid,
            "gid": self.gid,
            "pid": self.pid,
            "groups": sorted(self.groups),
            "comm": self.comm,
        }


NOBODY_KNOWN = Identity(None, None, None)
"""A peer of a socket without credentials (not a Unix socket)."""


def parse_peercred(raw: bytes) -> tuple[int, int, int]:
    """``(pid, uid, gid)`` from ``SO_PEERCRED``'s ``struct ucred``."""
    pid, uid, gid = _PEERCRED.unpack(raw[: _PEERCRED.size])
    return pid, uid, gid


def parse_peergroups(raw: bytes) -> frozenset[int]:
    """Supplementary gids from ``SO_PEERGROUPS`` (an array of ``gid_t``)."""
    n = len(raw) // 4
    return frozenset(struct.unpack(f"{n}I", raw[: n * 4]))


def parse_status(text: str) -> tuple[int | None, frozenset[int]]:
    """The real uid and the supplementary groups from ``/proc/PID/status``."""
    uid: int | None = None
    groups: frozenset[int] = frozenset()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key == "Uid":
            fields = value.split()
            uid = int(fields[0]) if fields else None
        elif key == "Groups":
            groups = frozenset(int(g) for g in value.split())
    return uid, groups


def _peer_groups(sock: socket.socket) -> frozenset[int] | None:
    size = 64 * 4
    while size <= MAX_GROUPS * 4:
        try:
            return parse_peergroups(sock.getsockopt(socket.SOL_SOCKET, SO_PEERGROUPS, size))
        except OSError as exc:
            if exc.errno != 34:  # ERANGE: a bigger buffer is needed
                return None
            size *= 16
    return None  # pragma: no cover - more than NGROUPS_MAX


def _peer_pidfd(sock: socket.socket) -> int | None:
    try:
        raw = sock.getsockopt(socket.SOL_SOCKET, SO_PEERPIDFD, 4)
    except OSError:  # ENOPROTOOPT before Linux 6.5; ESRCH when the peer is gone
        return None
    fd: int = struct.unpack("i", raw)[0]
    return fd if fd >= 0 else None


def _alive(pidfd: int) -> bool:
    try:
        signal.pidfd_send_signal(pidfd, 0)
    except ProcessLookupError:
        return False
    except OSError:  # EPERM: alive, just not ours to signal
        return True
    return True


def _read(path: str, limit: int) -> str | None:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        return os.read(fd, limit).decode("utf-8", "replace")
    except OSError:
        return None
    finally:
        os.close(fd)


def read_identity(sock: socket.socket, *, proc: str = "/proc") -> Identity:
    """Ask the kernel who ``sock``'s peer is (see the module's rules)."""
    try:
        pid, uid, gid = parse_peercred(
            sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _PEERCRED.size)
        )
    except OSError:
        return NOBODY_KNOWN
    pidfd = _peer_pidfd(sock)
    try:
        groups = _peer_groups(sock)
        status = _read(f"{proc}/{pid}/status", 64 * 1024)
        comm = _read(f"{proc}/{pid}/comm", _COMM_MAX)
        same = status is not None and parse_status(status)[0] == uid
        if pidfd is not None and not _alive(pidfd):
            same = False  # it exited: the pid may be another process's by now
    finally:
        if pidfd is not None:
            with contextlib.suppress(OSError):
                os.close(pidfd)
    if groups is None:
        groups = parse_status(status)[1] if same and status is not None else frozenset()
    shown = printable(comm.rstrip("\n")) if same and comm else UNKNOWN_COMM
    return Identity(uid, gid, pid, groups, shown, pidfd is not None and same)
