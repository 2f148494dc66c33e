"""``client.explain``: the knowledge base and the parsing of what people paste.

The registry walk holds its own copy of the IANA "SMTP Enhanced Status Codes" list
(code and title as IANA publishes them, with the defining RFC) and of RFC 5321 §4.2.2's
reply codes, so a code dropped from, or misnamed in, the tables fails here.  The
table-driven test feeds the input forms people have at hand (bare codes, reply lines,
multi-line replies, Postfix/Exim bounce sentences, DSN fields, provider replies) and
checks what comes out; the error test checks each malformed input gets a one-line
``ExplainError`` naming the problem.
"""

from __future__ import annotations

import pytest

from mailwright.client.explain import ExplainError, explain_reply, parse_reply_text, short
from mailwright.client.explain_codes import BASIC, ENHANCED
from mailwright.smtp import Reply

# The IANA registry's enumerated status codes: (subject.detail, title, RFC).
IANA_REGISTRY = [
    ("0.0", "Other undefined Status", "3463"),
    ("1.0", "Other address status", "3463"),
    ("1.1", "Bad destination mailbox address", "3463"),
    ("1.2", "Bad destination system address", "3463"),
    ("1.3", "Bad destination mailbox address syntax", "3463"),
    ("1.4", "Destination mailbox address ambiguous", "3463"),
    ("1.5", "Destination address valid", "3463"),
    ("1.6", "Destination mailbox has moved, No forwarding address", "3463"),
    ("1.7", "Bad sender's mailbox address syntax", "3463"),
    ("1.8", "Bad sender's system address", "3463"),
    ("1.9", "Message relayed to non-compliant mailer", "3886"),
    ("1.10", "Recipient address has null MX", "7505"),
    ("2.0", "Other or undefined mailbox status", "3463"),
    ("2.1", "Mailbox disabled, not accepting messages", "3463"),
    ("2.2", "Mailbox full", "3463"),
    ("2.3", "Message length exceeds administrative limit", "3463"),
    ("2.4", "Mailing list expansion problem", "3463"),
    ("3.0", "Other or undefined mail system status", "3463"),
    ("3.1", "Mail system full", "3463"),
    ("3.2", "System not accepting network messages", "3463"),
    ("3.3", "System not capable of selected features", "3463"),
    ("3.4", "Message too big for system", "3463"),
    ("3.5", "System incorrectly configured", "3463"),
    ("3.6", "Requested priority was changed", "6710"),
    ("4.0", "Other or undefined network or routing status", "3463"),
    ("4.1", "No answer from host", "3463"),
    ("4.2", "Bad connection", "3463"),
    ("4.3", "Directory server failure", "3463"),
    ("4.4", "Unable to route", "3463"),
    ("4.5", "Mail system congestion", "3463"),
    ("4.6", "Routing loop detected", "3463"),
    ("4.7", "Delivery time expired", "3463"),
    ("5.0", "Other or undefined protocol status", "3463"),
    ("5.1", "Invalid command", "3463"),
    ("5.2", "Syntax error", "3463"),
    ("5.3", "Too many recipients", "3463"),
    ("5.4", "Invalid command arguments", "3463"),
    ("5.5", "Wrong protocol version", "3463"),
    ("5.6", "Authentication Exchange line is too long", "4954"),
    ("6.0", "Other or undefined media error", "3463"),
    ("6.1", "Media not supported", "3463"),
    ("6.2", "Conversion required and prohibited", "3463"),
    ("6.3", "Conversion required but not supported", "3463"),
    ("6.4", "Conversion with loss performed", "3463"),
    ("6.5", "Conversion Failed", "3463"),
    ("6.6", "Message content not available", "4468"),
    ("6.7", "Non-ASCII addresses not permitted for that sender/recipient", "6531"),
    ("6.8", "UTF-8 string reply is required, but not permitted by the SMTP client", "6531"),
    ("6.9", "UTF-8 header message cannot be transferred to one or more recipients", "6531"),
    ("6.10", "Duplicate of X.6.8 (deprecated)", "6531"),
    ("7.0", "Other or undefined security status", "3463"),
    ("7.1", "Delivery not authorized, message refused", "3463"),
    ("7.2", "Mailing list expansion prohibited", "3463"),
    ("7.3", "Security conversion required but not possible", "3463"),
    ("7.4", "Security features not supported", "3463"),
    ("7.5", "Cryptographic failure", "3463"),
    ("7.6", "Cryptographic algorithm not supported", "3463"),
    ("7.7", "Message integrity failure", "3463"),
    ("7.8", "Authentication credentials invalid", "4954"),
    ("7.9", "Authentication mechanism is too weak", "4954"),
    ("7.10", "Encryption Needed", "5248"),
    ("7.11", "Encryption required for requested authentication mechanism", "4954"),
    ("7.12", "A password transition is needed", "4954"),
    ("7.13", "User Account Disabled", "5248"),
    ("7.14", "Trust relationship required", "5248"),
    ("7.15", "Priority Level is too low", "6710"),
    ("7.16", "Message is too big for the specified priority", "6710"),
    ("7.17", "Mailbox owner has changed", "7293"),
    ("7.18", "Domain owner has changed", "7293"),
    ("7.19", "RRVS test cannot be completed", "7293"),
    ("7.20", "No passing DKIM signature found", "7372"),
    ("7.21", "No acceptable DKIM signature found", "7372"),
    ("7.22", "No valid author-matched DKIM signature found", "7372"),
    ("7.23", "SPF validation failed", "7372"),
    ("7.24", "SPF validation error", "7372"),
    ("7.25", "Reverse DNS validation failed", "7372"),
    ("7.26", "Multiple authentication checks failed", "7372"),
    ("7.27", "Sender address has null MX", "7505"),
    ("7.28", "Mail flood detected", "IANA"),
    ("7.29", "ARC validation failure", "8617"),
    ("7.30", "REQUIRETLS support required", "8689"),
]

