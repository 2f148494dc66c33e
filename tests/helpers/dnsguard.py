"""The suite never asks the system resolver or a DNS server off this host.

A test that did would depend on the machine's network and resolver (and leak queries
for made-up names to the internet).  ``install`` wraps, for the whole session:

* ``socket.getaddrinfo``, ``socket.gethostbyname`` and ``socket.gethostbyname_ex``
  (the C library's resolver, also behind ``asyncio``'s ``getaddrinfo``): only IP
  literals, ``None`` and ``localhost`` (RFC 6761 §6.3) may be looked up;
* dnspython's query functions (``dns.query`` and ``dns.asyncquery``: UDP, TCP, DoT,
  DoH, DoQ — what ``DnsResolver`` and any other code sends through): only to loopback
  servers, which is where ``LoopbackDns`` listens.

A forbidden call raises ``SystemResolverUsed``, a ``BaseException`` so that code under
test that turns DNS failures into "temporary error" cannot swallow it, and is also
recorded: ``check`` (run after every test by ``tests/conftest.py``) fails the test that
made it even if something did catch it.

Not covered: subprocesses (a ``mailwright serve`` child has its own ``socket`` module)
and uvloop's own ``getaddrinfo`` (libuv calls the C library directly).
"""

from __future__ import annotations

import functools
import inspect
import ipaddress
import socket
from collections.abc import Callable, Iterator
from typing import Any

import dns.asyncquery
import dns.query

HINT = "use LoopbackDns (tests/helpers/dnsserver.py) and IP literals"
LOCAL_NAMES = ("localhost",)  # RFC 6761 §6.3; subdomains of localhost too
# dnspython's functions that send a query, by the module attribute they are reached by;
# the server is their ``where`` argument (first positional after the query).
DNS_QUERY_FUNCTIONS = ("udp", "tcp", "udp_with_fallback", "tls", "https", "quic")


class SystemResolverUsed(BaseException):
    """A test reached for the system resolver or a non-loopback DNS server."""


violations: list[str] = []


def _is_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host.split("%", 1)[0])  # an IPv6 scope id is not a name
    except ValueError:
        return False
    return True


def name_allowed(host: object) -> bool:
    if host is None:
        return True
    text = host.decode("ascii", "replace") if isinstance(host, bytes) else str(host)
    text = text.rstrip(".").lower()
    if text == "" or _is_literal(text):  # "" is INADDR_ANY for getaddrinfo
        return True
    return any(text == name or text.endswith("." + name) for name in LOCAL_NAMES)


def server_allowed(where: object) -> bool:
    try:
        return ipaddress.ip_address(str(where).split("%", 1)[0]).is_loopback
    except ValueError:  # DoH takes a URL: it is never a loopback literal we serve
        return False


def _refuse(what: str) -> SystemResolverUsed:
    message = f"{what}: tests must not use the system resolver or the internet; {HINT}"
    violations.append(message)
    return SystemResolverUsed(message)


def _guard_lookup(original: Callable[..., Any], label: str) -> Callable[..., Any]:
    @functools.wraps(original)
    def guarded(host: object, *args: Any, **kwargs: Any) -> Any:
        if not name_allowed(host):
            raise _refuse(f"{label}({host!r})")
        return original(host, *args, **kwargs)

    return guarded


def _guard_query(original: Callable[..., Any], label: str) -> Callable[..., Any]:
    if inspect.iscoroutinefunction(original):

        @functools.wraps(original)
        async def guarded_async(q: Any, where: Any, *args: Any, **kwargs: Any) -> Any:
            if not server_allowed(where):
                raise _refuse(f"{label} to {where!r}")
            return await original(q, where, *args, **kwargs)

        return guarded_async

    @functools.wraps(original)
    def guarded(q: Any, where: Any, *args: Any, **kwargs: Any) -> Any:
        if not server_allowed(where):
            raise _refuse(f"{label} to {where!r}")
        return original(q, where, *args, **kwargs)

    return guarded


def install() -> Callable[[], None]:
    """Wrap the lookups; returns the function that puts the originals back."""
    saved: list[tuple[Any, str, Any]] = []
    for name in ("getaddrinfo", "gethostbyname", "gethostbyname_ex"):
        original = getattr(socket, name)
        saved.append((socket, name, original))
        setattr(socket, name, _guard_lookup(original, f"socket.{name}"))
    for module in (dns.query, dns.asyncquery):
        for name in DNS_QUERY_FUNCTIONS:
            original = getattr(module, name, None)
            if original is None:
                continue
            saved.append((module, name, original))
            setattr(module, name, _guard_query(original, f"{module.__name__}.{name}"))

    def uninstall() -> None:
        for module, name, original in reversed(saved):
            setattr(module, name, original)

    return uninstall


def check() -> Iterator[None]:
    """A fixture body: run the test, then fail it if it made a forbidden lookup."""
    del violations[:]
    yield
    found, violations[:] = list(violations), []
    if found:
        raise AssertionError("\n".join(found))
