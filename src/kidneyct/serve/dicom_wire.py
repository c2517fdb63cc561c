"""The DICOM node's connections, below pynetdicom: what a peer can cost before any DICOM is parsed.

pynetdicom reads each PDU whole into memory, whatever length its header claims (up to 4 GiB), keeps a
command set of any size, and blocks forever on a peer that stops in the middle of a PDU. `GuardedSocket`
sits between the accepted socket and pynetdicom and hands pynetdicom one PDU at a time:

- a PDU longer than `max_pdu_bytes`, a command set longer than 64 KiB, a malformed P-DATA item or a C-STORE
  request without a usable Affected SOP Instance UID (which stops pynetdicom's reader thread with a
  traceback) closes the connection;
- no data for `read_timeout_s` in the middle of a PDU, or a peer that does not read our answers, closes it;
- of each instance's dataset at most `max_instance_bytes + 1` bytes reach pynetdicom (which writes them to
  a temporary file): the C-STORE handler then sees the instance is too large and answers Out of Resources,
  while the rest of it costs neither memory nor disk;
- once an association has sent `max_association_bytes` of instances, the datasets that follow are dropped
  the same way and answered Out of Resources.

`GuardedServer` wraps every accepted socket and admits at most `max_peer` connections per peer address and
`max_total` in all, closing others as soon as they are accepted: one peer's flood of held connections
cannot lock the others out.
"""

from __future__ import annotations

import io
import logging
import socket
import socketserver
import threading
import weakref
from dataclasses import dataclass

from pynetdicom.transport import ThreadedAssociationServer

log = logging.getLogger(__name__)

P_DATA_TF = 0x04
COMMAND, LAST_FRAGMENT = 0x01, 0x02
MAX_COMMAND_BYTES = 64 * 1024
C_STORE_RQ = 0x0001
_CHUNK = 64 * 1024


@dataclass(frozen=True)
class WireLimits:
    """What one connection may send (see the module docstring)."""

    max_pdu_bytes: int = 1024 * 1024
    max_instance_bytes: int = 64 * 1024 * 1024
    max_association_bytes: int = 2 * 1024 * 1024 * 1024
    read_timeout_s: float = 30.0


def _command_problem(data: bytes) -> str | None:
    """Why a command set must not reach pynetdicom, or None."""
    from pynetdicom.dsutils import decode

    try:
        command = decode(io.BytesIO(data), True, True)
        if command.get("CommandField") != C_STORE_RQ:
            return None
        uid = str(command.get("AffectedSOPInstanceUID") or "")
    except Exception as error:  # noqa: BLE001 - any damage: the command cannot be answered
        return f"command set cannot be decoded ({type(error).__name__})"
    if not 0 < len(uid) <= 64:
        return "C-STORE request without a usable Affected SOP Instance UID"
    return None


