"""The web view as the daemon runs it: the bus, the proxy and the state manager, served.

Theory of operation
-------------------
:meth:`WebService.start` (on the daemon's loop) registers a participant on
every class (the view sees what ``smd monitor`` sees; with a proxy, a tap of
its monitors, which also names the connection that sent each message), an observing notifier
and a listener on the state manager (the boot timeline), then listens on
TCP (127.0.0.1 by default) and a Unix socket, and writes ``web.json`` for
``smd web-url``. Two timers run from the injected scheduler:

- every :data:`FLUSH` s the messages the sampler passed on are written to the
  event streams in one write per stream (never one per message), with a
  snapshot when the state changed;
- every second the class rates move on, the peers are read from the proxy
  (only while someone watches: up to :data:`MAX_PEERS` open and
  :data:`MAX_CLOSED` recently closed) and a snapshot goes to every stream.

A stream whose client does not read is cut once :data:`MAX_STREAM_BUFFER`
bytes wait for it (counted in ``slow_disconnects``); the browser reconnects
with ``Last-Event-ID`` and resumes from the ring.

Rules: every route wants the token (:mod:`smdbus.web._auth`); answers hold
peer-supplied text only inside JSON strings, and the page shows them with
``textContent``; sending from the page is off unless ``allow_send``.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import os
import time
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import Any

from smdbus.classes import ALL_CLASSES, format_mask, parse_mask
from smdbus.errors import PayloadTooLarge, QueueFull
from smdbus.policy import Bucket, Identity
from smdbus.scheduler import LoopScheduler, Scheduler, Timer
from smdbus.web import _sse as sse
from smdbus.web._auth import allowed, presented, set_cookie
from smdbus.web._config import WebConfig, sender_identity
from smdbus.web._http import HttpServer, Request, Response, Stream, StreamWriter
from smdbus.web._metrics import CONTENT_TYPE, Exposition
from smdbus.web._model import BusView
from smdbus.web._payload import visible
from smdbus.web._runtime import SOCKET, prepare_dir, remove_info, write_info

log = logging.getLogger("smdbus.web")

_POLICY_BITS = 0xFFFFFFFF
"""The class bits the access policy speaks of (as the proxy's)."""

FLUSH = 0.1
"""Seconds between writes of new messages to the streams (the page's latency)."""
MAX_PEERS = 256
MAX_CLOSED = 32
PEERS_EVERY = 0.5
"""Seconds a peers snapshot is reused for (by the API and new streams)."""
MAX_STREAM_BUFFER = 512 * 1024
REPLAY_ON_CONNECT = 200
"""Messages a fresh stream starts with (a resumed one gets what it missed)."""
SEND_RATE = 10
"""Messages a second the page may publish (when ``allow_send``)."""
_STATIC = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/app.js": ("app.js", "text/javascript; charset=utf-8"),
    "/style.css": ("style.css", "text/css; charset=utf-8"),
}


@dataclasses.dataclass(eq=False)
class _Sub:
    writer: StreamWriter
    sent_upto: int


