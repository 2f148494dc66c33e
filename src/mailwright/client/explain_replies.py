"""The three-digit SMTP reply codes behind ``mailwright explain`` (data only).

``BASIC`` holds every code RFC 5321 §4.2.2 lists (with the §4.2.1 theory and the §4.3.2
command-to-reply sequences in the wording), the two RFC 7504 added (521, 556), the AUTH
ones of RFC 4954 §6 (235, 334, 432, 454, 500, 530, 534, 535, 538) and ETRN's of RFC
1985 (253, 458, 459); ``FIRST_DIGIT`` and ``SECOND_DIGIT`` read any other code by its
digits, as RFC 5321 §4.2.1 tells a client to.  The enhanced status codes are
``client.explain_codes``.
"""

from __future__ import annotations

from mailwright.client.explain_codes import CodeInfo


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
