"""What a reply's *text* adds to its codes: well-known MTA and provider wordings.

The codes say the class of a problem; the text often says exactly which one — Postfix's
"Relay access denied" and "User unknown in local recipient table", Exim's "relay not
permitted", Gmail's 5.7.26 "unauthenticated email ... DMARC", Microsoft's 5.7.5xx/6xx/7xx
details (which are outside the IANA registry).  Each ``Hint`` matches a pattern on the
text (and optionally an enhanced code) and carries a one-phrase diagnosis and its fix.
The first match wins, so the more specific entries come first.
"""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Hint:
    """``pattern`` searched in the reply text (case-insensitive); ``enhanced`` narrows
    it to one enhanced code's subject.detail (e.g. "7.26") when not empty; ``marker``,
    when set, must also be in the text (a provider's signature, such as Gmail's
    "gsmtp"), so a generic word like "spam" is not blamed on a provider."""

    source: str
    pattern: re.Pattern[str]
    diagnosis: str
    fix: str
    enhanced: str = ""
    marker: re.Pattern[str] | None = None

    def matches(self, text: str, sub_detail: str) -> bool:
        if self.enhanced and self.enhanced != sub_detail:
            return False
        if self.marker is not None and not self.marker.search(text):
            return False
        return self.pattern.search(text) is not None


# Gmail ends every reply with "gsmtp" and links support.google.com.
_GMAIL = re.compile(r"gsmtp|google\.com|gmail", re.IGNORECASE)
# Exchange Online / Outlook.com name themselves or their hosts in the text.
_MICROSOFT = re.compile(
    r"outlook|hotmail|microsoft|protection\.outlook|exchange|\bAS\(\d+\)", re.IGNORECASE
)


def _h(
    source: str,
    pattern: str,
    diagnosis: str,
    fix: str,
    enhanced: str = "",
    marker: re.Pattern[str] | None = None,
) -> Hint:
    return Hint(source, re.compile(pattern, re.IGNORECASE), diagnosis, fix, enhanced, marker)


