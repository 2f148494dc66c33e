"""``HOST[:PORT]`` as the user writes it, and the address to connect to.

``mx.example.org``, ``mx.example.org:2525``, ``192.0.2.25``, ``[2001:db8::25]:25`` and
a bare IPv6 address (no port then).  A name is looked up with the project's resolver
(``dns.DnsResolver``: A first, then AAAA, as RFC 5321 §5.1 leaves the order to the
client and most MTAs prefer IPv4 for SMTP), never with the system's getaddrinfo, so
``--dns`` decides which server answers.
"""

from __future__ import annotations

import ipaddress

from mailwright.client.probe.dialog import SMTP_PORT, Target, is_ip_literal
from mailwright.dns.types import DnsError, Resolver
from mailwright.smtp import AddressError, parse_path

MAX_PORT = 65535


class TargetError(ValueError):
    """The target cannot be used; the message says why, in one line."""


def parse_port(text: str, what: str = "port") -> int:
    if not text.isdigit() or not 0 < int(text) <= MAX_PORT:
        raise TargetError(f"{what} {text!r} is not a number from 1 to {MAX_PORT}")
    return int(text)


def split_target(text: str, default_port: int = SMTP_PORT) -> tuple[str, int]:
    """``HOST[:PORT]`` -> (host, port); TargetError when it is not one."""
    text = text.strip()
    if not text:
        raise TargetError("empty host")
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        if not sep or not is_ip_literal(host):
            raise TargetError(f"{text!r}: write an IPv6 address as [ADDRESS] or [ADDRESS]:PORT")
        if rest and not rest.startswith(":"):
            raise TargetError(f"{text!r}: expected :PORT after ]")
        return host, parse_port(rest[1:]) if rest else default_port
    if text.count(":") > 1:  # a bare IPv6 address
        if not is_ip_literal(text):
            raise TargetError(f"{text!r} is not a host name or IP address")
        return text, default_port
    host, sep, port = text.partition(":")
    if not host:
        raise TargetError(f"{text!r}: no host before the port")
    if not is_ip_literal(host) and not _is_hostname(host):
        raise TargetError(f"{host!r} is not a host name or IP address")
    return host, parse_port(port) if sep else default_port


def check_address(text: str, what: str) -> str:
    """``text`` when it is a mailbox the probe can put in MAIL FROM or RCPT TO (the
    RFC 5321 §4.1.2 grammar, as the core parses it); TargetError naming ``what``."""
    try:
        parse_path(f"<{text}>", allow_null=False)
    except AddressError as exc:
        raise TargetError(f"{what} {text!r}: {exc}") from None
    return text


def check_domain(text: str, what: str) -> str:
    if not _is_hostname(text) or "." not in text.strip("."):
        raise TargetError(f"{what} {text!r} is not a domain name")
    return text


def _is_hostname(text: str) -> bool:
    labels = text.rstrip(".").split(".")
    return all(
        0 < len(label) <= 63  # RFC 1035 §2.3.4
        and label.replace("-", "").replace("_", "").isalnum()
        and label.isascii()
        and not label.startswith("-")
        for label in labels
    )


async def resolve(host: str, port: int, resolver: Resolver | None) -> Target:
    """The target with its address; TargetError when a name does not resolve."""
    if is_ip_literal(host):
        return Target(host, str(ipaddress.ip_address(host)), port)
    if resolver is None:  # pragma: no cover - the CLI always builds one
        raise TargetError(f"{host}: no resolver to look it up")
    try:
        for lookup in (resolver.a, resolver.aaaa):
            answer = await lookup(host)
            if answer.records:
                return Target(host, answer.records[0], port)
            if not answer.exists:
                raise TargetError(f"{host}: no such domain (NXDOMAIN)")
    except DnsError as exc:
        raise TargetError(f"{host}: DNS lookup failed: {exc}") from None
    raise TargetError(f"{host}: no A or AAAA record")
