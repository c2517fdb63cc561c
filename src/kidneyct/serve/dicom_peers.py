"""Which peers the DICOM node talks to: `--allow-ae TITLE[@HOST]`, repeatable, like Orthanc's DicomModalities
with DicomCheckModalityHost. An association whose calling AE title (and, when given, address) matches no
entry is rejected at negotiation with "calling AE title not recognised"; without any entry every calling AE
is accepted (the node then warns when it is reachable from other machines). The called AE title must be
the node's own either way (pynetdicom's `require_called_aet`)."""

from __future__ import annotations

import ipaddress
import logging
import socket
from dataclasses import dataclass

log = logging.getLogger(__name__)

REJECTED_PERMANENT, SERVICE_USER, CALLING_AE_NOT_RECOGNISED = 0x01, 0x01, 0x03


def _address(text: str):
    try:
        address = ipaddress.ip_address(text.split("%")[0])
    except ValueError:
        return None
    return address.ipv4_mapped or address if address.version == 6 else address


def _resolve(host: str) -> frozenset:
    """The addresses `host` names: itself when it is one, else what the resolver says (once, at start)."""
    address = _address(host.strip("[]"))
    if address is not None:
        return frozenset({address})
    try:
        infos = socket.getaddrinfo(host, None)
    except socket.gaierror as error:
        raise ValueError(f"--allow-ae: cannot resolve host {host!r} ({error.strerror})") from None
    return frozenset(a for a in (_address(info[4][0]) for info in infos) if a is not None)


@dataclass(frozen=True)
class Peer:
    """One allowed peer: an AE title, from any address or from the addresses of one host."""

    ae_title: str
    host: str | None = None
    addresses: frozenset = frozenset()

    @classmethod
    def parse(cls, text: str) -> "Peer":
        """A Peer from `TITLE` or `TITLE@HOST` (HOST: a name, an IPv4 or a bracketed IPv6 address).

        Args:
            text: the --allow-ae value.

        Returns:
            The Peer; ValueError naming the problem when `text` is malformed or HOST does not resolve.
        """
        title, at, host = text.partition("@")
        title = title.strip()
        if not 0 < len(title) <= 16 or not title.isascii() or not title.isprintable() or "\\" in title:
            raise ValueError(f"--allow-ae {text!r}: the AE title must be 1-16 printable ASCII characters, no backslash")
        if at and not host:
            raise ValueError(f"--allow-ae {text!r}: nothing after '@' (give TITLE or TITLE@HOST)")
        return cls(title, host or None, _resolve(host) if host else frozenset())

    def matches(self, ae_title: str, address: str) -> bool:
        """Whether an association from `ae_title` at `address` is this peer."""
        return ae_title.strip() == self.ae_title and (self.host is None or _address(address) in self.addresses)

    def __str__(self) -> str:
        return self.ae_title if self.host is None else f"{self.ae_title}@{self.host}"


def screen_association(event, peers: tuple[Peer, ...]) -> None:
    """EVT_REQUESTED handler: reject an association from a peer not in `peers` (none: everyone is allowed).

    Args:
        event: pynetdicom's event; its association is still being negotiated.
        peers: the allow-list.
    """
    assoc = event.assoc
    title, address = str(assoc.requestor.primitive.calling_ae_title).strip(), str(assoc.requestor.address)
    if not peers or any(peer.matches(title, address) for peer in peers):
        return
    log.warning("association from %a at %s rejected: not in the allow-list (--allow-ae)", title[:16], address)
    assoc.acse.send_reject(REJECTED_PERMANENT, SERVICE_USER, CALLING_AE_NOT_RECOGNISED)
    assoc.kill()  # as pynetdicom's own rejections do: the reject is sent before the connection closes