class GuardedSocket:
    """An accepted socket as pynetdicom reads it: whole PDUs, checked and trimmed (see the module docstring).
    Every other attribute is the socket's own."""

    def __init__(self, sock: socket.socket, peer: str, limits: WireLimits):
        self._sock, self.peer, self.limits = sock, peer, limits
        self._out, self._position = b"", 0
        self._command = bytearray()
        self._dataset_bytes = 0  # of the instance being received
        self.association_bytes = 0  # of every instance so far
        self.closed = False
        sock.settimeout(limits.read_timeout_s)

    def __getattr__(self, name):
        return getattr(self._sock, name)

    @property
    def over_association_limit(self) -> bool:
        """The association has sent more instance bytes than it may: what follows is answered Out of Resources."""
        return self.association_bytes > self.limits.max_association_bytes

    def recv(self, size: int, flags: int = 0) -> bytes:
        if self._position >= len(self._out):
            pdu = self._next_pdu()
            if pdu is None:
                return b""  # pynetdicom takes it as the connection closed and ends the association
            self._out, self._position = pdu, 0
        chunk = self._out[self._position:self._position + size]
        self._position += len(chunk)
        return chunk

    def shutdown(self, how: int) -> None:
        # pynetdicom shuts a socket down and then closes it in one try: a shutdown that fails (the peer reset
        # the connection) skipped the close, leaving the descriptor, and this connection's share, held.
        try:
            self._sock.shutdown(how)
        except OSError:
            pass

    def close(self) -> None:
        self.closed = True
        self._sock.close()

    def _refuse(self, why: str) -> None:
        log.warning("connection from %s closed: %s", self.peer, why)
        try:
            self._sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def _read_exact(self, count: int) -> bytearray | None:
        buffer = bytearray(count)
        view, received = memoryview(buffer), 0
        while received < count:
            try:
                got = self._sock.recv_into(view[received:], min(count - received, _CHUNK))
            except TimeoutError:
                self._refuse(f"no data for {self.limits.read_timeout_s:g} s in the middle of a PDU")
                return None
            except OSError:
                return None
            if got == 0:
                return None
            received += got
        return buffer

    def _next_pdu(self) -> bytes | None:
        header = self._read_exact(6)
        if header is None:
            return None
        length = int.from_bytes(header[2:6], "big")
        if length > self.limits.max_pdu_bytes:
            self._refuse(f"PDU of {length:,} bytes, above the {self.limits.max_pdu_bytes:,}-byte limit")
            return None
        body = self._read_exact(length)
        if body is None:
            return None
        if header[0] == P_DATA_TF:
            body = self._filtered(body)
            if body is None:
                return None
            header[2:6] = len(body).to_bytes(4, "big")
        return bytes(header) + bytes(body)

    def _filtered(self, body: bytearray) -> bytes | None:
        """The P-DATA-TF's items with instance bytes beyond the limits left out; None to close."""
        out, offset = bytearray(), 0
        while offset < len(body):
            length = int.from_bytes(body[offset:offset + 4], "big")
            end = offset + 4 + length
            if length < 2 or end > len(body):
                self._refuse("malformed P-DATA item")
                return None
            context, control = body[offset + 4], body[offset + 5]
            data = memoryview(body)[offset + 6:end]
            if control & COMMAND:
                kept = self._command_fragment(data, control)
                if kept is None:
                    return None
            else:
                kept = self._dataset_fragment(data, control)
            out += (2 + len(kept)).to_bytes(4, "big") + bytes((context, control)) + kept
            offset = end
        return bytes(out)

    def _command_fragment(self, data: memoryview, control: int) -> memoryview | None:
        self._command += data
        if len(self._command) > MAX_COMMAND_BYTES:
            self._refuse(f"command set above {MAX_COMMAND_BYTES:,} bytes")
            return None
        if control & LAST_FRAGMENT:
            problem = _command_problem(bytes(self._command))
            self._command.clear()
            if problem is not None:
                self._refuse(problem)
                return None
        return data

    def _dataset_fragment(self, data: memoryview, control: int) -> memoryview:
        allowed = max(0, self.limits.max_instance_bytes + 1 - self._dataset_bytes)
        self._dataset_bytes += len(data)
        self.association_bytes += len(data)
        if control & LAST_FRAGMENT:
            self._dataset_bytes = 0
        return data[:0] if self.over_association_limit else data[:allowed]


def guard_of(assoc) -> GuardedSocket | None:
    """The GuardedSocket under an association accepted by a GuardedServer (None for any other)."""
    wrapped = getattr(getattr(assoc.dul, "socket", None), "socket", None)
    return wrapped if isinstance(wrapped, GuardedSocket) else None


class GuardedServer(ThreadedAssociationServer):
    """pynetdicom's threaded server with every accepted socket guarded and connections shared out per peer
    address. Made by `ApplicationEntity.make_server(..., server_class=GuardedServer, wire=..., max_peer=...,
    max_total=...)`."""

    def __init__(self, *args, wire: WireLimits, max_peer: int, max_total: int, **kwargs):
        self.wire, self.max_peer, self.max_total = wire, max_peer, max_total
        self._guards: weakref.WeakSet[GuardedSocket] = weakref.WeakSet()  # a connection pynetdicom lets go of
        # without closing it is not counted for ever
        self._lock = threading.Lock()
        super().__init__(*args, **kwargs)

    def get_request(self):
        sock, address = super().get_request()
        return GuardedSocket(sock, str(address[0]), self.wire), address

    def verify_request(self, request, client_address) -> bool:
        """Admit the connection unless its peer already holds its share, or the node is full."""
        with self._lock:
            for stale in [g for g in self._guards if g.closed or g.fileno() == -1]:
                self._guards.discard(stale)
            from_peer = sum(g.peer == request.peer for g in self._guards)
            if from_peer >= self.max_peer or len(self._guards) >= self.max_total:
                log.warning("connection from %s refused: %d of its %d connections open, %d of %d in all",
                            request.peer, from_peer, self.max_peer, len(self._guards), self.max_total)
                return False
            self._guards.add(request)
        return True

    def open_connections(self) -> int:
        with self._lock:
            return sum(1 for g in self._guards if not g.closed)

    def shutdown(self) -> None:
        # socketserver's own shutdown and close: pynetdicom's also unregisters from an AE that never
        # registered this server (it was made with make_server, not start_server).
        socketserver.BaseServer.shutdown(self)
        self.server_close()
