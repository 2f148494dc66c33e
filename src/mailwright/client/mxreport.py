"""``mailwright mx DOMAIN``: where mail for a domain goes, readably.

What ``nslookup -q=mx`` gives, and what it leaves to the reader:

* the MX hosts by preference (RFC 5321 §5.1: lowest first; equal preferences in the
  order the answer gave them), each with its A and AAAA addresses;
* a domain with no MX records but an address is its own mail host — the *implicit MX*
  of RFC 5321 §5.1 — and is called out as such;
* a *null MX* (one MX record, preference 0, exchange ".") says the domain accepts no
  mail at all (RFC 7505 §3); a domain that does not exist (NXDOMAIN) neither;
* DNSSEC: whether the MX answer came with the AD bit from a resolver the user trusts
  (``--dns`` names it; without it, the resolver's own trust list — loopback only —
  applies, RFC 6698 §4.1): the precondition of DANE (RFC 7672 §2.2);
* internationalised names both ways: the U-labels a person types and the A-labels DNS
  carries (RFC 5890 §2.3.2.1).

With ``check``, ``client.mxcheck`` connects to each host (first address): banner time,
STARTTLS, certificate, TLSA, and the domain's MTA-STS policy against the MX list.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import idna

from mailwright.client.mxcheck import CheckSettings, HostCheck, StsStatus, check_hosts, check_sts
from mailwright.dns.names import name_text, query_name
from mailwright.dns.types import DnsTemporaryError, Resolver

# RFC 7505 §3: the null MX is preference 0 with the root as exchange (answers carry the
# root as "").
NULL_MX_PREFERENCE = 0


class MxUsageError(ValueError):
    """The domain cannot be a DNS name at all (the CLI exits 2 with this text)."""


@dataclass(frozen=True, slots=True)
class MailHost:
    """One MX host: its preference, its name both ways, its addresses."""

    preference: int
    host: str  # A-labels, lower case, no trailing dot
    unicode_host: str  # U-labels when the name is internationalised, else == host
    ipv4: tuple[str, ...] = ()
    ipv6: tuple[str, ...] = ()
    address_error: str = ""  # the address lookup failed (temporary DNS error)

    @property
    def addresses(self) -> tuple[str, ...]:
        return self.ipv4 + self.ipv6

    def as_dict(self) -> dict[str, object]:
        return {
            "preference": self.preference,
            "host": self.host,
            "unicode_host": self.unicode_host,
            "ipv4": list(self.ipv4),
            "ipv6": list(self.ipv6),
            "address_error": self.address_error or None,
        }


@dataclass(slots=True)
class MxReport:
    """Everything ``mailwright mx`` prints; ``problems`` says why it exits 1."""

    domain: str  # A-labels
    unicode_domain: str
    exists: bool = True
    hosts: list[MailHost] = field(default_factory=list)
    implicit: bool = False
    null_mx: bool = False
    dnssec: bool = False
    error: str = ""  # the MX lookup failed
    checks: list[HostCheck] = field(default_factory=list)
    sts: StsStatus | None = None
    checked: bool = False

    @property
    def problems(self) -> list[str]:
        """What stops or endangers delivery, one phrase each (empty: all is well)."""
        found: list[str] = []
        if self.error:
            found.append(f"MX lookup failed: {self.error}")
        elif not self.exists:
            found.append(f"{self.domain} does not exist (NXDOMAIN)")
        elif self.null_mx:
            found.append(f"{self.domain} publishes a null MX: it accepts no mail (RFC 7505)")
        elif not self.hosts:
            found.append(f"{self.domain} has no MX records and no address: no mail host")
        for host in self.hosts:
            if host.address_error:
                found.append(f"{host.host}: address lookup failed: {host.address_error}")
            elif not host.addresses:
                found.append(f"{host.host}: no A/AAAA records")
        for check in self.checks:
            found.extend(f"{check.host}: {p}" for p in check.problems)
        if self.sts is not None:
            found.extend(f"MTA-STS: {p}" for p in self.sts.problems)
        return found

    def as_dict(self) -> dict[str, object]:
        return {
            "domain": self.domain,
            "unicode_domain": self.unicode_domain,
            "exists": self.exists,
            "null_mx": self.null_mx,
            "implicit_mx": self.implicit,
            "dnssec_authenticated": self.dnssec,
            "error": self.error or None,
            "hosts": [h.as_dict() for h in self.hosts],
            "checks": [c.as_dict() for c in self.checks] if self.checked else None,
            "mta_sts": self.sts.as_dict() if self.sts is not None else None,
            "problems": self.problems,
        }


def domain_names(domain: str) -> tuple[str, str]:
    """``(a_labels, u_labels)`` of what the user typed; ``MxUsageError`` if it is no
    DNS name (an empty label, over 63/255 octets, or IDNA refuses it)."""
    name = query_name(domain)
    if name is None or not name_text(name) or domain.strip().startswith("."):
        raise MxUsageError(f"{domain!r} is not a valid domain name")
    ascii_name = name_text(name)
    return ascii_name, unicode_name(ascii_name)


def unicode_name(ascii_name: str) -> str:
    """The U-label form for display; the A-labels unchanged when decoding fails."""
    if "xn--" not in ascii_name:
        return ascii_name
    try:
        return str(idna.decode(ascii_name))
    except idna.IDNAError:
        return ascii_name


async def build_report(
    domain: str,
    resolver: Resolver,
    *,
    check: bool = False,
    settings: CheckSettings | None = None,
) -> MxReport:
    """Look ``domain`` up (and with ``check``, connect to its hosts)."""
    ascii_name, u_name = domain_names(domain)
    report = MxReport(ascii_name, u_name)
    try:
        answer = await resolver.mx(ascii_name)
    except DnsTemporaryError as exc:
        report.error = str(exc)
        return report
    report.exists = answer.exists
    report.dnssec = answer.authentic
    records = sorted(answer.records, key=lambda r: r.preference)  # stable: ties keep order
    if len(records) == 1 and records[0].exchange == "":
        # RFC 7505 §3 asks for preference 0; any single "." exchange means no mail.
        report.null_mx = True
        return report
    if answer.exists and not records:
        # RFC 5321 §5.1: no MX, so the domain itself is the mail host, if it has an
        # address (its A/AAAA answer's AD bit is then the DNSSEC status).
        implicit = await _addresses(resolver, NULL_MX_PREFERENCE, ascii_name)
        if implicit.addresses:
            report.hosts = [implicit]
            report.implicit = True
    else:
        # Null-MX exchanges among real ones are ignored (RFC 7505 §4.3 says such a set
        # is a misconfiguration; the real hosts are still tried).
        lookups = [_addresses(resolver, r.preference, r.exchange) for r in records if r.exchange]
        report.hosts = list(await asyncio.gather(*lookups))
    if check and report.hosts:
        report.checked = True
        options = settings or CheckSettings()
        targets = [(h.host, h.addresses[0]) for h in report.hosts if h.addresses]
        report.checks = await check_hosts(targets, resolver, options)
        report.sts = await check_sts(ascii_name, [h.host for h in report.hosts], resolver, options)
    return report


async def _addresses(resolver: Resolver, preference: int, host: str) -> MailHost:
    errors: list[str] = []
    found: dict[str, tuple[str, ...]] = {"a": (), "aaaa": ()}
    for kind in ("a", "aaaa"):
        try:
            answer = await getattr(resolver, kind)(host)
        except DnsTemporaryError as exc:
            errors.append(str(exc))
            continue
        found[kind] = tuple(answer.records)
    return MailHost(
        preference,
        host,
        unicode_name(host),
        found["a"],
        found["aaaa"],
        "; ".join(errors) if errors and not (found["a"] or found["aaaa"]) else "",
    )


__all__ = [
    "CheckSettings",
    "MailHost",
    "MxReport",
    "MxUsageError",
    "build_report",
    "domain_names",
    "unicode_name",
]
