"""systemd integration without libsystemd: readiness notification and socket activation.

Both are small, stable protocols (see sd_notify(3) and sd_listen_fds(3)):

- **Notify**: when ``NOTIFY_SOCKET`` is set, send datagrams such as
  ``READY=1`` or ``STATUS=...`` to that Unix socket (a path, or an abstract
  name spelled ``@name``). The daemon says READY=1 when the system reaches
  OPERATIONAL, STATUS= at each state, RELOADING=1 on SIGHUP and STOPPING=1 on
  the way out. Without ``NOTIFY_SOCKET`` every call is a no-op.
- **Socket activation**: when ``LISTEN_PID`` is our pid and ``LISTEN_FDS``
  is at least 1, the listening sockets are fds 3, 4, ... The daemon takes
  fd 3 (a listening ``AF_UNIX`` stream socket) for its proxy. The variables
  are removed from the environment once read, so children do not inherit
  them (as ``sd_listen_fds(1)`` does).
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import stat
from collections.abc import MutableMapping

from smdbus.scheduler import LoopScheduler, Scheduler, Timer

log = logging.getLogger("smdbus.daemon.systemd")

SD_LISTEN_FDS_START = 3
_MAX_PENDING = 32
_RETRY_S = 0.01


def _status_only(message: str) -> bool:
    return message.startswith("STATUS=") and "\n" not in message


class ActivationError(RuntimeError):
    """The environment says we were socket-activated, but the socket is not usable."""


class SystemdNotifier:
    """Sends sd_notify messages to ``NOTIFY_SOCKET`` (or nowhere when it is unset).

    ``scheduler``: where a message that found the receiver's queue full is retried
    (:attr:`scheduler`; None: the running loop's, if any, at the time).
    """

    def __init__(
        self,
        address: str | None = None,
        *,
        enabled: bool = True,
        scheduler: Scheduler | None = None,
    ) -> None:
        self.scheduler = scheduler
        if address is None:
            address = os.environ.get("NOTIFY_SOCKET") or None
        self.address: str | None = None
        if enabled and address:
            self.address = "\0" + address[1:] if address.startswith("@") else address
        self.sent: list[str] = []
        """Every message sent (for logs and tests)."""
        self.errors = 0
        self.deferred = 0
        """Messages that had to wait because the receiver's queue was full."""
        self.dropped = 0
        """Waiting messages given up (a STATUS overtaken by a newer one, an overflow, or what
        the receiver still could not take at :meth:`close`)."""
        self._sock: socket.socket | None = None
        self._pending: list[str] = []
        self._retry: Timer | None = None

    @property
    def _shown(self) -> str:
        return (self.address or "").replace("\0", "@")

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def notify(self, *fields: str) -> bool:
        """Send ``fields`` (``"READY=1"``, ``"STATUS=..."``) in one datagram.

        True when sent now. When the receiver's queue is full (it holds only
        ``net.unix.max_dgram_qlen`` datagrams, 10 by default, and a boot
        sends more than that in a millisecond) the message waits, in order,
        and is retried from the running loop: READY=1 must never be lost.
        Only a STATUS overtaken by a newer STATUS is dropped (counted).
        """
        if self.address is None or not fields:
            return False
        message = "\n".join(f.replace("\n", " ") for f in fields)
        if self._pending:
            self._defer(message)
            return False
        outcome = self._send(message)
        if outcome == "full":
            self._defer(message)
        return outcome == "sent"

    def _send(self, message: str) -> str:
        """One datagram: "sent", "full" (try again later) or "failed" (counted, not retried)."""
        assert self.address is not None
        try:
            if self._sock is None:
                # Non-blocking: a receiver that does not read must never stall the daemon.
                self._sock = socket.socket(
                    socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC | socket.SOCK_NONBLOCK
                )
            self._sock.sendto(message.encode(), self.address)
        except BlockingIOError:
            return "full"
        except OSError as e:
            self.errors += 1
            if self.errors == 1:
                log.warning("sd_notify to %r failed: %s", self._shown, e)
            return "failed"
        self.sent.append(message)
        return "sent"

    def _defer(self, message: str) -> None:
        pending = self._pending
        if pending and _status_only(message) and _status_only(pending[-1]):
            pending[-1] = message  # only the newest status matters
            self.dropped += 1
        elif len(pending) >= _MAX_PENDING:
            log.warning("sd_notify: %r is not reading; %s dropped", self._shown, pending[0])
            pending.pop(0)
            pending.append(message)
            self.dropped += 1
        else:
            pending.append(message)
        self.deferred += 1
        self._schedule_retry()

    def _schedule_retry(self) -> None:
        if self._retry is not None:
            return
        scheduler = self.scheduler
        if scheduler is None:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                return  # no loop: the next notify() tries again
            scheduler = LoopScheduler(loop)
        self._retry = scheduler.call_later(_RETRY_S, self._flush)

    def _flush(self) -> None:
        self._retry = None
        if self._send_pending():
            self._schedule_retry()

    def _send_pending(self) -> bool:
        """Send what waits, in order; True when the receiver's queue is full again."""
        while self._pending and self.address is not None:
            if self._send(self._pending[0]) == "full":
                return True
            self._pending.pop(0)
        return False

    @property
    def pending(self) -> list[str]:
        """Messages waiting for the receiver to read (oldest first)."""
        return list(self._pending)

    def ready(self, status: str | None = None) -> bool:
        return self.notify("READY=1", *([f"STATUS={status}"] if status else []))

    def status(self, text: str) -> bool:
        return self.notify(f"STATUS={text}")

    def reloading(self, monotonic_us: int) -> bool:
        return self.notify("RELOADING=1", f"MONOTONIC_USEC={monotonic_us}")

    def stopping(self) -> bool:
        return self.notify("STOPPING=1")

    def close(self) -> None:
        """Send what waits, once more; what the receiver still cannot take is given up, logged.

        No retry is set from here: a flush that met the full queue would otherwise
        have one reopen a socket after this closed it and send what was just
        reported as never read.
        """
        if self._retry is not None:
            self._retry.cancel()
            self._retry = None
        self._send_pending()
        if self._pending:
            log.warning("sd_notify: %d messages never read by %r", len(self._pending), self._shown)
            self.dropped += len(self._pending)
            self._pending.clear()
        if self._sock is not None:
            self._sock.close()
            self._sock = None


def listen_fds(
    environ: MutableMapping[str, str] | None = None, *, pid: int | None = None, unset: bool = True
) -> list[int]:
    """The fds systemd passed us (3, 4, ...), or [] when we were not socket-activated."""
    env = os.environ if environ is None else environ
    raw_pid, raw_fds = env.get("LISTEN_PID"), env.get("LISTEN_FDS")
    if unset:
        for key in ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"):
            env.pop(key, None)
    if raw_pid is None or raw_fds is None:
        return []
    try:
        listen_pid, count = int(raw_pid), int(raw_fds)
    except ValueError:
        raise ActivationError(
            f"LISTEN_PID={raw_pid!r} / LISTEN_FDS={raw_fds!r} are not numbers"
        ) from None
    if listen_pid != (os.getpid() if pid is None else pid):
        return []  # meant for another process (a parent that exec'd us without resetting)
    if count < 1:
        return []
    return list(range(SD_LISTEN_FDS_START, SD_LISTEN_FDS_START + count))


def activated_socket(fd: int) -> socket.socket:
    """The passed fd as a listening Unix stream socket; ActivationError says what is wrong."""
    try:
        mode = os.fstat(fd).st_mode
    except OSError as e:
        raise ActivationError(f"LISTEN_FDS names fd {fd}, which is not open: {e}") from None
    if not stat.S_ISSOCK(mode):
        raise ActivationError(f"fd {fd} from systemd is not a socket")
    sock = socket.socket(fileno=fd)
    if sock.family != socket.AF_UNIX or sock.type != socket.SOCK_STREAM:
        sock.detach()
        raise ActivationError(
            f"fd {fd} from systemd is a {sock.family.name}/{sock.type.name} socket; "
            "the proxy needs ListenStream= with a Unix socket path or @name"
        )
    if not sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN):
        sock.detach()
        raise ActivationError(f"fd {fd} from systemd is not listening")
    sock.setblocking(False)
    os.set_inheritable(fd, False)
    return sock


def socket_address(sock: socket.socket) -> str:
    """A bound Unix socket's address in kernel form (``"\\0name"`` for abstract)."""
    name = sock.getsockname()
    if isinstance(name, bytes):
        return name.decode("utf-8", "surrogateescape")
    return str(name)
