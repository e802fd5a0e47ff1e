"""Where the connector may connect to a ServiceNow instance: the outbound half of one customer never reaching another
(docs/admin-guide.md: What one customer can and cannot reach).

An instance is a DNS name (shared/config.py refuses IP literals and hosts made of numbers, such as `127.1` or
`0x7f.1`, which resolvers read as addresses). Each new connection to it resolves the name here and connects to an
address that was checked, never to a name resolved again behind the check: in Azure every address the name resolves
to must be public (not loopback, private, link-local, shared, reserved, multicast, or IPv6 unique-local, also when an
IPv4 address hides inside an IPv6 one), so a name that later resolves inward is refused then. Locally the simulators
live on loopback, so loopback and private addresses are allowed. A refusal says the name resolves inward; a failed
connection says only that the instance could not be reached, never which socket error (that would tell a caller which
ports are open).
"""

from __future__ import annotations

import ipaddress
import socket
import ssl
from collections.abc import Callable, Iterable
from typing import Any

import httpcore
import httpx

Resolver = Callable[[str, int], list[str]]
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


def resolve(host: str, port: int) -> list[str]:
    """The addresses the system resolver gives for `host` (TCP), in its order, without repeats."""
    found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
    return list(dict.fromkeys(str(info[4][0]) for info in found))


def inward(address: str) -> bool:
    """Whether an address is one the connector never calls in Azure: anything but a public unicast address."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return True
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = ip.ipv4_mapped or ip.sixtofour or (ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF) if ip in _NAT64
                                                      else None)  # fmt: skip
        if embedded is not None:
            return inward(str(embedded))
    return not ip.is_global or ip.is_multicast


class EgressRefused(httpcore.ConnectError):
    """The instance's name resolves to an address the connector does not call (or to none)."""


def refusal(host: str, addresses: Iterable[str], *, public_only: bool) -> str | None:
    """Why the connector will not connect to `host` at `addresses`, or None."""
    listed = list(addresses)
    if not listed:
        return f"the name {host} resolves to no address"
    if public_only and any(inward(a) for a in listed):
        return (f"the name {host} resolves to an address that is not public (loopback, private, link-local or "
                "another inward range), and in Azure the connector connects only to public addresses")  # fmt: skip
    return None


class CheckedBackend(httpcore.NetworkBackend):
    """httpcore's own sync backend, connecting only to addresses it resolved and checked itself (TLS still verifies
    the certificate against the name: httpcore starts TLS with the origin's host name)."""

    def __init__(self, *, public_only: bool, resolver: Resolver = resolve) -> None:
        self._backend = httpcore.SyncBackend()
        self._public_only = public_only
        self._resolve = resolver

    def connect_tcp(self, host: str, port: int, timeout: float | None = None, local_address: str | None = None,
                    socket_options: Iterable[Any] | None = None) -> httpcore.NetworkStream:  # fmt: skip
        try:
            addresses = self._resolve(host, port)
        except OSError:
            addresses = []
        why = refusal(host, addresses, public_only=self._public_only)
        if why is not None:
            raise EgressRefused(why)
        failed: Exception | None = None
        for address in addresses:
            try:
                return self._backend.connect_tcp(address, port, timeout, local_address, socket_options)
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                failed = exc
        assert failed is not None
        raise failed

    def connect_unix_socket(self, path: str, timeout: float | None = None,
                            socket_options: Iterable[Any] | None = None) -> httpcore.NetworkStream:  # fmt: skip
        raise EgressRefused("the connector does not connect to a ServiceNow instance through a socket file")

    def sleep(self, seconds: float) -> None:
        self._backend.sleep(seconds)


class CheckedTransport(httpx.HTTPTransport):
    """httpx's transport (its TLS, limits and exceptions) on a `CheckedBackend`."""

    def __init__(self, *, public_only: bool, resolver: Resolver = resolve,
                 verify: ssl.SSLContext | str | bool = True) -> None:  # fmt: skip
        super().__init__(verify=verify)
        limits = httpx.Limits(max_connections=100, max_keepalive_connections=20)  # httpx's defaults
        self._pool = httpcore.ConnectionPool(
            ssl_context=httpx.create_ssl_context(verify=verify),
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            network_backend=CheckedBackend(public_only=public_only, resolver=resolver),
        )


def refused_by_egress(exc: BaseException) -> EgressRefused | None:
    """The egress refusal behind an httpx error, if that is what it is."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, EgressRefused):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None