class WebService:
    """The live web view of one daemon (or of any bus, proxy and state manager)."""

    def __init__(
        self,
        config: WebConfig,
        *,
        bus: Any,
        proxy: Any = None,
        manager: Any = None,
        status: Callable[[], Any] | None = None,
        scheduler: Scheduler | None = None,
    ) -> None:
        self.config = config
        self.bus = bus
        self.proxy = proxy
        self.manager = manager
        self._status = status
        self._scheduler = scheduler
        self.token = ""
        self.epoch = os.urandom(4).hex()
        self.port: int | None = None
        self.socket_path: Path | None = None
        self.view: BusView | None = None
        self._server: HttpServer | None = None
        self._subs: set[_Sub] = set()
        self._timers: list[Timer] = []
        self._undo: list[Callable[[], None]] = []
        self._static: dict[str, bytes] = {}
        self._commands: dict[int, str] = {}
        self._peers_wanted = True
        self._peers_at = float("-inf")
        self._send_bucket: Bucket | None = None
        self._link: Any = None
        self.slow_disconnects = 0
        self.sent = 0
        self.refused_policy = 0
        self._sender: Identity | None = None

    # -- lifecycle ---------------------------------------------------------------

    @property
    def scheduler(self) -> Scheduler:
        if self._scheduler is None:
            self._scheduler = LoopScheduler(asyncio.get_running_loop())
        return self._scheduler

    def url(self) -> str:
        """The page's address with the token (TCP if any, else over the Unix socket)."""
        host = self.config.host
        if self.port is not None:
            shown = f"[{host}]" if ":" in host else host
            return f"http://{shown}:{self.port}/?token={self.token}"
        return f"http+unix://{self.socket_path}/?token={self.token}"

    async def start(self) -> None:
        from smdbus.web._runtime import load_token

        cfg = self.config
        sched = self.scheduler
        self.token = load_token(cfg.token_file)
        for name, (filename, _) in _STATIC.items():
            self._static[name] = (resources.files("smdbus.web") / "static" / filename).read_bytes()
        initial = self.manager.state.published_name if self.manager is not None else "—"
        now = sched.now()
        view = BusView(
            ring=cfg.ring,
            max_rate=cfg.max_rate,
            clock=sched.now,
            wall_offset=time.time() - now,
            initial_state=initial,
        )
        self.view = view
        self._send_bucket = Bucket(SEND_RATE, SEND_RATE, now)
        if cfg.allow_send:
            self._sender = sender_identity(cfg.send_as)
        monitors = getattr(self.proxy, "monitors", None)
        if monitors is not None:  # the proxy names the sending connection of each message
            tap = monitors.tap(ALL_CLASSES, view.message_from)
            self._undo.append(lambda: monitors.untap(tap))
        else:
            part = self.bus.register(ALL_CLASSES, view.message, name="web-view")
            self._undo.append(lambda: self.bus.unregister(part))
        if self.manager is not None:
            self._link = self.manager.register(self._observe, "web-view")
            self._undo.append(lambda: self.manager.unregister(self._link))
            self._undo.append(self.manager.add_listener(self._entered))
        self._server = HttpServer(self._handle, max_clients=cfg.max_clients)
        try:
            if cfg.host:
                self.port = await self._server.listen_tcp(cfg.host, cfg.port)
            if cfg.unix_socket:
                directory = cfg.directory()
                prepare_dir(directory)
                path = directory / SOCKET
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
                await self._server.listen_unix(str(path))
                os.chmod(path, 0o600)
                self.socket_path = path
            directory = cfg.directory()
            prepare_dir(directory)
            write_info(directory, self.info())
        except BaseException:
            await self.close()
            raise
        if not cfg.is_loopback():
            log.warning("web view listens on %s:%s, open to the network", cfg.host, self.port)
        self._every(FLUSH, self._flush)
        self._every(1.0, self._tick)

    def info(self) -> dict[str, Any]:
        """What ``web.json`` says (``smd web-url`` reads it)."""
        return {
            "pid": os.getpid(),
            "url": self.url(),
            "token": self.token,
            "host": self.config.host,
            "port": self.port,
            "socket": str(self.socket_path) if self.socket_path else None,
        }

    async def close(self) -> None:
        for timer in self._timers:
            timer.cancel()
        self._timers.clear()
        for undo in reversed(self._undo):
            with contextlib.suppress(ValueError):
                undo()
        self._undo.clear()
        for sub in list(self._subs):
            sub.writer.close()
        self._subs.clear()
        if self._server is not None:
            await self._server.close()
            self._server = None
        if self.socket_path is not None:
            with contextlib.suppress(OSError):
                self.socket_path.unlink()
        remove_info(self.config.directory(), os.getpid())

    def _every(self, period: float, fn: Callable[[], None]) -> None:
        index = len(self._timers)

        def fire() -> None:
            self._timers[index] = self.scheduler.call_later(period, fire)
            try:
                fn()
            except Exception:
                log.exception("web view: %s failed", getattr(fn, "__name__", fn))

        self._timers.append(self.scheduler.call_later(period, fire))

    # -- the state manager -----------------------------------------------------

    def _observe(self, manager: Any, link: Any, current: Any, target: Any) -> int:
        """An observing notifier: never refuses; sees each attempted move (see _timeline).

        It must be asked first (a notifier asked before it that refuses hides the
        attempt), so a notifier registered after it (the daemon re-registers its CPD gate
        on a policy reload) makes it register again, after the confirmation pass."""
        if current != target:
            if self.view is not None:
                held = manager.held_by.name if manager.held_by is not None else None
                self.view.attempt(current.published_name, target.published_name, held)
        elif manager.notifiers and manager.notifiers[0] is not link and link is self._link:
            manager.unregister(link)
            self._link = manager.register(self._observe, "web-view")
        return 0

    def _entered(self, previous: Any, new: Any) -> None:
        if self.view is not None:
            self.view.entered(new.published_name)

    def _holder(self) -> str | None:
        m = self.manager
        if m is None or not m.plan or m.held_by is None:
            return None
        return str(m.held_by.name)

    # -- timers ----------------------------------------------------------------------

    def _flush(self) -> None:
        view = self.view
        assert view is not None
        view.advance(self.scheduler.now())
        new = view.take_new()
        if not self._subs:
            return
        snapshot = b""
        if view.changed:
            view.changed = False
            snapshot = sse.event(json.dumps(self.state()), name="state")
        for sub in list(self._subs):
            chunk = self._messages(sub, new) + snapshot
            self._write(sub, chunk)

    def _tick(self) -> None:
        view = self.view
        assert view is not None
        view.tick()
        if self._subs or self._peers_wanted:
            self._refresh_peers()
            self._peers_wanted = False
        if self._subs:
            view.changed = False
            chunk = sse.event(json.dumps(self.snapshot()), name="snapshot")
            for sub in list(self._subs):
                self._write(sub, chunk)

    def _messages(self, sub: _Sub, new: list[tuple[int, str]]) -> bytes:
        parts = []
        for ident, text in new:
            if ident > sub.sent_upto:
                parts.append(sse.event(text, ident=f"{self.epoch}-{ident}"))
                sub.sent_upto = ident
        return b"".join(parts)

    def _write(self, sub: _Sub, chunk: bytes) -> None:
        if not chunk:
            return
        if sub.writer.buffered() > MAX_STREAM_BUFFER:
            self.slow_disconnects += 1
            log.info("web view: an event stream is %d bytes behind; cut", sub.writer.buffered())
            self._subs.discard(sub)
            sub.writer.close()
            return
        sub.writer.write(chunk)

    def _refresh_peers(self) -> None:
        """Read the peers from the proxy, at most every :data:`PEERS_EVERY` s (a record
        costs tens of µs; the API must not let a client make the loop do it at will)."""
        view = self.view
        if self.proxy is None or view is None:
            return
        now = self.scheduler.now()
        if now - self._peers_at < PEERS_EVERY:
            return
        self._peers_at = now
        infos = [*self.proxy.open_peers(0, MAX_PEERS), *self.proxy.closed_peers()[-MAX_CLOSED:]]
        commands: dict[int, str] = {}
        rows = []
        for p in infos:
            d = p.to_json()
            d["mask_hex"] = f"{p.mask:#x}"
            d["denials"] = p.refused  # messages the access policy refused from this peer
            for key in ("streamtype", "reason", "held"):
                if isinstance(d.get(key), str):
                    d[key] = visible(d[key])
            cmd = self._commands.get(p.id)
            if cmd is None:
                cmd = visible(_command(p.pid))
            commands[p.id] = d["command"] = cmd
            rows.append(d)
        self._commands = commands
        view.set_peers(rows)

    # -- what is shown ----------------------------------------------------------------

    def state(self) -> dict[str, Any]:
        """``/api/state``: the state, the boot timeline, the daemon's status, the counters."""
        assert self.view is not None
        m = self.manager
        status = self._status() if self._status is not None else None
        if dataclasses.is_dataclass(status) and not isinstance(status, type):
            status = dataclasses.asdict(status)
        return {
            "epoch": self.epoch,
            "now": time.time(),
            "state": m.state.published_name if m is not None else None,
            "boot": self.view.boot(self._holder()),
            "status": status,
            "web": {
                **self.view.counters(),
                "max_rate": self.config.max_rate,
                "streams": len(self._subs),
                "connections": self._server.connections if self._server else 0,
                "slow_disconnects": self.slow_disconnects,
                "allow_send": self.config.allow_send,
            },
        }

    def snapshot(self) -> dict[str, Any]:
        assert self.view is not None
        return {**self.state(), "classes": self.view.class_rows(), "peers": self.view.peers}

    def metrics(self) -> str:
        view = self.view
        assert view is not None
        e = Exposition()
        e.family(
            "smd_bus_messages_total",
            "counter",
            "Messages seen on the bus, per class.",
            [({"class": r["class"]}, r["count"]) for r in view.class_rows()],
        )
        c = view.counters()
        e.one("smd_web_messages_shown_total", "counter", "Messages shown on the page.", c["shown"])
        e.one(
            "smd_web_messages_skipped_total",
            "counter",
            "Messages counted but not passed on to the page (over web.max_rate).",
            c["skipped"],
        )
        e.one("smd_web_streams", "gauge", "Open event streams.", len(self._subs))
        e.one(
            "smd_web_slow_disconnects_total",
            "counter",
            "Event streams cut because their client did not read.",
            self.slow_disconnects,
        )
        if self.manager is not None:
            e.family(
                "smd_system_state",
                "gauge",
                "The system state (its lws number), labelled with its name.",
                [({"state": self.manager.state.published_name}, int(self.manager.state))],
            )
        if self.proxy is not None:
            for key, value in self.proxy.stats().items():
                if (
                    isinstance(value, int)
                    and not isinstance(value, bool)
                    and key != "congested_mask"
                ):
                    gauge = key in ("connections", "bus_queue", "waiting", "queries")
                    e.one(
                        f"smd_proxy_{key}" + ("" if gauge else "_total"),
                        "gauge" if gauge else "counter",
                        f"Proxy: {key.replace('_', ' ')}.",
                        value,
                    )
        return e.text()

    # -- HTTP ---------------------------------------------------------------------------

    async def _handle(self, req: Request) -> Response | Stream:
        if not allowed(self.token, presented(req.headers, req.query)):
            return Response(
                401,
                b"a token is required: see `smd web-url`\n",
                headers=[("www-authenticate", 'Bearer realm="smd"')],
            )
        if req.method == "POST" and req.path == "/api/send":
            return self._send(req)
        if req.method != "GET":
            return Response(405, b"method not allowed\n", headers=[("allow", "GET")])
        if req.path in _STATIC:
            if req.path == "/" and "token" in req.query:
                # keep the token in a cookie, out of the address bar and the history
                return Response(
                    302, headers=[("location", "/"), ("set-cookie", set_cookie(self.token))]
                )
            return Response(200, self._static[req.path], _STATIC[req.path][1])
        if req.path == "/api/events":
            return self._events(req)
        if req.path == "/metrics":
            return Response(200, self.metrics().encode(), CONTENT_TYPE)
        if req.path == "/api/messages":
            return self._api_messages(req)
        api: dict[str, Callable[[], Any]] = {
            "/api/state": self.state,
            "/api/classes": lambda: self.view.class_rows() if self.view else [],
            "/api/peers": self._api_peers,
        }
        if req.path in api:
            return _json(api[req.path]())
        return Response(404, b"not found\n")

    def _api_peers(self) -> list[dict[str, Any]]:
        self._refresh_peers()
        return self.view.peers if self.view else []

    def _api_messages(self, req: Request) -> Response:
        assert self.view is not None
        try:
            after = int(req.query.get("after", "0"))
            limit = min(int(req.query.get("limit", str(self.config.ring))), self.config.ring)
        except ValueError:
            return Response(400, b"after and limit must be whole numbers\n")
        got = self.view.messages(after, max(limit, 0))
        if req.query.get("format") == "jsonl":
            body = "".join(f"{r}\n" for r in got["records"])
            return Response(200, body.encode(), "application/x-ndjson")
        head = json.dumps({"epoch": self.epoch, "last_id": got["last_id"], "missed": got["missed"]})
        body = head[:-1] + ',"messages":[' + ",".join(got["records"]) + "]}"
        return Response(200, body.encode(), "application/json")

    def _events(self, req: Request) -> Stream:
        last = req.headers.get("last-event-id") or req.query.get("last_event_id")
        after = sse.resume_after(last, self.epoch)

        async def run(writer: StreamWriter) -> None:
            view = self.view
            assert view is not None
            resumed = after is not None
            start = after if after is not None else max(0, view.ring.last_id - REPLAY_ON_CONNECT)
            held, missed = view.ring.since(start)
            hello = {"epoch": self.epoch, "resumed": resumed, "missed": missed if resumed else 0}
            writer.write(sse.retry(1000) + sse.event(json.dumps(hello), name="hello"))
            sub = _Sub(writer, start)
            self._refresh_peers()
            writer.write(
                self._messages(sub, held) + sse.event(json.dumps(self.snapshot()), name="snapshot")
            )
            self._subs.add(sub)
            try:
                await writer.closed
            finally:
                self._subs.discard(sub)

        return Stream(run)

    def _send(self, req: Request) -> Response:
        if not self.config.allow_send:
            return Response(403, b"sending from the page is off (web.allow_send = false)\n")
        assert self._send_bucket is not None
        if not self._send_bucket.take(self.scheduler.now()):
            return Response(429, b"too many sends; slow down\n")
        try:
            doc = json.loads(req.body)
            cls = parse_mask(str(doc["class"]))
            payload = doc["payload"]
            if not isinstance(payload, str):
                raise TypeError("payload must be a string")
        except (ValueError, KeyError, TypeError) as e:
            return Response(400, f"expected {{'class': ..., 'payload': ...}}: {e}\n".encode())
        denied = self._denied(cls)
        if denied:
            self.refused_policy += 1
            who = self._sender.label() if self._sender is not None else "?"
            log.info("web view: refused a %s send from the page (as %s)", format_mask(cls), who)
            return Response(
                403,
                f"the bus's access policy does not let {self.config.send_as} send "
                f"{format_mask(denied)} (web.send_as)\n".encode(),
            )
        try:
            accepted = self.bus.send(cls, payload.encode())
        except (PayloadTooLarge, QueueFull) as e:
            return Response(503, f"{e}\n".encode())
        self.sent += int(accepted)
        return _json({"accepted": accepted})

    def _denied(self, cls: int) -> int:
        """The class bits of ``cls`` that ``web.send_as`` may not send, by the proxy's policy
        (the daemon's defaults when the view has no proxy): the page is held to the same
        rules as any peer of that user."""
        if self._sender is None:
            return cls
        access = getattr(self.proxy, "access", None)
        if access is not None:
            rules = access.policy.rules
        else:
            from smdbus.policy import default_rules

            rules = default_rules({0, os.getuid()})
        return int(cls & ~rules.masks(self._sender).send & _POLICY_BITS)


def _json(obj: Any) -> Response:
    return Response(200, json.dumps(obj).encode(), "application/json")


def _command(pid: int | None) -> str:
    """The peer's command name (``/proc/<pid>/comm``), or "" when it cannot be read."""
    if not pid:
        return ""
    try:
        with open(f"/proc/{pid}/comm", "rb") as f:
            return f.read(64).decode("utf-8", "replace").strip()
    except OSError:
        return ""
