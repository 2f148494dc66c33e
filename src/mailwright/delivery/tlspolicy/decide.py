"""Which TLS policy one delivery attempt must meet: the one place that weighs DANE,
MTA-STS and the configuration.

Precedence, per (recipient domain, MX host):

1. DANE — authenticated, usable TLSA records for the MX host (RFC 7672; RFC 8461 §2:
   a sender doing both prefers DANE where TLSA records are published).  Authenticated
   records none of which is usable only set a floor: TLS required (RFC 7672 §2.2),
   unless a rule below asks for more;
2. MTA-STS ``enforce`` — TLS with a certificate valid for the MX host name, and only to
   MX hosts the policy lists (RFC 8461 §4.1, §5);
3. the per-domain configuration, ``[[tls_policy]]`` (none / may / encrypt / verify);
4. MTA-STS ``testing`` — opportunistic, the reason saying what enforcement would do;
5. opportunistic STARTTLS (RFC 7435).

Whatever applies above "may" is never downgraded to plaintext by the client session:
``TlsPolicy.required``.  Every policy carries ``source`` and ``reason`` for the
delivery log line.

The relay uses it in two steps per recipient domain (``plan`` looks MTA-STS up once):

    plan = await decider.plan(domain)
    hosts = await plan.filter_mx(mx_hosts, mx_authentic=answer.authentic)
    # hosts.usable, in the caller's order; hosts.refused: host -> reason
    policy = await plan.policy_for(host, mx_authentic=answer.authentic)

An empty ``usable`` list when there were MX hosts means MTA-STS refused them all:
a temporary failure (RFC 8461 §5.1 step 3: never permanently fail before a new
policy has been looked for).

``policy_for`` raises ``MxHostUnusable`` for an MX host DANE says must not be used
(a failed TLSA lookup after an authenticated MX answer, RFC 7672 §2.2): the caller
skips the host, tries the next one, and defers the mail when none is left.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from mailwright.delivery.tlspolicy.dane import SMTP_PORT, dane_policy
from mailwright.delivery.tlspolicy.discover import MtaSts, StsOutcome, StsResult
from mailwright.delivery.tlspolicy.mtasts import StsMode, StsPolicy
from mailwright.dns.types import Resolver
from mailwright.net.outbound.tlspolicy import TlsMode, TlsPolicy

SOURCE_DEFAULT = "default"
SOURCE_CONFIG = "tls_policy"  # the [[tls_policy]] section of the configuration
SOURCE_MTA_STS = "mta-sts"

NO_STS = StsOutcome(StsResult.NONE, None, reason="MTA-STS not enabled")


class MxHostUnusable(Exception):
    """No policy lets this MX host be used (RFC 7672 §2.2); ``reason`` says why."""

    def __init__(self, host: str, reason: str) -> None:
        super().__init__(reason)
        self.host = host
        self.reason = reason


@dataclass(frozen=True, slots=True)
class MxFilter:
    usable: list[str]  # MX hosts delivery may use, in the order given
    refused: dict[str, str] = field(default_factory=dict)  # host -> why not
    reason: str = ""


def _sts_label(sts: StsOutcome) -> str:
    cached = ", cached" if sts.cached else ""
    return (
        f"MTA-STS {sts.policy.mode if sts.policy else 'none'} (policy id {sts.policy_id}{cached})"
    )


class _RefuseHost:
    """Peer check for an MX host an enforced MTA-STS policy does not list, should a
    caller connect to it anyway: the handshake may happen, the delivery must not."""

    def __init__(self, reason: str) -> None:
        self.reason = reason

    def __call__(self, _ssl_object: object) -> str:
        return self.reason


class DomainPlan:
    """The TLS decisions for one recipient domain (its MTA-STS state looked up once)."""

    def __init__(self, decider: TlsPolicyDecider, domain: str, sts: StsOutcome) -> None:
        self.decider = decider
        self.domain = domain
        self.sts = sts

    @property
    def enforced(self) -> StsPolicy | None:
        policy = self.sts.policy
        return policy if policy is not None and policy.mode is StsMode.ENFORCE else None

    async def filter_mx(
        self, hosts: Sequence[str], *, mx_authentic: bool, port: int = SMTP_PORT
    ) -> MxFilter:
        """The MX hosts an enforced MTA-STS policy allows (RFC 8461 §4.1) — plus those
        DANE authenticates, since DANE takes precedence; all of them otherwise."""
        policy = self.enforced
        if policy is None:
            return MxFilter(list(hosts))
        usable: list[str] = []
        refused: dict[str, str] = {}
        for host in hosts:
            if policy.matches(host):
                usable.append(host)
                continue
            if self.decider.dane:
                dane = await dane_policy(
                    self.decider.resolver, host, mx_authentic=mx_authentic, port=port
                )
                if dane.policy is not None and dane.policy.mode is TlsMode.DANE:
                    usable.append(host)
                    continue
                if not dane.usable:
                    refused[host] = dane.reason
                    continue
            refused[host] = (
                f"{host} is not an MX host allowed by {_sts_label(self.sts)}: "
                f"mx {', '.join(policy.mx)}"
            )
        reason = f"{_sts_label(self.sts)}: {len(usable)} of {len(hosts)} MX hosts allowed"
        return MxFilter(usable, refused, reason)

    async def mx_host_filter(
        self, hosts: list[str], mx_authentic: bool
    ) -> tuple[list[str], dict[str, str]]:
        """``filter_mx`` in the shape of ``delivery.relay.mx.MxHostFilter``."""
        result = await self.filter_mx(hosts, mx_authentic=mx_authentic)
        return result.usable, result.refused

    async def policy_for(
        self, mx_host: str, *, mx_authentic: bool, port: int = SMTP_PORT
    ) -> TlsPolicy:
        host = mx_host.rstrip(".").lower()
        notes: list[str] = []
        floor: TlsPolicy | None = None  # TLS required by unusable TLSA records
        if self.decider.dane:
            dane = await dane_policy(
                self.decider.resolver, host, mx_authentic=mx_authentic, port=port
            )
            if not dane.usable:
                # Never a fall-back to MTA-STS, configuration or opportunistic TLS:
                # the failure may be an attacker's bogus answer.
                raise MxHostUnusable(host, dane.reason)
            if dane.policy is not None and dane.policy.mode is TlsMode.DANE:
                return dane.policy
            floor = dane.policy
            notes.append(dane.reason)
        policy = self._below_dane(host, notes)
        if floor is not None and not policy.required:
            # RFC 7672 §2.2: authenticated but unusable TLSA records still make TLS
            # mandatory; a stronger policy below (MTA-STS enforce, verify) stands.
            return floor
        return policy

    def _below_dane(self, host: str, notes: list[str]) -> TlsPolicy:
        enforced = self.enforced
        if enforced is not None:
            label = _sts_label(self.sts)
            if enforced.matches(host):
                reason = f"{label}: {host} is listed; certificate must be valid for it"
                return TlsPolicy(TlsMode.VERIFY, SOURCE_MTA_STS, reason, (host,))
            reason = f"{label}: {host} is not a listed MX host ({', '.join(enforced.mx)})"
            return TlsPolicy(TlsMode.VERIFY, SOURCE_MTA_STS, reason, (host,), _RefuseHost(reason))
        configured = self.decider.configured.get(self.domain)
        if configured is not None:
            reason = f"[[tls_policy]] for {self.domain}: {configured.value}"
            names = (host,) if configured is TlsMode.VERIFY else ()
            return TlsPolicy(configured, SOURCE_CONFIG, reason, names)
        sts_policy = self.sts.policy
        if sts_policy is not None and sts_policy.mode is StsMode.TESTING:
            verdict = (
                "would be required to present a valid certificate"
                if sts_policy.matches(host)
                else f"would be refused: not a listed MX host ({', '.join(sts_policy.mx)})"
            )
            reason = f"{_sts_label(self.sts)}: not enforced; {host} {verdict}"
            return TlsPolicy(TlsMode.OPPORTUNISTIC, SOURCE_MTA_STS, reason)
        if self.sts.reason:
            notes.append(self.sts.reason)
        reason = "opportunistic STARTTLS" + (f" ({'; '.join(notes)})" if notes else "")
        return TlsPolicy(TlsMode.OPPORTUNISTIC, SOURCE_DEFAULT, reason)


class TlsPolicyDecider:
    """Built once from the configuration: the resolver (for TLSA), MTA-STS discovery
    (None: MTA-STS off), the per-domain ``[[tls_policy]]`` modes, and whether DANE is
    used at all."""

    def __init__(
        self,
        resolver: Resolver,
        mta_sts: MtaSts | None = None,
        configured: Mapping[str, TlsMode] | None = None,
        *,
        dane: bool = True,
    ) -> None:
        self.resolver = resolver
        self.mta_sts = mta_sts
        self.configured = {d.rstrip(".").lower(): m for d, m in (configured or {}).items()}
        self.dane = dane

    async def plan(self, domain: str) -> DomainPlan:
        domain = domain.rstrip(".").lower()
        sts = await self.mta_sts.discover(domain) if self.mta_sts is not None else NO_STS
        return DomainPlan(self, domain, sts)

    async def decide(
        self, domain: str, mx_host: str, *, mx_authentic: bool, port: int = SMTP_PORT
    ) -> TlsPolicy:
        """The policy for one (recipient domain, MX host): ``plan`` + ``policy_for``."""
        plan = await self.plan(domain)
        return await plan.policy_for(mx_host, mx_authentic=mx_authentic, port=port)
