"""Requests a client asks the service to make (completion callbacks): never into the facility.

A URL is checked when it is given and again when it is used: http(s) only, no credentials in it,
and its host resolved once, every address it resolves to public (``is_global``; loopback,
private, link-local, multicast, reserved, unspecified and IPv4-mapped, 6to4 or NAT64 forms of
those are refused, in every notation the resolver accepts: ``127.1``, ``2130706433``,
``0x7f000001``...). The connection is then made to the address that was checked, so a name that
resolves differently a moment later (DNS rebinding) does not matter. Redirects are not followed.
An operator may allow internal receivers by name or network (``callback_hosts``).
"""

from __future__ import annotations

import ipaddress
import socket
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import requests
from requests.adapters import HTTPAdapter

URL_LIMIT = 2048


class OutboundRefused(ValueError):
    """A URL the service will not send to; the message names the rule."""


def _unwrap(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    """The IPv4 address an IPv6 form carries (mapped, 6to4, NAT64), else the address itself."""
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return ip.ipv4_mapped
        if ip.sixtofour is not None:
            return ip.sixtofour
        if ip in ipaddress.ip_network("64:ff9b::/96"):
            return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return ip


def _allowed_by(host: str, ip: ipaddress.IPv4Address | ipaddress.IPv6Address, allowed: tuple[str, ...]) -> bool:
    for entry in allowed:
        try:
            if ip in ipaddress.ip_network(entry, strict=False):
                return True
        except ValueError:
            if host.lower().rstrip(".") == entry.lower().rstrip("."):
                return True
    return False


def resolve_checked(url: str, allowed: tuple[str, ...] = (), what: str = "the callback URL") -> tuple[str, str, int]:
    """Check ``url``; return its host name, the one address to connect to, and the port.

    ``OutboundRefused`` names the rule it breaks.
    """
    if len(url) > URL_LIMIT:
        raise OutboundRefused(f"{what} is longer than {URL_LIMIT} characters")
    try:
        parts = urlsplit(url)
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise OutboundRefused(f"{what} is not a URL") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise OutboundRefused(f"{what} must be an http:// or https:// URL with a host")
    if parts.username is not None or parts.password is not None:
        raise OutboundRefused(f"{what} must not carry a user or password")
    host = parts.hostname
    try:
        found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError, OSError):
        raise OutboundRefused(f"the host of {what} does not resolve") from None
    addresses = []
    for _family, _type, _proto, _name, address in found:
        ip = ipaddress.ip_address(str(address[0]).split("%", 1)[0])
        if _allowed_by(host, ip, allowed):
            addresses.append(ip)
            continue
        inner = _unwrap(ip)
        if not inner.is_global or inner.is_multicast or ip.is_multicast:
            raise OutboundRefused(
                f"{what} resolves to a loopback, private, link-local, multicast or reserved address, "
                f"which this service does not send to (an operator may allow it in [ingest] callback_hosts)")
        addresses.append(ip)
    if not addresses:
        raise OutboundRefused(f"the host of {what} does not resolve")
    return host, str(addresses[0]), port


class _PinnedAdapter(HTTPAdapter):
    """Connects to a checked address while TLS still checks the certificate of the URL's host."""

    def __init__(self, host: str) -> None:
        self.pinned_host = host
        super().__init__(max_retries=0)

    def build_connection_pool_key_attributes(self, request, verify, cert=None):
        host_params, pool_kwargs = super().build_connection_pool_key_attributes(request, verify, cert)
        if host_params.get("scheme") == "https":
            pool_kwargs["server_hostname"] = self.pinned_host
            pool_kwargs["assert_hostname"] = self.pinned_host
        return host_params, pool_kwargs


def post_checked(url: str, allowed: tuple[str, ...], timeout: float, **kwargs: Any) -> requests.Response:
    """POST to ``url`` after checking it, connected to the address checked; no redirects."""
    host, address, port = resolve_checked(url, allowed)
    parts = urlsplit(url)
    literal = f"[{address}]" if ":" in address else address
    pinned = urlunsplit((parts.scheme, f"{literal}:{port}", parts.path or "/", parts.query, ""))
    headers = {**kwargs.pop("headers", {}), "Host": parts.netloc}
    with requests.Session() as session:
        session.mount(f"{parts.scheme}://", _PinnedAdapter(host))
        session.trust_env = False  # a proxy from the environment would connect by name again
        return session.post(pinned, timeout=timeout, headers=headers, allow_redirects=False, **kwargs)
