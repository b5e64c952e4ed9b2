"""Saying what a client is: its label at the proxy, kept across reconnects.

A client may attach a short label to its stream at our proxy (``describe`` on
the control stream, :mod:`smdbus.wire._control`); ``smd peers`` shows it. The
proxy keeps the label with the connection, so a reconnected client is a new,
unlabelled connection: the client re-sends its label on each link to our
proxy (a C proxy has no control stream; there the label is kept and unsent).

Rules:

- One control connection per link, opened on the first label and kept open
  while the link lives (a connection per change would fill the proxy's
  record of closed connections), closed with the link.
- One query in flight; the latest label wins: changes made while a query is
  out are sent as one, once its answer came.
- Refused (the proxy's rate limit on label changes), the label is sent again
  after :data:`RETRY_AFTER` seconds, or at the next change if sooner.
- Advisory like the interest watch: a failure is logged at debug and the
  label stays unsent until the next link.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable

from smdbus._escape import printable
from smdbus.wire import CONTROL_MAX_PAYLOAD, CONTROL_STREAMTYPE, describe_query, format_address

log = logging.getLogger("smdbus.client")

RETRY_AFTER = 1.0
"""Seconds before a label the proxy refused (too many changes) is sent again."""


async def keep_described(
    address: str, label_of: Callable[[], str | None], changed: asyncio.Event
) -> None:
    """Send ``label_of()`` to the proxy now and after each ``changed``; until cancelled."""
    from smdbus.wire import WireStream  # only clients that describe themselves get here

    try:
        stream = await WireStream.connect(
            address, 0, streamtype=CONTROL_STREAMTYPE, max_payload=CONTROL_MAX_PAYLOAD
        )
    except ConnectionError as exc:
        log.debug("cannot describe this client to %s: %s", format_address(address), exc)
        return
    try:
        while True:
            changed.clear()
            await stream.send(0, describe_query(label_of()))
            answer = json.loads((await stream.receive()).payload)
            if isinstance(answer, dict) and "error" in answer:
                log.debug("the proxy refused this client's label: %s", printable(str(answer)))
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(RETRY_AFTER):  # not wait_for: see WireStream
                        await changed.wait()
                continue
            await changed.wait()
    except (ConnectionError, ValueError) as exc:
        log.debug("describing this client to %s ended: %s", format_address(address), exc)
    except BaseException:
        stream.close_nowait()  # cancelled with the link: nothing may be awaited on the way out
        raise
    await stream.close()