# RFC 5321 §4.2.2 (and §4.2.3's numeric order), RFC 7504 §3 and RFC 4954 §6.
REPLY_CODES = [
    (211, "5321"), (214, "5321"), (220, "5321"), (221, "5321"), (250, "5321"),
    (251, "5321"), (252, "5321"), (354, "5321"), (421, "5321"), (450, "5321"),
    (451, "5321"), (452, "5321"), (455, "5321"), (500, "5321"), (501, "5321"),
    (502, "5321"), (503, "5321"), (504, "5321"), (550, "5321"), (551, "5321"),
    (552, "5321"), (553, "5321"), (554, "5321"), (555, "5321"),
    (521, "7504"), (556, "7504"),
    (235, "4954"), (334, "4954"), (432, "4954"), (454, "4954"), (530, "4954"),
    (534, "4954"), (535, "4954"), (538, "4954"),
]  # fmt: skip


@pytest.mark.parametrize(("key", "title", "rfc"), IANA_REGISTRY)
@pytest.mark.parametrize("cls", ["2", "4", "5"])
def test_every_registry_code_is_explained(cls: str, key: str, title: str, rfc: str) -> None:
    code = f"{cls}.{key}"
    e = explain_reply(code)
    assert e.enhanced == code and e.code is None
    assert e.registered
    assert e.title == title
    assert rfc in e.rfc
    assert e.detail.startswith(f"{code}: {title} - ")
    assert e.fix
    assert e.permanent is {"2": None, "4": False, "5": True}[cls]


def test_the_tables_hold_nothing_beyond_the_registry() -> None:
    registry = {tuple(int(p) for p in key.split(".")) for key, _, _ in IANA_REGISTRY}
    assert set(ENHANCED) == registry
    assert {code for code, _ in REPLY_CODES} <= set(BASIC)


@pytest.mark.parametrize(("code", "rfc"), REPLY_CODES)
def test_every_reply_code_is_explained(code: int, rfc: str) -> None:
    e = explain_reply(str(code))
    assert e.code == code and e.enhanced == ""
    assert e.registered
    assert f"RFC {rfc}" in e.rfc
    assert e.title and e.fix
    if code < 400:
        assert e.permanent is None
    else:
        assert e.permanent is (code >= 500)


