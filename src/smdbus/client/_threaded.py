"""The client for programs that are not async: its own loop thread, blocking calls.

``send`` is the asyncio client's (thread-safe, never blocks); ``receive``
blocks the calling thread. Received messages wait in a bounded queue; when
it is full the client stops reading the proxy until the program catches up.
"""

from __future__ import annotations

import threading
from collections import deque
from typing import TYPE_CHECKING, Any

from smdbus.classes import ALL_CLASSES
from smdbus.client._connection import Client, ClientStats, Message, OnMessage
from smdbus.client._errors import ClientClosed
from smdbus.runtime import LoopThread
from smdbus.wire import DEFAULT_ADDRESS

if TYPE_CHECKING:
    from smdbus.bus import Bus
    from smdbus.client._bridge import Bridge


class ThreadedClient:
    """A :class:`Client` on a loop thread of its own (see :func:`connect_threaded`)."""

    def __init__(
        self,
        address: str = DEFAULT_ADDRESS,
        mask: int = ALL_CLASSES,
        *,
        wait: bool = True,
        on_message: OnMessage | None = None,
        bus: Bus | None = None,
        export_mask: int | None = None,
        **settings: Any,
    ) -> None:
        self.client = Client(address, mask, on_message=on_message, **settings)
        self._queue: deque[Message] = deque()
        self._cond = threading.Condition()
        self._closed = False
        if on_message is None and bus is None:
            self.client.set_sink(self._to_queue)
        self._runner = LoopThread(name="smdbus-client").start()
        try:
            if bus is not None:
                self._runner.run(self._bridge(bus, export_mask))
            self._runner.run(self.client.start(wait))
        except BaseException:
            self._runner.stop()
            raise

    async def _bridge(self, bus: Bus, export_mask: int | None) -> Bridge:
        return self.client.bridge(bus, export_mask)

    def _to_queue(self, cls: int, ts: int, payload: bytes) -> bool:
        with self._cond:
            q = self._queue
            q.append(Message(cls, ts, payload))
            self._cond.notify()
            return len(q) < self.client.max_inbox

    # -- the program's side ----------------------------------------------------

    def send(self, cls: int, payload: bytes | bytearray | memoryview | str) -> bool:
        """As :meth:`Client.send`: queue for the proxy (False: nobody listens) or raise at once."""
        return self.client.send(cls, payload)

    def send_json(self, cls: int, obj: Any) -> bool:
        return self.client.send_json(cls, obj)

    def receive(self, timeout: float | None = None) -> Message:
        """The next message; ``TimeoutError`` after ``timeout`` s, ``ClientClosed`` once closed."""
        with self._cond:
            if not self._cond.wait_for(lambda: self._queue or self._closed, timeout):
                raise TimeoutError(f"no message within {timeout} s")
            if not self._queue:
                raise ClientClosed("client is closed")
            msg = self._queue.popleft()
            resume = len(self._queue) == self.client.max_inbox // 2
        if resume:
            self._runner.loop.call_soon_threadsafe(self.client.resume_input)
        return msg

    def __iter__(self) -> ThreadedClient:
        return self

    def __next__(self) -> Message:
        try:
            return self.receive()
        except ClientClosed:
            raise StopIteration from None

    def drain(self, timeout: float | None = None, *, confirm: bool = False) -> int:
        """Block while the unsent buffer is over half its bound; see :meth:`Client.drain`.

        With ``confirm``: block until what was sent came back (within
        ``timeout``, default 5 s); returns how many did not.
        """
        if confirm:
            return self._runner.run(self.client.drain(confirm=True, timeout=timeout))
        self._runner.run(self.client.drain(), timeout)
        return 0

    def wait_connected(self, timeout: float | None = None) -> None:
        self._runner.run(self.client.wait_connected(timeout))

    @property
    def connected(self) -> bool:
        return self.client.connected

    def stats(self) -> ClientStats:
        return self.client.stats()

    def close(self, timeout: float = 1.0, *, confirm: bool = False) -> int:
        """Flush (or with ``confirm``, confirm) for up to ``timeout`` s, hang up, stop the thread.

        Returns what :meth:`Client.close` does: the messages not known to have arrived.
        """
        if self._closed:
            return 0
        try:
            return self._runner.run(self.client.close(timeout, confirm=confirm))
        finally:
            self._runner.stop()
            with self._cond:
                self._closed = True
                self._cond.notify_all()

    def __enter__(self) -> ThreadedClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def connect_threaded(
    address: str = DEFAULT_ADDRESS,
    mask: int = ALL_CLASSES,
    *,
    wait: bool = True,
    on_message: OnMessage | None = None,
    bus: Bus | None = None,
    export_mask: int | None = None,
    **settings: Any,
) -> ThreadedClient:
    """Connect from a program without asyncio (settings as :func:`smdbus.client.connect`)."""
    return ThreadedClient(
        address,
        mask,
        wait=wait,
        on_message=on_message,
        bus=bus,
        export_mask=export_mask,
        **settings,
    )
