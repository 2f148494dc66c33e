"""The registry of probe findings: stable ids, severities, explanations and fixes.

A finding id is an interface: CI pipelines grep for it and ``--fail-on`` compares its
severity, so ids are never renamed and every id a check can report is listed here, once.
A check reports ``Finding(kind, detail)``; ``detail`` says what was seen on this server
(the reply, the certificate date), the kind says what it means and what fixes it.

Severities follow the usual scanner scale (info < low < medium < high < critical):
*critical* lets a stranger use the server against others (open relay, smuggling);
*high* exposes secrets or mail to an attacker on the path; *medium* weakens protection
an attacker on the path has to defeat; *low* leaks information; *info* is a fact.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum


class Severity(IntEnum):
    INFO = 0
    LOW = 1
    MEDIUM = 2
    HIGH = 3
    CRITICAL = 4

    @property
    def label(self) -> str:
        return self.name.lower()

    @classmethod
    def parse(cls, text: str) -> Severity:
        """``"high"`` -> HIGH; ValueError naming the choices for anything else."""
        try:
            return cls[text.strip().upper()]
        except KeyError:
            choices = ", ".join(s.label for s in cls)
            raise ValueError(f"unknown severity {text!r} (choose from {choices})") from None


@dataclass(frozen=True, slots=True)
class Kind:
    """One kind of finding: what the id means, how bad it is and what fixes it."""

    id: str
    severity: Severity
    explanation: str
    fix: str


@dataclass(frozen=True, slots=True)
class Finding:
    kind: Kind
    detail: str

    @property
    def id(self) -> str:
        return self.kind.id

    @property
    def severity(self) -> Severity:
        return self.kind.severity


def _kinds(*kinds: Kind) -> dict[str, Kind]:
    return {kind.id: kind for kind in kinds}


KINDS = _kinds(
    # -- banner and EHLO ---------------------------------------------------------------
    Kind(
        "no-esmtp",
        Severity.LOW,
        "The server refused EHLO, so no ESMTP extension (STARTTLS, AUTH, SIZE) can be "
        "used (RFC 5321 §3.2).",
        "Enable ESMTP; every MTA of the last 25 years answers EHLO.",
    ),
    Kind(
        "banner-reveals-software",
        Severity.LOW,
        "The greeting names the server software and its version, which tells an "
        "attacker which vulnerabilities to try.",
        "Greet with the host name only (Postfix: smtpd_banner = $myhostname ESMTP).",
    ),
    # -- TLS -----------------------------------------------------------------------------
    Kind(
        "no-starttls",
        Severity.HIGH,
        "STARTTLS is not offered: mail and any credentials cross the network in "
        "clear text, readable and changeable on the path (RFC 3207, RFC 7435).",
        "Configure a certificate and offer STARTTLS (Postfix: smtpd_tls_security_level "
        "= may, with smtpd_tls_chain_files).",
    ),
    Kind(
        "starttls-failed",
        Severity.HIGH,
        "STARTTLS is offered but the upgrade fails (refused, or the handshake breaks), "
        "so senders fall back to clear text or defer mail.",
        "Check the certificate and key files and the TLS settings in the server's log.",
    ),
    Kind(
        "expired-certificate",
        Severity.HIGH,
        "The server's certificate has expired: verifying senders (MTA-STS, DANE, "
        "mail clients) refuse it (RFC 5280 §4.1.2.5).",
        "Renew the certificate and reload the server; automate renewal (ACME).",
    ),
    Kind(
        "certificate-not-yet-valid",
        Severity.HIGH,
        "The server's certificate is not valid yet (notBefore is in the future): "
        "verifying senders refuse it (RFC 5280 §4.1.2.5).",
        "Check the server's clock and the certificate's validity dates.",
    ),
    Kind(
        "certificate-name-mismatch",
        Severity.MEDIUM,
        "The certificate does not name the host: verifying senders (MTA-STS, DANE-TA, "
        "mail clients) refuse it (RFC 6125 §6.4).",
        "Use a certificate whose subjectAltName lists the MX or submission host name.",
    ),
    Kind(
        "untrusted-certificate",
        Severity.MEDIUM,
        "The certificate chain does not lead to a trusted CA (self-signed, or an "
        "intermediate missing), so verifying senders refuse it.",
        "Use a certificate from a public CA and serve the full chain, leaf first.",
    ),
    Kind(
        "weak-tls-protocol",
        Severity.MEDIUM,
        "The server completes a TLS 1.0 or 1.1 handshake; both are deprecated and "
        "breakable (RFC 8996).",
        "Allow TLS 1.2 and later only (Postfix: smtpd_tls_protocols = >=TLSv1.2).",
    ),
    Kind(
        "no-implicit-tls",
        Severity.INFO,
        "No implicit TLS (submissions, RFC 8314 §3) on the port probed; mail clients "
        "then submit with STARTTLS on 587.",
        "Offer submissions on port 465 if mail clients submit here.",
    ),
    # -- AUTH ----------------------------------------------------------------------------
    Kind(
        "auth-before-tls",
        Severity.HIGH,
        "AUTH is offered before TLS: a client that logs in sends its password in "
        "clear text, or in a form an eavesdropper can attack (RFC 4954 §4, RFC 8314).",
        "Offer AUTH only after STARTTLS (Postfix: smtpd_tls_auth_only = yes).",
    ),
    Kind(
        "auth-mechanisms",
        Severity.INFO,
        "The AUTH mechanisms the server offers after TLS (RFC 4954).",
        "Nothing to fix; prefer SCRAM-SHA-256 (RFC 7677) over PLAIN and LOGIN.",
    ),
    # -- user enumeration ------------------------------------------------------------------
    Kind(
        "user-enumeration",
        Severity.MEDIUM,
        "VRFY or EXPN confirms which mailboxes exist, handing spammers and password "
        "guessers a list of valid users (RFC 5321 §7.3).",
        "Answer VRFY with 252 and disable EXPN (Postfix: disable_vrfy_command = yes).",
    ),
    Kind(
        "user-enumeration-rcpt",
        Severity.INFO,
        "RCPT answers existing and unknown mailboxes differently.  Refusing unknown "
        "recipients at RCPT is what RFC 5321 §3.3 and backscatter prevention want, so "
        "this is expected; it still lets a client test addresses one by one.",
        "Limit what one client may try: a recipient-error limit and tarpit (Postfix: "
        "smtpd_hard_error_limit, smtpd_error_sleep_time).",
    ),
    # -- relay ---------------------------------------------------------------------------
    Kind(
        "open-relay",
        Severity.CRITICAL,
        "The server accepted a recipient in a foreign domain from this client without "
        "authentication: anyone can send spam through it (RFC 5321 §7.1, RFC 2505).",
        "Relay only for authenticated users and trusted networks (Postfix: "
        "smtpd_relay_restrictions = permit_mynetworks, permit_sasl_authenticated, "
        "reject_unauth_destination).",
    ),
    # -- SMTP smuggling ----------------------------------------------------------------------
    *(
        Kind(
            f"smuggling-{name}",
            Severity.CRITICAL,
            f"The server ends DATA at {shown}, not only at <CRLF>.<CRLF> (RFC 5321 "
            "§4.1.1.4): a message relayed through a server that passes that sequence on "
            "can carry a second, forged message (SMTP smuggling, CVE-2023-51764).",
            "Accept only <CRLF>.<CRLF> as the end of data and reject bare CR or LF "
            "(Postfix: smtpd_forbid_bare_newline = normalize or reject).",
        )
        for name, shown in (
            ("bare-lf", "<LF>.<LF>"),
            ("lf-dot-crlf", "<LF>.<CRLF>"),
            ("crlf-dot-lf", "<CRLF>.<LF>"),
            ("cr-dot-crlf", "<CR>.<CRLF>"),
            ("crlf-dot-cr", "<CRLF>.<CR>"),
            ("bare-cr", "<CR>.<CR>"),
            ("lf-dot-cr", "<LF>.<CR>"),
        )
    ),
)


def finding(kind_id: str, detail: str) -> Finding:
    """A finding of a registered kind (KeyError for an id not in ``KINDS``: a bug)."""
    return Finding(KINDS[kind_id], detail)