# (input, code, enhanced, text, words the summary must contain, words the fix must contain)
CASES = [
    ("550", 550, "", "", "mailbox unavailable", "unknown user"),
    ("5.7.1", None, "5.7.1", "", "Delivery not authorized", "authenticate"),
    ("451 4.7.1", 451, "4.7.1", "", "451 4.7.1 Delivery not authorized", "temporary:"),
    ("  421  ", 421, "", "", "Service not available", "retry later"),
    (
        "550 5.7.1 <x@y>: Relay access denied",
        550,
        "5.7.1",
        "<x@y>: Relay access denied",
        "will not relay",
        "587",
    ),
    (
        "550-5.1.1 The email account that you tried to reach does not exist.\r\n"
        "550-5.1.1 Please try double-checking the recipient's email address.\r\n"
        "550 5.1.1  https://support.google.com/mail/?p=NoSuchUser gsmtp",
        550,
        "5.1.1",
        "The email account that you tried to reach does not exist.\n"
        "Please try double-checking the recipient's email address.\n"
        "https://support.google.com/mail/?p=NoSuchUser gsmtp",
        "Bad destination mailbox address",
        "check the address",
    ),
    (
        "250-mail.example.org\n250-PIPELINING\n250-SIZE 10240000\n250 SMTPUTF8",
        250,
        "",
        "mail.example.org\nPIPELINING\nSIZE 10240000\nSMTPUTF8",
        "okay, completed",
        "nothing to fix",
    ),
    (
        "<bob@example.org>: host mx.example.org[192.0.2.250] said: 550 5.1.1 "
        "<bob@example.org>: Recipient address rejected: User unknown in virtual mailbox "
        "table (in reply to RCPT TO command)",
        550,
        "5.1.1",
        "<bob@example.org>: Recipient address rejected: User unknown in virtual mailbox "
        "table (in reply to RCPT TO command)",
        "recipient does not exist",
        "check the address",
    ),
    (
        "SMTP error from remote mail server after RCPT TO:<bob@example.org>:\n"
        "550 relay not permitted",
        550,
        "",
        "relay not permitted",
        "will not relay",
        "authenticate",
    ),
    (
        "SMTP error from remote mail server after RCPT TO:<bob@example.org>: 550 relay "
        "not permitted",
        550,
        "",
        "relay not permitted",
        "will not relay",
        "authenticate",
    ),
    (
        "Action: failed\nStatus: 5.2.2\nDiagnostic-Code: smtp; 552 5.2.2 Mailbox full",
        552,
        "5.2.2",
        "Mailbox full",
        "Mailbox full",
        "free space",
    ),
    ("Status: 4.4.1", None, "4.4.1", "Status: 4.4.1", "No answer from host", "temporary:"),
    (
        "550-5.7.26 This mail is unauthenticated, which poses a security risk to the\n"
        "550-5.7.26 sender and Gmail users, and has been blocked. The sender must\n"
        "550 5.7.26 authenticate with at least one of SPF or DKIM. gsmtp",
        550,
        "5.7.26",
        None,
        "Gmail refused unauthenticated mail",
        "DKIM",
    ),
    (
        "421-4.7.28 Gmail has detected an unusual rate of unsolicited mail",
        421,
        "4.7.28",
        "Gmail has detected an unusual rate of unsolicited mail",
        "Mail flood detected",
        "temporary: send slower",
    ),
    (
        "550 5.7.606 Access denied, banned sending IP [192.0.2.9]",
        550,
        "5.7.606",
        "Access denied, banned sending IP [192.0.2.9]",
        "detail 606 unregistered",
        "reputation",
    ),
    (
        "450 4.2.0 <bob@example.org>: Recipient address rejected: Greylisted",
        450,
        "4.2.0",
        "<bob@example.org>: Recipient address rejected: Greylisted",
        "greylisting",
        "retries",
    ),
    (
        "554 5.7.1 Service unavailable; Client host [192.0.2.9] blocked using zen.spamhaus.org",
        554,
        "5.7.1",
        "Service unavailable; Client host [192.0.2.9] blocked using zen.spamhaus.org",
        "DNS blocklist",
        "delisting",
    ),
    ("530 5.7.0 Must issue a STARTTLS command first", 530, "5.7.0", None, "TLS", "STARTTLS"),
    ("535 5.7.8 Error: authentication failed", 535, "5.7.8", None, "credentials", "password"),
    ("354 End data with <CR><LF>.<CR><LF>", 354, "", None, "Start mail input", "dot"),
    ("559", 559, "", "", "Unregistered 55x reply", "reply text"),
    ("5.3.99", None, "5.3.99", "", "Mail system status (detail 99", "administrator"),
]


