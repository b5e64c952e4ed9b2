"""Who listens at the proxy: the client's side of the interest watch.

Our proxy tells a client that asks, on its control stream, the classes
somebody listens to (:mod:`smdbus.wire._control`). The client keeps one such
watch per connection, opened on first need (a send, a held outage buffer,
``wait_listeners``), and only on a peer that showed our proxy's mark (a C
proxy has no control stream), and uses the mask for two things: ``send`` returns
False for a class nobody listens to, as the in-process bus does, and after a
reconnect the outage buffer waits until its classes have listeners again.

The watch is advisory. If it cannot be opened or breaks, the client forgets
the mask (``None``: unknown), which means "send everything", the behaviour
without it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from smdbus.wire import (
    CONTROL_MAX_PAYLOAD,
    CONTROL_STREAMTYPE,
    WATCH_QUERY,
    format_address,
    parse_denied,
    parse_interest,
)

log = logging.getLogger("smdbus.client")


async def watch_interest(
    address: str,
    on_mask: Callable[[int | None], None],
    on_denied: Callable[[int], None] | None = None,
) -> None:
    """Call ``on_mask(mask)`` with the proxy's union mask, now and on every change.

    ``on_denied(mask)``: the classes the proxy's policy refuses this user, with
    each reply (0: none).

    Runs until cancelled; on any failure calls ``on_mask(None)`` and returns.
    """
    from smdbus.wire import WireStream  # only senders on our proxy get here

    try:
        stream = await WireStream.connect(
            address, 0, streamtype=CONTROL_STREAMTYPE, max_payload=CONTROL_MAX_PAYLOAD
        )
    except ConnectionError as exc:
        log.debug("no interest watch on %s: %s", format_address(address), exc)
        on_mask(None)
        return
    try:
        await stream.send(0, WATCH_QUERY)
        async for msg in stream:
            mask = parse_interest(msg.payload)
            if mask is not None:
                if on_denied is not None:
                    on_denied(parse_denied(msg.payload))
                on_mask(mask)
    except ConnectionError as exc:
        log.debug("interest watch on %s ended: %s", format_address(address), exc)
    except BaseException:
        # Cancelled, or closed because its loop is gone (GeneratorExit, when a client's
        # thread stops): nothing may be awaited on the way out, or Python reports the
        # coroutine for ignoring GeneratorExit.
        stream.close_nowait()
        raise
    await stream.close()
    on_mask(None)
