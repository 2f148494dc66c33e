"""The resolver seam: what every DNS consumer may ask, and what an answer carries.

Answers are typed records, never dnspython objects, so that consumers (routing,
MTA-STS, DANE, SPF/DKIM/DMARC) do not depend on the library underneath and tests can
reason about plain values.

Three outcomes of a lookup (RFC 2308 distinguishes the two negative ones, and mail
routing must too — RFC 5321 §5.1 treats "no MX" and "no such domain" differently):

* records: ``Answer(records=(...), exists=True)``;
* the name exists but has no record of the type (NODATA): ``records=()``,
  ``exists=True``;
* the name does not exist (NXDOMAIN): ``records=()``, ``exists=False``.

A lookup that could not be answered (timeout, SERVFAIL, REFUSED, no server reachable)
raises ``DnsTemporaryError``: the caller defers, it never treats it as "no record".

``authentic`` is true only when the answer came with the DNSSEC AD bit from a resolver
the configuration trusts to validate (RFC 6698 §4.1, RFC 7672 §2.1); DANE uses TLSA
records only then.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

T = TypeVar("T")


class DnsError(Exception):
    """Base class of resolver failures."""


class DnsTemporaryError(DnsError):
    """No usable answer this time (timeout, SERVFAIL, unreachable server): retry later."""


@dataclass(frozen=True, slots=True)
class MxRecord:
    preference: int
    exchange: str  # lower case, no trailing dot; "" for a null MX (RFC 7505: ".")


@dataclass(frozen=True, slots=True)
class TlsaRecord:
    usage: int  # RFC 6698 §2.1.1: 2 = DANE-TA, 3 = DANE-EE (0/1 unused for SMTP, RFC 7672)
    selector: int  # 0 = full certificate, 1 = SubjectPublicKeyInfo
    matching_type: int  # 0 = exact, 1 = SHA-256, 2 = SHA-512
    data: bytes


@dataclass(frozen=True, slots=True)
class Answer(Generic[T]):
    records: tuple[T, ...]
    exists: bool = True  # False: NXDOMAIN
    authentic: bool = False  # AD bit from a trusted validating resolver
    canonical_name: str = ""  # the name after CNAMEs were followed (lower case, no dot)


class Resolver(Protocol):
    """Every method follows CNAMEs, honours TTLs (positive and negative answers are
    cached), and raises ``DnsTemporaryError`` when no answer could be had.  Names are
    A-labels (IDNA) or ASCII; a trailing dot is optional."""

    async def mx(self, name: str) -> Answer[MxRecord]: ...

    async def a(self, name: str) -> Answer[str]: ...  # IPv4 addresses as text

    async def aaaa(self, name: str) -> Answer[str]: ...  # IPv6 addresses as text

    async def txt(self, name: str) -> Answer[str]: ...  # each record's strings joined

    async def tlsa(self, name: str) -> Answer[TlsaRecord]: ...

    async def ptr(self, address: str) -> Answer[str]: ...  # reverse lookup of an IP
