"""Connections the server accepts. uvicorn bounds neither their number nor how long one may take to send a
request's headers: a client sending half a request line and nothing more keeps its connection forever,
and a few hundred such connections lock everyone else out. Here:

- each client address holds at most `per_client` connections; more are closed as soon as they are accepted;
- each connection must send a request's headers within `header_timeout_s` of opening or of its previous
  answer, or within `busy_header_timeout_s` once three quarters of `max_connections` are open (connections
  already waiting get the shorter deadline too);
- with `max_connections` open, a new connection takes the place of the longest-open one still waiting for
  headers; only when every connection is busy with a request is the new one closed.

So a flood of idle connections from many addresses holds a good client out for `busy_header_timeout_s` at
most, and from one address not at all.
"""

from __future__ import annotations

import asyncio

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

BUSY_SHARE = 0.75  # open connections, as a share of max_connections, from which the short deadline applies


def guarded_protocol(max_connections: int, header_timeout_s: float, per_client: int | None = None,
                     busy_header_timeout_s: float = 1.0) -> type[H11Protocol]:
    """uvicorn's h11 protocol class with those bounds, for `uvicorn.run(..., http=...)`.

    Args:
        max_connections: open connections allowed at once.
        header_timeout_s: seconds a connection may take to send a request's headers.
        per_client: open connections one client address may hold (default: max_connections).
        busy_header_timeout_s: the same deadline while the server is nearly full.

    Returns:
        The protocol class.
    """
    per_client = per_client or max_connections
    busy_at = max(1, int(BUSY_SHARE * max_connections))

    class GuardedH11Protocol(H11Protocol):
        header_deadline: asyncio.TimerHandle | None = None
        deadline_at = float("inf")
        opened_at = 0.0

        def connection_made(self, transport) -> None:
            super().connection_made(transport)
            self.opened_at = self.loop.time()
            host = self.client[0] if self.client else None
            others = [c for c in self.connections if c is not self]
            if host is not None and sum(getattr(c, "client", None) is not None and c.client[0] == host
                                        for c in others) >= per_client:
                transport.close()  # this address holds its share already
                return
            if len(self.connections) > max_connections and not self._evict_one_waiting(others):
                transport.close()  # every connection is busy with a request: nothing to give up
                return
            busy = len(self.connections) >= busy_at
            self._arm_header_deadline(busy_header_timeout_s if busy else header_timeout_s)
            if busy:
                for connection in others:
                    if isinstance(connection, GuardedH11Protocol) and connection.waiting():
                        connection.shorten_deadline(busy_header_timeout_s)

        def on_response_complete(self) -> None:
            super().on_response_complete()
            self._arm_header_deadline(header_timeout_s)  # the next request on this connection gets its own deadline

        def connection_lost(self, exc) -> None:
            if self.header_deadline is not None:
                self.header_deadline.cancel()
            super().connection_lost(exc)

        def waiting(self) -> bool:
            """Open, and still without a whole request's headers (idle, or sending them too slowly)."""
            return self.conn.their_state is h11.IDLE and not self.transport.is_closing()

        def _evict_one_waiting(self, others) -> bool:
            waiting = [c for c in others if isinstance(c, GuardedH11Protocol) and c.waiting()]
            if not waiting:
                return False
            min(waiting, key=lambda c: c.opened_at).transport.close()
            return True

        def _arm_header_deadline(self, seconds: float) -> None:
            if self.header_deadline is not None:
                self.header_deadline.cancel()
            self.deadline_at = self.loop.time() + seconds
            self.header_deadline = self.loop.call_later(seconds, self._close_without_request)

        def shorten_deadline(self, seconds: float) -> None:
            """The header deadline in `seconds` from now, unless it is sooner already."""
            if self.loop.time() + seconds < self.deadline_at:
                self._arm_header_deadline(seconds)

        def _close_without_request(self) -> None:
            if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
                self.transport.close()  # headers still incomplete: nothing to answer

    return GuardedH11Protocol
