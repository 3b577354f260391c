"""Listener addresses: ``[http|https://]HOST[:PORT]`` and bare hosts, IPv6 in brackets."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from typing import Any

from torchwire.config.values import expect_str, invalid

_ADDRESS_EXPECTED = (
    "[http|https://]HOST[:PORT], e.g. http://127.0.0.1:8080; IPv6 hosts go in brackets,"
    " e.g. http://[::1]:8080"
)
_ADDRESS = re.compile(
    r"(?:(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*)://)?"
    r"(?P<host>\[[^\]/]*\]|[^\[\]/:]*)"
    r"(?::(?P<port>[0-9]+))?/?"
)
_HOSTNAME = re.compile(r"[A-Za-z0-9_](?:[A-Za-z0-9_.-]*[A-Za-z0-9_])?")
_DOTTED = re.compile(r"[0-9.]+")
_HOST_EXPECTED = "a host name or IP address, e.g. 127.0.0.1, 0.0.0.0 or ::1"


@dataclass(frozen=True)
class Address:
    """Where a listener binds; ``host`` is kept without IPv6 brackets."""

    scheme: str
    host: str
    port: int

    @property
    def is_loopback(self) -> bool:
        """True for ``localhost``, 127.0.0.0/8 and ::1 (also IPv4-mapped)."""
        if self.host.lower().rstrip(".") == "localhost":
            return True
        try:
            ip = ipaddress.ip_address(self.host)
        except ValueError:
            return False
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            return ip.ipv4_mapped.is_loopback
        return ip.is_loopback

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}"

    def __str__(self) -> str:
        return self.url


def parse_address(text: str, key: str = "address") -> Address:
    """Parse ``http://127.0.0.1:8080``, ``https://0.0.0.0:8443``, ``127.0.0.1:8080``,
    ``http://[::1]:8080``.  No scheme means http; no port means 80 (http) or 443 (https).
    """
    match = _ADDRESS.fullmatch(text.strip())
    if match is None:
        raise invalid(key, text, _ADDRESS_EXPECTED)
    scheme = (match["scheme"] or "http").lower()
    host = normalise_host(match["host"])
    if scheme not in ("http", "https") or host is None:
        raise invalid(key, text, _ADDRESS_EXPECTED)
    port = int(match["port"]) if match["port"] else (443 if scheme == "https" else 80)
    if port > 65535:
        raise invalid(key, text, "a port in 0-65535")
    return Address(scheme, host, port)


def normalise_host(host: str) -> str | None:
    """``host`` without IPv6 brackets, or None when it is not a valid host."""
    if host.startswith("[") and host.endswith("]"):
        return host[1:-1] if _is_ip(host[1:-1], 6) else None
    if ":" in host:
        return host if _is_ip(host, 6) else None
    if _DOTTED.fullmatch(host):
        return host if _is_ip(host, 4) else None
    return host if _HOSTNAME.fullmatch(host) else None


def _is_ip(text: str, version: int) -> bool:
    try:
        return ipaddress.ip_address(text).version == version
    except ValueError:
        return False


def to_address(value: Any, key: str) -> Address:
    if isinstance(value, Address):
        return value
    return parse_address(expect_str(value, key, _ADDRESS_EXPECTED), key)


def to_host(value: Any, key: str) -> str:
    host = normalise_host(expect_str(value, key, _HOST_EXPECTED))
    if host is None:
        raise invalid(key, value, _HOST_EXPECTED)
    return host


