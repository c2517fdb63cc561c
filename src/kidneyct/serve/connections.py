"""Connections the server accepts: at most `max_connections` open at once (more are closed as soon as they
are accepted, before they can hold a file handle for long), and each must send a request's headers within
`header_timeout_s` of opening or of its previous answer. uvicorn itself bounds neither: a client sending
half a request line and nothing more keeps its connection forever."""

from __future__ import annotations

import asyncio

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol


def guarded_protocol(max_connections: int, header_timeout_s: float) -> type[H11Protocol]:
    """uvicorn's h11 protocol class with those two bounds, for `uvicorn.run(..., http=...)`.

    Args:
        max_connections: open connections allowed at once.
        header_timeout_s: seconds a connection may take to send a request's headers.

    Returns:
        The protocol class.
    """

    class GuardedH11Protocol(H11Protocol):
        header_deadline: asyncio.TimerHandle | None = None

        def connection_made(self, transport) -> None:
            super().connection_made(transport)
            if len(self.connections) > max_connections:
                transport.close()
                return
            self._arm_header_deadline()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            self._arm_header_deadline()  # the next request on this connection gets its own deadline

        def connection_lost(self, exc) -> None:
            if self.header_deadline is not None:
                self.header_deadline.cancel()
            super().connection_lost(exc)

        def _arm_header_deadline(self) -> None:
            if self.header_deadline is not None:
                self.header_deadline.cancel()
            self.header_deadline = self.loop.call_later(header_timeout_s, self._close_without_request)

        def _close_without_request(self) -> None:
            if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
                self.transport.close()  # headers still incomplete: nothing to answer

    return GuardedH11Protocol
