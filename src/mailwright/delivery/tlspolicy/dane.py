"""DANE for SMTP (RFC 7672): TLSA records at ``_<port>._tcp.<MX host>`` pin the MX
host's certificate, when — and only when — DNSSEC vouches for them.

When DANE applies (RFC 7672 §2.2):

* the MX lookup that named the host was authenticated (AD from a trusted validating
  resolver, ``Answer.authentic``) — otherwise an attacker who can forge the MX answer
  picks a host with TLSA records of their choosing, so TLSA would prove nothing;
* the MX host's address records were authenticated (§2.2.2): a host in a zone that is
  not signed can have no authenticated TLSA records, so none are asked for (as Postfix
  does: some servers of unsigned zones fail queries for ``_25._tcp`` names, which
  must not make the host unusable);
* the TLSA answer itself was authenticated.

The TLSA base domain (§2.2.2, RFC 7671 §7): when the MX host name is an alias (a
CNAME) and its address answer is authenticated, TLSA records are looked up first at
the fully expanded name, then — when that gives no authenticated records — at the
original name.  The name the records were found at is the TLSA base domain.  A CNAME
at the TLSA query name itself (``_25._tcp.mx`` pointing elsewhere) is followed by the
resolver but changes no base domain (RFC 7671 §7).

What the records say:

* DANE-EE (usage 3): the leaf certificate or its public key matches (selector 0/1,
  matching type 0 full / 1 SHA-256 / 2 SHA-512).  Names and dates are not checked:
  the DNS binding *is* the authentication (RFC 7672 §3.1.1).
* DANE-TA (usage 2): a certificate the peer sent matches, the leaf chains to it as
  an RFC 5280 path with that certificate as its trust anchor (RFC 7671 §5.2.2;
  ``certs.issuance_path`` lists the checks), and
  the leaf is valid for one of the reference identifiers (§3.1.2, §3.2.2): the TLSA
  base domain, and with an alias also the other of the expanded and the original
  MX host name.
* PKIX-TA/PKIX-EE (usages 0/1) are unusable for SMTP (§3.1.3), as are unknown
  selectors or matching types.  Authenticated TLSA records none of which is usable
  still say "this host does TLS": TLS is required, unauthenticated (§2.2).

What does not apply DANE, so that other policies (MTA-STS, configuration,
opportunistic) decide: an unauthenticated MX, address or TLSA answer (a resolver that
does not validate never sets AD, so it never puts DANE in play and cannot wedge the
queue), and authenticated denial of TLSA records.

What makes the MX host unusable (``DaneOutcome.usable`` false): a TLSA lookup that
fails (SERVFAIL, timeout) when the MX and address answers were authenticated.  A
validating resolver answers SERVFAIL for a *bogus* answer, which is what an attacker
stripping or forging the TLSA records produces; falling back to another policy would
hand that attacker a plaintext or unauthenticated session.  RFC 7672 §2.2: "the MX
host is unusable"; the relay skips it with a 4.7.5 reason naming the failed lookup
and tries the next MX (its own DANE decision), and defers the mail when none is left,
as Postfix does ("TLSA lookup error for host:port", 4.7.5).
"""

from __future__ import annotations

import ssl
from collections import Counter
from dataclasses import dataclass

from mailwright.delivery.tlspolicy.certs import (
    association_data,
    issuance_path,
    names_match,
    peer_chain,
)
from mailwright.dns.types import DnsTemporaryError, Resolver, TlsaRecord
from mailwright.net.outbound.tlspolicy import TlsMode, TlsPolicy

# RFC 7218 acronyms for RFC 6698 §2.1.1 certificate usages.
PKIX_TA = 0
PKIX_EE = 1
DANE_TA = 2
DANE_EE = 3
USABLE_USAGES = (DANE_TA, DANE_EE)  # RFC 7672 §3.1.3: 0 and 1 are not for SMTP
USABLE_SELECTORS = (0, 1)  # RFC 6698 §2.1.2
USABLE_MATCHING_TYPES = (0, 1, 2)  # RFC 6698 §2.1.3
SMTP_PORT = 25  # RFC 7672 §2.2.3: TLSA at _25._tcp for MX delivery
_USAGE_NAMES = {PKIX_TA: "PKIX-TA", PKIX_EE: "PKIX-EE", DANE_TA: "DANE-TA", DANE_EE: "DANE-EE"}

SOURCE = "dane"


def tlsa_name(host: str, port: int = SMTP_PORT) -> str:
    """The TLSA query name for ``host`` (RFC 6698 §3, RFC 7672 §2.2.3)."""
    return f"_{port}._tcp.{host.rstrip('.').lower()}"


def usable(record: TlsaRecord) -> bool:
    return (
        record.usage in USABLE_USAGES
        and record.selector in USABLE_SELECTORS
        and record.matching_type in USABLE_MATCHING_TYPES
    )


def describe(records: tuple[TlsaRecord, ...] | list[TlsaRecord]) -> str:
    """ "2 DANE-EE, 1 DANE-TA" — for reasons and log lines."""
    counts = Counter(_USAGE_NAMES.get(r.usage, f"usage {r.usage}") for r in records)
    return ", ".join(f"{n} {name}" for name, n in sorted(counts.items()))