HINTS: tuple[Hint, ...] = (
    # --- providers (checked first: their texts are the most specific) ---
    _h(
        "Gmail",
        r"DMARC|unauthenticated|authentication (?:checks|requirements)",
        "Gmail refused unauthenticated mail (DMARC failed, or SPF and DKIM both failed)",
        "publish SPF and sign with DKIM aligned with the From: domain; bulk senders "
        "also need a DMARC record",
        "7.26",
        _GMAIL,
    ),
    _h(
        "Gmail",
        r"unusual rate|rate limit|receiving mail at a rate",
        "Gmail is rate-limiting this sender or IP",
        "send slower and check the sender's reputation (Postmaster Tools)",
        "7.28",
        _GMAIL,
    ),
    _h(
        "Gmail",
        r"PTR|reverse DNS",
        "Gmail requires a PTR record for the sending IP that resolves back",
        "set a PTR for the sending IP whose name resolves back to it",
        "7.25",
        _GMAIL,
    ),
    _h(
        "Gmail",
        r"likely unsolicited|spam",
        "Gmail's filters classified the message as spam",
        "check the content, authentication and the sending IP's reputation",
        marker=_GMAIL,
    ),
    _h(
        "Microsoft",
        r"S3150|S3140|blocklist|block list",
        "Microsoft (Outlook.com/Exchange Online) blocks the sending IP",
        "request delisting through the Outlook.com sender support form",
        marker=_MICROSOFT,
    ),
    _h(
        "Microsoft",
        r"AS\(\d+\)",
        "Exchange Online refused the recipient (directory-based edge blocking or an "
        "anti-spam rule, AS code in the text)",
        "check the recipient exists in that tenant; the AS number names the rule",
    ),
    _h(
        "Microsoft",
        r"sending domain (?:does not|doesn't) (?:pass|meet)",
        "Microsoft requires the sending domain to pass DMARC/authentication",
        "publish SPF, DKIM and DMARC aligned with the From: domain",
        marker=_MICROSOFT,
    ),
    _h(
        "Microsoft",
        r"traffic not accepted from this IP|banned sending IP",
        "Microsoft does not accept traffic from this IP (banned or unknown IP range)",
        "send from an IP with a good reputation and a PTR; request delisting",
    ),
    _h(
        "Microsoft",
        r"tenant|recipient'?s? organization|RESOLVER\.",
        "Exchange Online refused it by the recipient organisation's settings",
        "the recipient's administrator must allow the sender or fix the mail flow rule",
        marker=_MICROSOFT,
    ),
    # --- Postfix texts ---
    _h(
        "Postfix",
        r"Relay access denied",
        "the server will not relay for you: you are not authenticated and the recipient "
        "is not one of its domains",
        "authenticate (submission port 587 with STARTTLS + AUTH), or send to a domain "
        "the server hosts",
    ),
    _h(
        "Postfix",
        r"User unknown in (?:local|virtual|relay) (?:recipient|alias|mailbox) table"
        r"|User unknown|no such user|mailbox unavailable|does not exist|unknown user",
        "the recipient does not exist on that server",
        "the recipient does not exist: check the address",
    ),
    _h(
        "Postfix",
        r"Client host rejected: cannot find your (?:reverse )?hostname",
        "the server requires the client IP to have a PTR record that resolves back",
        "set a PTR for the sending IP whose name resolves back to it",
    ),
    _h(
        "Postfix",
        r"Helo command rejected",
        "the server rejected the EHLO/HELO name",
        "send a fully-qualified host name that resolves (EHLO mail.example.com)",
    ),
    _h(
        "Postfix",
        r"Sender address rejected: Domain not found|Sender address rejected",
        "the server refused the envelope sender (its domain does not resolve, or policy)",
        "use a sender whose domain has MX or A records",
    ),
    _h(
        "Postfix",
        r"blocked using|listed (?:at|on|by)|\bRBL\b|\bDNSBL\b|spamhaus|spamcop",
        "the client IP is on a DNS blocklist the server uses",
        "look up the IP on the list the text names and request delisting",
    ),
    _h(
        "Postfix",
        r"greylist|graylist|try again later|please retry",
        "greylisting: the first attempt from an unknown sender is deferred",
        "nothing: a real MTA retries after a few minutes and is then accepted",
    ),
    _h(
        "Postfix",
        r"Must issue a STARTTLS command first|STARTTLS (?:is )?required|"
        r"TLS required|encryption required",
        "the server requires TLS before this command",
        "send STARTTLS (or connect to port 465 with implicit TLS) first",
    ),
    _h(
        "Postfix",
        r"Authentication required|authentication is required|must authenticate",
        "the server requires AUTH before accepting mail",
        "authenticate (usually after STARTTLS) before MAIL FROM",
    ),
    _h(
        "Postfix",
        r"improper command pipelining|synchroni[sz]ation error",
        "the client sent commands before the server's reply (without PIPELINING)",
        "wait for each reply, or use PIPELINING only where EHLO advertises it",
    ),
    _h(
        "Postfix",
        r"Message size exceeds|message too (?:big|large)|size limit",
        "the message is bigger than the server accepts",
        "send a smaller message; the EHLO SIZE keyword says the limit",
    ),
    _h(
        "Postfix",
        r"over ?quota|quota exceeded|mailbox (?:is )?full",
        "the recipient's mailbox is full",
        "the recipient must free space; retrying later may succeed",
    ),
    _h(
        "Postfix",
        r"bare <?LF>?|bare new ?line|message contains bare",
        "the message has bare LF line endings, which the server refuses (SMTP smuggling defence)",
        "send CRLF line endings",
    ),
    # --- Exim texts ---
    _h(
        "Exim",
        r"relay(?:ing)? not permitted|relaying denied|relay denied",
        "the server will not relay for you",
        "authenticate, or send to a domain the server hosts",
    ),
    _h(
        "Exim",
        r"Unrouteable address|unroutable",
        "the server cannot route the address (no MX/A for the domain, or no router accepts it)",
        "check the recipient domain's DNS (mailwright mx DOMAIN) and the address",
    ),
    _h(
        "Exim",
        r"Sender verify failed|sender verification",
        "the server called back the sender's domain and the sender did not verify",
        "send from an address that accepts mail (including <> bounces)",
    ),
    _h(
        "Exim",
        r"SPF|sender policy framework",
        "the sender domain's SPF does not allow the sending IP",
        "add the sending IP to the domain's SPF record",
    ),
    _h(
        "Exim",
        r"DKIM",
        "a DKIM check failed",
        "sign with DKIM, aligned with the From: domain, key published in DNS",
    ),
)
