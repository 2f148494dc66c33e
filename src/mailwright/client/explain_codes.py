"""The knowledge base behind ``mailwright explain``: what each reply code means.

Two tables, both data only (the parsing and the wording of an answer live in
``client.explain``):

* ``BASIC`` — the three-digit reply codes: every one RFC 5321 §4.2.2 lists (with the
  §4.2.1 theory and the §4.3.2 command-to-reply sequences in the wording), the two RFC
  7504 added (521, 556), the AUTH ones of RFC 4954 §6 (235, 334, 432, 454, 500, 530,
  534, 535, 538) and ETRN's of RFC 1985 (253, 458, 459).
* ``ENHANCED`` — every entry of the IANA "SMTP Enhanced Status Codes" registry
  (RFC 5248; subjects and details of RFC 3463 §3 plus the additions of RFC 3886, 4468,
  4954, 5248, 6531, 6710, 7293, 7372, 7505, 8617 and 8689), keyed by
  ``(subject, detail)`` since the class (2, 4, 5) only says success / temporary /
  permanent (RFC 3463 §3.1).

Each entry carries the registry's title, a plain-words meaning, the RFC that defines it
and what usually fixes it — written for the person holding the bounce, not for the
implementer.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class CodeInfo:
    """One code: ``title`` (the registry's or RFC's name), ``meaning``, ``rfc``, ``fix``."""

    title: str
    meaning: str
    rfc: str
    fix: str


# RFC 3463 §3.1: the class says how final the outcome is.
CLASSES: dict[int, str] = {
    2: "success",
    4: "persistent transient failure (temporary: the sender keeps the message and retries)",
    5: "permanent failure (retrying the same message will fail the same way)",
}

# RFC 3463 §3.2 (subject sub-codes), with RFC 3463's own wording of who controls each.
SUBJECTS: dict[int, CodeInfo] = {
    0: CodeInfo(
        "Other or undefined status",
        "no more specific subject was given",
        "RFC 3463 §3.2",
        "read the reply text; it carries the real reason",
    ),
    1: CodeInfo(
        "Addressing status",
        "something about the sender or recipient address (syntax or validity)",
        "RFC 3463 §3.2",
        "check the address for typos and that its domain accepts mail",
    ),
    2: CodeInfo(
        "Mailbox status",
        "something about the recipient's mailbox (full, disabled, size limit)",
        "RFC 3463 §3.2",
        "the recipient (or their administrator) has to act on the mailbox",
    ),
    3: CodeInfo(
        "Mail system status",
        "something about the receiving mail system (storage, size limits, configuration)",
        "RFC 3463 §3.2",
        "the receiving system's administrator has to act; retry later or contact them",
    ),
    4: CodeInfo(
        "Network and routing status",
        "DNS, routing or connection trouble between the systems",
        "RFC 3463 §3.2",
        "check DNS (MX, A/AAAA) and connectivity to the next hop",
    ),
    5: CodeInfo(
        "Mail delivery protocol status",
        "an SMTP protocol problem: a command, its syntax or its order",
        "RFC 3463 §3.2",
        "fix the client's command (see the reply text for which one)",
    ),
    6: CodeInfo(
        "Message content or media status",
        "the content could not be carried or converted (MIME, 8-bit, UTF-8)",
        "RFC 3463 §3.2",
        "send content the next hop supports (7-bit/MIME-encoded, or a UTF-8-capable path)",
    ),
    7: CodeInfo(
        "Security or policy status",
        "policy refused it: relaying, authentication, filtering, sender authentication",
        "RFC 3463 §3.2",
        "authenticate, or fix the sending domain's SPF/DKIM/DMARC, or ask the receiver's "
        "postmaster about their policy",
    ),
}

_R3463 = "RFC 3463 §3"


def _e(title: str, meaning: str, rfc: str, fix: str) -> CodeInfo:
    return CodeInfo(title, meaning, rfc, fix)


# The IANA registry, every enumerated entry, keyed (subject, detail).
ENHANCED: dict[tuple[int, int], CodeInfo] = {
    (0, 0): _e(
        "Other undefined Status",
        "only the class of the outcome is known",
        _R3463 + ".3",
        "read the reply text; the server gave no more specific code",
    ),
    # --- X.1.x addressing (RFC 3463 §3.4) ---
    (1, 0): _e(
        "Other address status",
        "something about an address caused this",
        _R3463 + ".4",
        "check the sender and recipient addresses",
    ),
    (1, 1): _e(
        "Bad destination mailbox address",
        "the recipient does not exist: the part left of the @ is unknown there",
        _R3463 + ".4",
        "the recipient does not exist: check the address for typos, or ask the "
        "recipient for a working one",
    ),
    (1, 2): _e(
        "Bad destination system address",
        "the recipient's domain does not exist or does not accept mail",
        _R3463 + ".4",
        "check the part right of the @ (typo? does the domain have MX or A records?)",
    ),
    (1, 3): _e(
        "Bad destination mailbox address syntax",
        "the recipient address is not valid syntax",
        _R3463 + ".4",
        "write the address as local@domain, in angle brackets on the wire (RCPT TO:<a@b>)",
    ),
    (1, 4): _e(
        "Destination mailbox address ambiguous",
        "the address matches more than one mailbox on the receiving system",
        _R3463 + ".4",
        "use the recipient's full, exact address",
    ),
    (1, 5): _e(
        "Destination address valid",
        "the recipient address was accepted",
        _R3463 + ".4",
        "nothing to fix",
    ),
    (1, 6): _e(
        "Destination mailbox has moved, No forwarding address",
        "the address used to be valid but no longer takes mail",
        _R3463 + ".4",
        "remove the address from your lists; ask the recipient for the new one",
    ),
    (1, 7): _e(
        "Bad sender's mailbox address syntax",
        "the sender (MAIL FROM) address is not valid syntax",
        _R3463 + ".4",
        "use a valid envelope sender (MAIL FROM:<user@domain>, or <> for bounces)",
    ),
    (1, 8): _e(
        "Bad sender's system address",
        "the sender's domain does not exist or cannot receive replies",
        _R3463 + ".4",
        "send from a domain that resolves (MX or A) so bounces can come back",
    ),
    (1, 9): _e(
        "Message relayed to non-compliant mailer",
        "the address was valid but the message went on to a system that cannot report "
        "further status",
        "RFC 3886",
        "nothing to fix; no further delivery reports will come",
    ),
    (1, 10): _e(
        "Recipient address has null MX",
        "the recipient's domain publishes a null MX (MX 0 .): it never accepts mail",
        "RFC 7505 §4.2",
        "the domain does not take mail by design: use another address",
    ),
    # --- X.2.x mailbox (RFC 3463 §3.5) ---
    (2, 0): _e(
        "Other or undefined mailbox status",
        "the mailbox exists but something about it refused the message",
        _R3463 + ".5",
        "read the reply text; the recipient may have to act",
    ),
    (2, 1): _e(
        "Mailbox disabled, not accepting messages",
        "the mailbox exists but is disabled",
        _R3463 + ".5",
        "the recipient's account is disabled: reach them another way",
    ),
    (2, 2): _e(
        "Mailbox full",
        "the recipient is over quota",
        _R3463 + ".5",
        "the recipient must delete mail; retrying later may succeed",
    ),
    (2, 3): _e(
        "Message length exceeds administrative limit",
        "the message is bigger than this mailbox accepts",
        _R3463 + ".5",
        "send a smaller message (link large files instead of attaching them)",
    ),
    (2, 4): _e(
        "Mailing list expansion problem",
        "the address is a mailing list that could not be expanded",
        _R3463 + ".5",
        "tell the list's owner; the list is misconfigured",
    ),
    # --- X.3.x mail system (RFC 3463 §3.6) ---
    (3, 0): _e(
        "Other or undefined mail system status",
        "the receiving system normally accepts mail but something about it failed",
        _R3463 + ".6",
        "retry later; if it persists, contact the receiving system's postmaster",
    ),
    (3, 1): _e(
        "Mail system full",
        "the receiving system is out of storage",
        _R3463 + ".6",
        "the receiving system's administrator must free disk space; the sender retries",
    ),
    (3, 2): _e(
        "System not accepting network messages",
        "the host is not taking mail now (shutdown, load, maintenance)",
        _R3463 + ".6",
        "retry later",
    ),
    (3, 3): _e(
        "System not capable of selected features",
        "the message asked for a feature the destination does not support",
        _R3463 + ".6",
        "send without the extension (e.g. without DSN, SMTPUTF8 or BINARYMIME options)",
    ),
    (3, 4): _e(
        "Message too big for system",
        "the message exceeds the system's size limit (see its EHLO SIZE)",
        _R3463 + ".6",
        "send a smaller message; check the SIZE the server advertises after EHLO",
    ),
    (3, 5): _e(
        "System incorrectly configured",
        "the receiving system's configuration cannot accept this message",
        _R3463 + ".6",
        "the receiving system's administrator must fix its configuration",
    ),
    (3, 6): _e(
        "Requested priority was changed",
        "the message was accepted but its MT-PRIORITY was changed",
        "RFC 6710 §9.2",
        "nothing to fix; the message goes on at a different priority",
    ),
    # --- X.4.x network and routing (RFC 3463 §3.7) ---
    (4, 0): _e(
        "Other or undefined network or routing status",
        "something went wrong with the network or routing",
        _R3463 + ".7",
        "check DNS and connectivity to the destination; the sender retries",
    ),
    (4, 1): _e(
        "No answer from host",
        "the destination did not answer the connection",
        _R3463 + ".7",
        "check that the MX host is up and port 25 is reachable (firewall?)",
    ),
    (4, 2): _e(
        "Bad connection",
        "the connection was made but broke or timed out during the transaction",
        _R3463 + ".7",
        "usually transient; if it repeats, look for a firewall/MTU problem or a "
        "server dropping slow clients",
    ),
    (4, 3): _e(
        "Directory server failure",
        "a directory (typically DNS) could not be reached",
        _R3463 + ".7",
        "check the resolver and the domain's DNS servers; retry later",
    ),
    (4, 4): _e(
        "Unable to route",
        "no next hop could be found (no MX and no address for the domain)",
        _R3463 + ".7",
        "check the recipient domain's MX and A/AAAA records (mailwright mx DOMAIN)",
    ),
    (4, 5): _e(
        "Mail system congestion",
        "the mail system is congested",
        _R3463 + ".7",
        "retry later; sending slower helps",
    ),
    (4, 6): _e(
        "Routing loop detected",
        "the message was forwarded too many times (too many Received: fields)",
        _R3463 + ".7",
        "look for a forwarding loop (an alias or MX pointing back to itself)",
    ),
    (4, 7): _e(
        "Delivery time expired",
        "the message was queued longer than allowed and given up",
        _R3463 + ".7",
        "the earlier temporary failures in the bounce say why; fix that cause",
    ),
    # --- X.5.x mail delivery protocol (RFC 3463 §3.8) ---
    (5, 0): _e(
        "Other or undefined protocol status",
        "something was wrong with the SMTP dialogue",
        _R3463 + ".8",
        "read the reply text for the command at fault",
    ),
    (5, 1): _e(
        "Invalid command",
        "a command was out of sequence or not supported",
        _R3463 + ".8",
        "send commands in order: EHLO, MAIL FROM, RCPT TO, DATA (RFC 5321 §4.3.2)",
    ),
    (5, 2): _e(
        "Syntax error",
        "a command could not be parsed",
        _R3463 + ".8",
        "fix the command's syntax (e.g. MAIL FROM:<a@b> with the angle brackets)",
    ),
    (5, 3): _e(
        "Too many recipients",
        "more recipients than this server takes in one transaction",
        _R3463 + ".8",
        "send the remaining recipients in another transaction (clients do this on 452)",
    ),
    (5, 4): _e(
        "Invalid command arguments",
        "a valid command had arguments out of range or not recognised",
        _R3463 + ".8",
        "drop or fix the parameter (e.g. an ESMTP option the server did not advertise)",
    ),
    (5, 5): _e(
        "Wrong protocol version",
        "a protocol version mismatch could not be resolved",
        _R3463 + ".8",
        "use the protocol the server speaks (SMTP vs LMTP, EHLO vs HELO)",
    ),
    (5, 6): _e(
        "Authentication Exchange line is too long",
        "an AUTH response was longer than the server's buffer",
        "RFC 4954 §6",
        "use a mechanism with shorter exchanges, or the initial-response form within limits",
    ),
    # --- X.6.x message content or media (RFC 3463 §3.9) ---
    (6, 0): _e(
        "Other or undefined media error",
        "something about the content made it undeliverable",
        _R3463 + ".9",
        "read the reply text; often a content filter",
    ),
    (6, 1): _e(
        "Media not supported",
        "the message's media is not supported by the next hop",
        _R3463 + ".9",
        "send content the destination supports",
    ),
    (6, 2): _e(
        "Conversion required and prohibited",
        "the content had to be converted but conversion was forbidden",
        _R3463 + ".9",
        "send 7-bit, MIME-encoded content (quoted-printable/base64)",
    ),
    (6, 3): _e(
        "Conversion required but not supported",
        "the content had to be converted (e.g. 8-bit to 7-bit) and could not be",
        _R3463 + ".9",
        "encode 8-bit parts as quoted-printable or base64 before sending",
    ),
    (6, 4): _e(
        "Conversion with loss performed",
        "the message was delivered but a conversion lost some data",
        _R3463 + ".9",
        "send content that needs no conversion",
    ),
    (6, 5): _e(
        "Conversion Failed",
        "a needed conversion failed",
        _R3463 + ".9",
        "send content that needs no conversion",
    ),
    (6, 6): _e(
        "Message content not available",
        "the content referenced (BURL) could not be fetched",
        "RFC 4468 §7",
        "check the IMAP URL and the submission server's access to it",
    ),
    (6, 7): _e(
        "Non-ASCII addresses not permitted for that sender/recipient",
        "an internationalised (UTF-8) address was used where it is not allowed",
        "RFC 6531 §3.5",
        "use an ASCII address, or a path where every hop supports SMTPUTF8",
    ),
    (6, 8): _e(
        "UTF-8 string reply is required, but not permitted by the SMTP client",
        "the answer needs UTF-8 but the client did not ask for SMTPUTF8",
        "RFC 6531 §3.7.4.1",
        "repeat the command with the SMTPUTF8 parameter",
    ),
    (6, 9): _e(
        "UTF-8 header message cannot be transferred to one or more recipients",
        "the message has UTF-8 headers and the next hop cannot take them",
        "RFC 6531 §3.7.5",
        "send with ASCII headers (RFC 2047 encoded words) or through SMTPUTF8 hops",
    ),
    (6, 10): _e(
        "Duplicate of X.6.8 (deprecated)",
        "registered twice; means the same as X.6.8",
        "RFC 6531 (IANA note)",
        "repeat the command with the SMTPUTF8 parameter",
    ),
    # --- X.7.x security or policy (RFC 3463 §3.10) ---
    (7, 0): _e(
        "Other or undefined security status",
        "security or policy refused it without a more specific reason "
        "(with 235 it is the AUTH success code of RFC 4954)",
        _R3463 + ".10",
        "read the reply text; often authentication required or TLS required",
    ),
    (7, 1): _e(
        "Delivery not authorized, message refused",
        "policy refused it: relaying denied, a blocklist, or a filter",
        _R3463 + ".10",
        "authenticate before sending through this server, or send to a domain it "
        "hosts; if blocklisted, clear the listing named in the text",
    ),
    (7, 2): _e(
        "Mailing list expansion prohibited",
        "the sender may not send to this mailing list",
        _R3463 + ".10",
        "subscribe, or ask the list owner to allow your address",
    ),
    (7, 3): _e(
        "Security conversion required but not possible",
        "a conversion between secure messaging protocols was needed and impossible",
        _R3463 + ".10",
        "send in a format the recipient's system can handle",
    ),
    (7, 4): _e(
        "Security features not supported",
        "the message needs a security feature the delivery protocol lacks",
        _R3463 + ".10",
        "send without that feature, or through a path that supports it",
    ),
    (7, 5): _e(
        "Cryptographic failure",
        "a system could not validate or decrypt (key missing or invalid)",
        _R3463 + ".10",
        "check the keys and certificates involved",
    ),
    (7, 6): _e(
        "Cryptographic algorithm not supported",
        "the algorithm needed to validate or decrypt is not supported",
        _R3463 + ".10",
        "use a widely supported algorithm",
    ),
    (7, 7): _e(
        "Message integrity failure",
        "the message was corrupted or altered in transit",
        _R3463 + ".10",
        "find what modifies the message on the way (footer, filter) and resend",
    ),
    (7, 8): _e(
        "Authentication credentials invalid",
        "AUTH failed: wrong user name or password",
        "RFC 4954 §6",
        "check the user name and password (and the mechanism the account allows)",
    ),
    (7, 9): _e(
        "Authentication mechanism is too weak",
        "the chosen AUTH mechanism is weaker than the server's policy",
        "RFC 4954 §6",
        "use a stronger mechanism the server advertises (e.g. SCRAM-SHA-256)",
    ),
    (7, 10): _e(
        "Encryption Needed",
        "an external privacy layer (TLS) is needed for this mechanism",
        "RFC 5248 §2.4",
        "send STARTTLS first (or use port 465), then authenticate",
    ),
    (7, 11): _e(
        "Encryption required for requested authentication mechanism",
        "this AUTH mechanism is only allowed over TLS",
        "RFC 4954 §6",
        "send STARTTLS first (or use port 465), then authenticate",
    ),
    (7, 12): _e(
        "A password transition is needed",
        "the account must log in once with PLAIN to set up the chosen mechanism",
        "RFC 4954 §6",
        "authenticate once with PLAIN over TLS, then the mechanism works",
    ),
    (7, 13): _e(
        "User Account Disabled",
        "authentication succeeded but the account is disabled",
        "RFC 5248 §2.4",
        "the account must be re-enabled by its administrator",
    ),
    (7, 14): _e(
        "Trust relationship required",
        "the submission server needs a configured trust with a third party (BURL)",
        "RFC 5248 §2.4",
        "configure the trust between the submission and IMAP servers",
    ),
    (7, 15): _e(
        "Priority Level is too low",
        "the MT-PRIORITY is below what the server accepts now",
        "RFC 6710 §9.2",
        "retry later or with a higher priority",
    ),
    (7, 16): _e(
        "Message is too big for the specified priority",
        "at this MT-PRIORITY only smaller messages are accepted",
        "RFC 6710 §9.2",
        "send a smaller message or with a higher priority",
    ),
    (7, 17): _e(
        "Mailbox owner has changed",
        "RRVS: the mailbox changed owner since the date the sender gave",
        "RFC 7293 §5",
        "the address now belongs to someone else: remove it",
    ),
    (7, 18): _e(
        "Domain owner has changed",
        "RRVS: the recipient's domain changed owner since the date the sender gave",
        "RFC 7293 §5",
        "the domain now belongs to someone else: remove the address",
    ),
    (7, 19): _e(
        "RRVS test cannot be completed",
        "RRVS: the receiver cannot tell whether the mailbox changed owner",
        "RFC 7293 §5",
        "decide whether to resend without the RRVS requirement",
    ),
    (7, 20): _e(
        "No passing DKIM signature found",
        "the receiver requires a valid DKIM signature and found none",
        "RFC 7372 §3.1",
        "sign outgoing mail with DKIM and publish the key in DNS",
    ),
    (7, 21): _e(
        "No acceptable DKIM signature found",
        "DKIM signatures passed but none met the receiver's policy",
        "RFC 7372 §3.1",
        "sign with the From domain (aligned) and a current algorithm and key size",
    ),
    (7, 22): _e(
        "No valid author-matched DKIM signature found",
        "no passing DKIM signature was made by the From: domain",
        "RFC 7372 §3.1",
        "sign with a d= domain that matches the From: header's domain",
    ),
    (7, 23): _e(
        "SPF validation failed",
        "the sending IP is not allowed by the sender domain's SPF record",
        "RFC 7372 §3.2",
        "add the sending server's IP (or its include:) to the domain's SPF record",
    ),
    (7, 24): _e(
        "SPF validation error",
        "evaluating the sender domain's SPF record failed (permerror/temperror)",
        "RFC 7372 §3.2",
        "fix the SPF record's syntax and keep it under 10 DNS lookups",
    ),
    (7, 25): _e(
        "Reverse DNS validation failed",
        "the sending IP has no PTR record, or it does not resolve back",
        "RFC 7372 §3.3",
        "give the sending IP a PTR whose name resolves back to the same IP",
    ),
    (7, 26): _e(
        "Multiple authentication checks failed",
        "more than one authentication check failed (typically SPF and DKIM, so DMARC)",
        "RFC 7372 §3.4",
        "publish SPF and sign with DKIM, both aligned with the From: domain (DMARC)",
    ),
    (7, 27): _e(
        "Sender address has null MX",
        "the sender's domain publishes a null MX, so no bounce could be returned",
        "RFC 7505 §4.3",
        "send from a domain that accepts mail (remove the null MX or use another)",
    ),
    (7, 28): _e(
        "Mail flood detected",
        "the message looks like part of a flood of similar unwanted mail",
        "IANA registry (RFC 5248 procedure)",
        "slow down, check that the mail is wanted (complaints, list hygiene) and retry",
    ),
    (7, 29): _e(
        "ARC validation failure",
        "the message's ARC chain did not validate",
        "RFC 8617 §5.2",
        "the intermediary that added the ARC set must fix its signing",
    ),
    (7, 30): _e(
        "REQUIRETLS support required",
        "the message demands REQUIRETLS and the next hop does not offer it",
        "RFC 8689 §5",
        "send without REQUIRETLS, or to a destination that supports it",
    ),
}


def _b(title: str, meaning: str, rfc: str, fix: str) -> CodeInfo:
    return CodeInfo(title, meaning, rfc, fix)


_R5321 = "RFC 5321 §4.2.2"

# The three-digit replies.  RFC 5321 §4.2.1: the first digit says good / bad / incomplete,
# the second the kind of reply (see ``SECOND_DIGIT``); these are the ones defined.
BASIC: dict[int, CodeInfo] = {
    211: _b("System status, or system help reply", "status information", _R5321, "nothing to fix"),
    214: _b("Help message", "help text for a human (reply to HELP)", _R5321, "nothing to fix"),
    220: _b(
        "Service ready", "the greeting (or the go-ahead for STARTTLS)", _R5321, "nothing to fix"
    ),
    221: _b(
        "Service closing transmission channel",
        "the server says goodbye (QUIT)",
        _R5321,
        "nothing to fix",
    ),
    235: _b("Authentication successful", "AUTH succeeded", "RFC 4954 §6", "nothing to fix"),
    250: _b(
        "Requested mail action okay, completed",
        "the command succeeded; after the "
        "end of DATA it means the server took responsibility for the message",
        _R5321,
        "nothing to fix",
    ),
    251: _b(
        "User not local; will forward",
        "accepted; it will be forwarded elsewhere",
        _R5321,
        "nothing to fix",
    ),
    252: _b(
        "Cannot VRFY user, but will accept message and attempt delivery",
        "VRFY gives no answer, which is normal (it hides the user list)",
        _R5321,
        "nothing to fix; send the message to find out",
    ),
    253: _b(
        "OK, messages pending",
        "ETRN accepted; queued messages will be sent",
        "RFC 1985 §5",
        "nothing to fix",
    ),
    334: _b(
        "Server challenge",
        "AUTH in progress; the text is a base64 challenge",
        "RFC 4954 §4",
        "answer with the mechanism's base64 response",
    ),
    354: _b(
        "Start mail input; end with <CRLF>.<CRLF>",
        "DATA accepted: send the message",
        _R5321,
        "send the message, ending with a line holding only a dot",
    ),
    421: _b(
        "Service not available, closing transmission channel",
        "the server is closing the connection (shutdown, overload, too many "
        "connections or errors, a timeout)",
        _R5321,
        "retry later, with fewer connections at once",
    ),
    432: _b(
        "A password transition is needed",
        "log in once with PLAIN first",
        "RFC 4954 §6",
        "authenticate once with PLAIN over TLS",
    ),
    450: _b(
        "Requested mail action not taken: mailbox unavailable",
        "temporarily refused: mailbox busy, greylisting, or a temporary policy block",
        _R5321,
        "nothing for now: a real MTA retries and greylisting then lets it in",
    ),
    451: _b(
        "Requested action aborted: local error in processing",
        "the server had a temporary problem (or greylists)",
        _R5321,
        "retry later; if it lasts, the server's administrator must look at its logs",
    ),
    452: _b(
        "Requested action not taken: insufficient system storage",
        "temporarily out of storage, or too many recipients in this transaction",
        _R5321,
        "retry later; on RCPT, send the rest in another transaction",
    ),
    454: _b(
        "Temporary authentication failure",
        "AUTH (or TLS) failed for a temporary reason on the server side",
        "RFC 4954 §6",
        "retry later",
    ),
    455: _b(
        "Server unable to accommodate parameters",
        "the MAIL/RCPT parameters cannot be honoured now",
        _R5321,
        "retry later or without the parameters",
    ),
    458: _b(
        "Unable to queue messages for node",
        "ETRN could not start a queue run",
        "RFC 1985 §5",
        "retry later",
    ),
    459: _b(
        "Node not allowed",
        "ETRN refused for this node",
        "RFC 1985 §5",
        "ask the administrator to allow ETRN for the node",
    ),
    500: _b(
        "Syntax error, command unrecognized",
        "the server did not understand the command (or the line was too long; "
        "with AUTH: the exchange line was too long)",
        _R5321 + "; RFC 4954 §6",
        "check the command's spelling, and that the line is under 512 octets",
    ),
    501: _b(
        "Syntax error in parameters or arguments",
        "the command's arguments are wrong",
        _R5321,
        "fix the arguments (e.g. MAIL FROM:<a@b> with angle brackets)",
    ),
    502: _b(
        "Command not implemented",
        "the server does not implement the command",
        _R5321,
        "use only commands the server advertises in its EHLO reply",
    ),
    503: _b(
        "Bad sequence of commands",
        "a command came out of order",
        _R5321,
        "follow EHLO, (STARTTLS, AUTH,) MAIL, RCPT, DATA (RFC 5321 §4.3.2)",
    ),
    504: _b(
        "Command parameter not implemented",
        "the server does not support a parameter (or the AUTH mechanism)",
        _R5321,
        "use only the parameters and mechanisms the server advertises",
    ),
    521: _b(
        "Host does not accept mail",
        "this host never accepts mail (a null MX or a dummy server)",
        "RFC 7504 §3",
        "the domain does not take mail: use another address",
    ),
    530: _b(
        "Authentication required",
        "the server requires AUTH before this command",
        "RFC 4954 §6",
        "authenticate (usually after STARTTLS) before MAIL FROM",
    ),
    534: _b(
        "Authentication mechanism is too weak",
        "pick a stronger AUTH mechanism",
        "RFC 4954 §6",
        "use a stronger mechanism the server advertises",
    ),
    535: _b(
        "Authentication credentials invalid",
        "AUTH failed: wrong user or password",
        "RFC 4954 §6",
        "check the user name and password",
    ),
    538: _b(
        "Encryption required for requested authentication mechanism",
        "this AUTH mechanism needs TLS",
        "RFC 4954 §6",
        "send STARTTLS first, then authenticate",
    ),
    550: _b(
        "Requested action not taken: mailbox unavailable",
        "permanently refused: no such mailbox, no access, or policy",
        _R5321,
        "read the text: unknown user -> check the address; relay denied -> "
        "authenticate; policy -> fix what it names",
    ),
    551: _b(
        "User not local; please try <forward-path>",
        "the user is not here; the text may name where",
        _R5321,
        "send to the address the text gives",
    ),
    552: _b(
        "Requested mail action aborted: exceeded storage allocation",
        "too big, or over quota (also used for too many recipients)",
        _R5321,
        "send a smaller message; check the SIZE limit in the EHLO reply",
    ),
    553: _b(
        "Requested action not taken: mailbox name not allowed",
        "the address syntax is wrong or not allowed",
        _R5321,
        "fix the address (syntax, or a sender you are allowed to use)",
    ),
    554: _b(
        "Transaction failed",
        "refused, often by policy (with no SMTP service here as a greeting)",
        _R5321,
        "read the text; often a blocklist or a content filter",
    ),
    555: _b(
        "MAIL FROM/RCPT TO parameters not recognized or not implemented",
        "an ESMTP parameter is unknown to the server",
        _R5321,
        "drop the parameter, or use only extensions the EHLO reply advertises",
    ),
    556: _b(
        "Domain does not accept mail",
        "the recipient's domain does not take mail (null MX)",
        "RFC 7504 §3",
        "the domain does not take mail: use another address",
    ),
}

# RFC 5321 §4.2.1: the second digit.
SECOND_DIGIT: dict[int, str] = {
    0: "syntax",
    1: "information",
    2: "connections",
    3: "unspecified",
    4: "unspecified",
    5: "mail system",
}

# RFC 5321 §4.2.1: the first digit.
FIRST_DIGIT: dict[int, str] = {
    2: "positive completion: the command succeeded",
    3: "positive intermediate: go on with the next part (e.g. the DATA body)",
    4: "transient negative completion: not done now, retrying later may work",
    5: "permanent negative completion: not done, do not retry it unchanged",
}