class DaneCheck:
    """The ``PeerCheck`` of a DANE policy: None when the peer's chain matches one of the
    usable TLSA ``records``, else the reason.  ``names`` are the reference identifiers
    for DANE-TA (the MX host name and the TLSA base domain)."""

    def __init__(self, records: tuple[TlsaRecord, ...], names: tuple[str, ...]) -> None:
        self.records = tuple(r for r in records if usable(r))
        self.names = names

    def __call__(self, ssl_object: ssl.SSLObject) -> str | None:
        return self.check_chain(peer_chain(ssl_object))

    def check_chain(self, chain: list[bytes]) -> str | None:
        if not chain:
            return "DANE: the server sent no certificate"
        problems: list[str] = []
        for record in self.records:
            if record.usage == DANE_EE:
                if association_data(chain[0], record.selector, record.matching_type) == record.data:
                    return None
            else:
                problem = self._check_ta(record, chain)
                if problem is None:
                    return None
                problems.append(problem)
        ee = sum(1 for r in self.records if r.usage == DANE_EE)
        detail = f"; DANE-TA: {problems[0]}" if problems else ""
        return (
            f"DANE: the server's certificate chain matches none of {len(self.records)} "
            f"usable TLSA records ({ee} DANE-EE){detail}"
        )

    def _check_ta(self, record: TlsaRecord, chain: list[bytes]) -> str | None:
        """None when ``record`` (DANE-TA) authenticates the chain, else why not."""
        anchors = [
            i
            for i, der in enumerate(chain)
            if i > 0 and association_data(der, record.selector, record.matching_type) == record.data
        ]
        if not anchors:
            return "no certificate sent by the server matches the TLSA record"
        problems = [issuance_path(chain, index) for index in anchors]
        if all(p is not None for p in problems):
            return problems[0]
        if not names_match(chain[0], self.names):
            return f"the certificate is not valid for {' or '.join(self.names)}"
        return None


@dataclass(frozen=True, slots=True)
class DaneOutcome:
    """What DANE says for one MX host: a policy (DANE, or ENCRYPT when the TLSA records
    are all unusable), or None with the reason DANE does not apply (for the log); or,
    with ``usable`` false, that the host must not be used at all (module docstring)."""

    policy: TlsPolicy | None
    reason: str
    usable: bool = True


async def dane_policy(
    resolver: Resolver, mx_host: str, *, mx_authentic: bool, port: int = SMTP_PORT
) -> DaneOutcome:
    """Look up TLSA for ``mx_host`` and turn it into a policy (module docstring)."""
    host = mx_host.rstrip(".").lower()
    if not mx_authentic:
        return DaneOutcome(None, "MX answer not DNSSEC-authenticated: DANE not applicable")
    try:
        expanded, secure = await address_chain(resolver, host)
    except DnsTemporaryError as exc:
        reason = f"address lookup of MX host {host} failed ({exc}): MX host unusable"
        return DaneOutcome(None, reason, usable=False)
    if not secure:
        return DaneOutcome(
            None, f"address records of {host} not DNSSEC-authenticated: DANE not applicable"
        )
    # RFC 7672 §2.2.2: the expanded name first, then the original one.
    bases = (expanded, host) if expanded != host else (host,)
    notes: list[str] = []
    for base in bases:
        name = tlsa_name(base, port)
        try:
            answer = await resolver.tlsa(name)
        except DnsTemporaryError as exc:
            # Not a fall-back to the next base name either: Postfix and RFC 7672
            # §2.2.2 stop at a lookup error, which may be an attack on this name.
            reason = (
                f"TLSA lookup for {name} failed ({exc}) after an authenticated MX answer: "
                f"MX host {host} unusable (RFC 7672 §2.2)"
            )
            return DaneOutcome(None, reason, usable=False)
        if not answer.authentic:
            notes.append(
                f"TLSA records at {name} not authenticated: ignored"
                if answer.records
                else f"no authenticated TLSA records at {name}"
            )
            continue
        if not answer.records:
            notes.append(f"no TLSA records at {name} (authenticated denial)")
            continue
        return _from_records(answer.records, name, base, host, expanded)
    return DaneOutcome(None, "; ".join(notes))


async def address_chain(resolver: Resolver, host: str) -> tuple[str, bool]:
    """The MX host's name after CNAMEs and whether its address answer was
    authenticated (A, else AAAA when the A lookup fails; the relay asked both already,
    so these are cache hits).  ``DnsTemporaryError`` when both fail."""
    try:
        answer = await resolver.a(host)
    except DnsTemporaryError:
        answer_v6 = await resolver.aaaa(host)
        return answer_v6.canonical_name or host, answer_v6.authentic
    return answer.canonical_name or host, answer.authentic


def _from_records(
    records: tuple[TlsaRecord, ...], name: str, base: str, host: str, expanded: str
) -> DaneOutcome:
    good = tuple(r for r in records if usable(r))
    if not good:
        # RFC 7672 §2.2: the records still tell us the host does TLS.
        reason = (
            f"TLSA at {name} ({describe(records)}) has no usable record: "
            "TLS required, certificate not authenticated (RFC 7672 §2.2)"
        )
        return DaneOutcome(TlsPolicy(TlsMode.ENCRYPT, SOURCE, reason), reason)
    # RFC 7672 §3.2.2: the TLSA base domain first; with an alias, the expanded and the
    # original MX host names are both names the signed DNS gives this host.
    names = tuple(dict.fromkeys((base, expanded, host)))
    reason = f"authenticated TLSA at {name}: {describe(good)}"
    if expanded != host:
        reason += f" (MX host {host} is an alias of {expanded}; TLSA base domain {base})"
    policy = TlsPolicy(TlsMode.DANE, SOURCE, reason, names, DaneCheck(good, names))
    return DaneOutcome(policy, reason)
