"""ICE configuration for a server that must work offline and on loopback.

Two facts shape this module (see the transport reference page):

- aiortc's default configuration asks ``stun.l.google.com`` for a server-reflexive candidate. Offline, that lookup
  only adds delay and log noise, so every peer connection here is built with no ICE servers: host candidates only.
  A deployment behind NAT passes its own STUN/TURN servers.
- aioice never offers 127.0.0.1 as a host candidate (``aioice.ice.get_host_addresses`` filters it out). On a
  machine whose only interface is ``lo`` (a container without a NIC, a bare network namespace, a CI sandbox) no
  candidate is gathered at all and nothing connects. aioice has no option for this, so
  ``allow_loopback_candidates()`` wraps that one function to append 127.0.0.1. The wrapper is process-wide (aioice
  reads the module global at gathering time), idempotent, and only adds a candidate: the real interfaces are still
  offered, so remote peers are unaffected. The server turns it on when it listens on a loopback address (its
  clients are then local by construction) or when asked with ``--ice-loopback``; test clients turn it on too.
"""

from __future__ import annotations

import ipaddress
import logging
import threading
from collections.abc import Callable, Sequence

import aioice.ice
from aiortc import RTCConfiguration, RTCIceServer

log = logging.getLogger(__name__)

LOOPBACK_V4 = "127.0.0.1"

_lock = threading.Lock()
_original: Callable[[bool, bool], list[str]] | None = None
_enabled = False


def _host_addresses_with_loopback(use_ipv4: bool, use_ipv6: bool) -> list[str]:
    assert _original is not None
    addresses = list(_original(use_ipv4, use_ipv6))
    if _enabled and use_ipv4 and LOOPBACK_V4 not in addresses:
        # Last, so that a real interface (if any) keeps the higher local preference.
        addresses.append(LOOPBACK_V4)
    return addresses


def allow_loopback_candidates(enabled: bool = True) -> None:
    """Make aioice gather a 127.0.0.1 host candidate as well (process-wide; see the module docstring)."""
    global _original, _enabled
    with _lock:
        if _original is None:
            _original = aioice.ice.get_host_addresses
            aioice.ice.get_host_addresses = _host_addresses_with_loopback
        if enabled != _enabled:
            log.info("loopback ICE candidates %s", "enabled" if enabled else "disabled")
        _enabled = enabled


def loopback_candidates_allowed() -> bool:
    return _enabled


def is_loopback_host(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and ``localhost``: a server bound there only has local clients."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def rtc_configuration(ice_servers: Sequence[str] = ()) -> RTCConfiguration:
    """A configuration with exactly these ICE servers (none by default: no STUN lookup when offline)."""
    return RTCConfiguration(iceServers=[RTCIceServer(urls=url) for url in ice_servers])