@pytest.mark.parametrize(
    ("raw", "code", "enhanced", "text", "in_summary", "in_fix"),
    CASES,
    ids=[c[0][:40] for c in CASES],
)
def test_input_forms(
    raw: str, code: int | None, enhanced: str, text: str | None, in_summary: str, in_fix: str
) -> None:
    e = explain_reply(raw)
    assert (e.code, e.enhanced) == (code, enhanced)
    if text is not None:
        assert e.text == text
    assert in_summary in e.summary
    assert in_fix in e.fix
    assert e.rfc.startswith("RFC ") or e.rfc.startswith("IANA")


def test_unregistered_codes_are_flagged() -> None:
    assert not explain_reply("559").registered
    assert not explain_reply("5.7.606").registered
    assert not explain_reply("550 5.7.606").registered
    assert explain_reply("550 5.7.1").registered


def test_class_mismatch_is_pointed_out() -> None:
    e = explain_reply("451 5.7.1 hmm")
    assert "disagrees with the reply code" in e.detail
    assert e.permanent is False  # the basic code decides (RFC 5321 §4.2.1)


def test_a_reply_object_is_explained_like_its_text() -> None:
    reply = Reply(550, "5.1.1", ("<a@b>: Recipient address rejected: User unknown",))
    assert explain_reply(reply) == explain_reply(
        "550 5.1.1 <a@b>: Recipient address rejected: User unknown"
    )


def test_short_is_one_line_with_the_fix_for_failures() -> None:
    line = short(Reply(550, "5.1.1", ("User unknown",)))
    assert "\n" not in line
    assert line.startswith("Bad destination mailbox address")
    assert line.endswith("-- the recipient does not exist: check the address")
    assert short("250 2.0.0 Ok: queued as 1234") == "Other undefined Status"
    assert short("221 2.0.0 Bye") == "Other undefined Status"
    assert short("354 go ahead") == "Start mail input; end with <CRLF>.<CRLF>"
    assert short("no code here") == ""


def test_parse_reply_text() -> None:
    assert parse_reply_text("451 4.7.1 later") == (451, "4.7.1", "later")
    assert parse_reply_text("5.1.1") == (None, "5.1.1", "")


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("", "nothing to explain"),
        ("   \n ", "nothing to explain"),
        ("hello", "no SMTP reply code found in 'hello'"),
        ("999", "'999' is not an SMTP reply code: the first digit is 2-5 and the second 0-5"),
        ("123", "'123' is not an SMTP reply code"),
        ("570", "'570' is not an SMTP reply code"),
        ("6.1.1", "'6.1.1' is not a reply code"),
        ("1.2.3.4", "'1.2.3.4' is not a reply code"),
        ("55", "'55' is not a reply code"),
        ("550 6.1.1", "'6.1.1' is not an enhanced status code"),
        ("550 5.1111.1", "'5.1111.1' is not an enhanced status code"),
        ("the server at 192.0.2.250 hung up", "no SMTP reply code found"),
    ],
)
def test_errors_are_one_line(raw: str, message: str) -> None:
    with pytest.raises(ExplainError) as info:
        explain_reply(raw)
    assert message in str(info.value)
    assert "\n" not in str(info.value)
