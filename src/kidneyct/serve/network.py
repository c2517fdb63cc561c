"""Facts about the addresses a kidneyct server binds to (the web API and the DICOM node share them)."""

from __future__ import annotations

import ipaddress


def is_loopback(host: str) -> bool:
    """True when `host` is this machine only (localhost, 127.0.0.0/8, ::1).

    Args:
        host: a host name or IP address.

    Returns:
        Whether binding to it keeps a server unreachable from other machines.
    """
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
