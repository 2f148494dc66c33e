"""Named replies (aiosmtpd's statuscodes idea): tests and handlers use these, not strings.

Enhanced status codes per RFC 3463 and the IANA registry (RFC 5248).
"""

from __future__ import annotations

from mailwright.smtp._replies import Reply

R = Reply.of

# 2xx
R220_STARTTLS_READY = R(220, "2.0.0", "Ready to start TLS")
R221_BYE = R(221, "2.0.0", "Bye")
R235_AUTH_OK = R(235, "2.7.0", "Authentication successful")
R250_OK = R(250, "2.0.0", "Ok")
R250_SENDER_OK = R(250, "2.1.0", "Ok")
R250_RECIPIENT_OK = R(250, "2.1.5", "Ok")
R250_RESET = R(250, "2.0.0", "Ok")
R252_CANNOT_VRFY = R(252, "2.5.0", "Cannot VRFY user, but will accept message and attempt delivery")
# 3xx: RFC 2034 §3 - no enhanced code on 354.
R354_START_DATA = R(354, "", "End data with <CR><LF>.<CR><LF>")

# 4xx
R421_SHUTTING_DOWN = R(421, "4.3.2", "Server shutting down, try again later")
R421_TOO_MANY_ERRORS = R(421, "4.7.0", "Too many errors, closing connection")
R421_TOO_MANY_CONNECTIONS = R(421, "4.7.0", "Too many connections, try again later")
R421_TOO_MANY_FROM_ADDRESS = R(421, "4.7.0", "Too many connections from your address")
R421_TIMEOUT = R(421, "4.4.2", "Timeout, closing connection")
R421_NO_SESSION_PROCESS = R(421, "4.3.2", "Service not available, try again later")
# RFC 5321 §3.8: a server closing a session it cannot continue says 421 (stress mode
# closes an idle session to make room for a new client).
R421_MAKING_ROOM = R(421, "4.7.0", "Server busy, closing idle connection")
R421_LOCAL_ERROR = R(421, "4.3.0", "Local error, closing connection")
R451_LOCAL_ERROR = R(451, "4.3.0", "Failed to queue message, try again later")
R451_TEMP_POLICY = R(451, "4.3.0", "Temporary policy failure, try again later")
# RFC 5321 §4.5.3.1.10: a client that meets the recipient limit is to send the rest in
# another transaction; smtplib and most MTAs do exactly that.  So this is no error to
# count or tarpit: counting it turned a 1,030-recipient sendmail() into 421 after two
# minutes of tarpit, losing the 1,000 accepted too.  (Postfix likewise counts only
# beyond smtpd_recipient_overshoot_limit.)  An endless stream of them costs no more
# than NOOPs and is bounded by the session's time limit.
R452_TOO_MANY_RECIPIENTS = R(452, "4.5.3", "Too many recipients", counts_as_error=False)
# RFC 5321 §4.2.2, RFC 3463 X.3.1 "mail system full" (Postfix queue_minfree).  Our disk,
# not the client's mistake: not counted, not tarpitted.
R452_INSUFFICIENT_STORAGE = R(452, "4.3.1", "Insufficient system storage", counts_as_error=False)
R454_AUTH_BANNED = R(454, "4.7.0", "Too many authentication failures, try again later")
R454_AUTH_TEMPORARY = R(454, "4.7.0", "Temporary authentication failure")

# 5xx
R500_UNRECOGNIZED = R(500, "5.5.1", "Command unrecognized")
R500_LINE_TOO_LONG = R(500, "5.5.2", "Line too long")
R500_BAD_ENCODING = R(500, "5.5.2", "Invalid characters in command (bare CR or invalid UTF-8)")
R501_AUTH_CANCELLED = R(501, "5.7.0", "Authentication cancelled")
R501_AUTH_MALFORMED = R(501, "5.5.2", "Malformed authentication response")
R501_MAIL_SYNTAX = R(501, "5.5.4", "Syntax: MAIL FROM:<address>")
R501_RCPT_SYNTAX = R(501, "5.5.4", "Syntax: RCPT TO:<address>")
R501_BDAT_SYNTAX = R(501, "5.5.4", "Syntax: BDAT chunk-size [LAST]")
R501_AUTH_SYNTAX = R(501, "5.5.4", "Syntax: AUTH mechanism [initial-response]")
R501_BAD_INITIAL_RESPONSE = R(501, "5.5.2", "Invalid base64 in initial response")
R501_BAD_AUTH_RESPONSE = R(501, "5.5.2", "Invalid base64 in AUTH response")
R501_VRFY_SYNTAX = R(501, "5.5.4", "Syntax: VRFY address")
R501_EXPN_SYNTAX = R(501, "5.5.4", "Syntax: EXPN mailing-list")
R502_STARTTLS_UNAVAILABLE = R(502, "5.5.1", "STARTTLS not available")
R502_EXPN_DISABLED = R(502, "5.5.1", "EXPN not available")
R502_VRFY_DISABLED = R(502, "5.5.1", "VRFY not available")
R503_BAD_SEQUENCE = R(503, "5.5.1", "Bad sequence of commands")
R503_SEND_HELO_FIRST = R(503, "5.5.1", "Error: send HELO/EHLO first")
R503_NESTED_MAIL = R(503, "5.5.1", "Error: nested MAIL command")
R503_NEED_MAIL = R(503, "5.5.1", "Error: need MAIL command")
R503_NEED_RCPT = R(503, "5.5.1", "Error: need RCPT command")
R503_ALREADY_AUTHENTICATED = R(503, "5.5.1", "Error: already authenticated")
R503_TLS_ACTIVE = R(503, "5.5.1", "Error: TLS already active")
R503_BINARYMIME_NEEDS_BDAT = R(503, "5.5.1", "Error: BODY=BINARYMIME requires BDAT")
R503_DATA_AFTER_BDAT = R(503, "5.5.1", "Error: DATA not allowed after BDAT")
R503_AUTH_NOT_ENABLED = R(503, "5.5.1", "Error: authentication not enabled")
R504_UNKNOWN_MECHANISM = R(504, "5.5.4", "Unrecognized authentication mechanism")
R521_BARE_LINE_ENDING = R(
    521, "5.5.2", "Error: bare CR or LF in message data (see RFC 5321 section 2.3.8)"
)
R530_AUTH_REQUIRED = R(530, "5.7.0", "Authentication required")
R534_AUTH_TOO_WEAK = R(534, "5.7.9", "Authentication mechanism is too weak for this user")
R535_BAD_CREDENTIALS = R(535, "5.7.8", "Authentication credentials invalid")
R538_ENCRYPTION_REQUIRED = R(
    538, "5.7.11", "Encryption required for requested authentication mechanism"
)
R550_NO_SUCH_USER = R(550, "5.1.1", "Recipient address rejected: user unknown")
R550_NO_SUCH_LIST = R(550, "5.1.1", "No such list or address")
R550_RELAY_DENIED = R(550, "5.7.1", "Relay access denied")
R552_TOO_BIG = R(552, "5.3.4", "Message size exceeds fixed maximum message size")
R552_BDAT_TOO_LARGE = R(552, "5.3.4", "BDAT chunk too large")
R553_UTF8_NOT_ALLOWED = R(553, "5.6.7", "Non-ASCII address requires SMTPUTF8")
R553_SENDER_NOT_OWNED = R(553, "5.7.1", "Sender address rejected: not owned by user")
R553_FROM_NOT_OWNED = R(553, "5.7.1", "From: header address not owned by user")
R554_EARLY_TALKER = R(554, "5.5.1", "Error: protocol violation: data sent before greeting")
R554_NO_VALID_RECIPIENTS = R(554, "5.5.1", "Error: no valid recipients")
# RFC 3463 X.6.0 "other or undefined media error": the content cannot travel as text.
R554_NUL_IN_DATA = R(554, "5.6.0", "Error: NUL octet in message data (allowed only in BINARYMIME)")

# Delivery results (queue runner and delivery agents): they reach the mail log and
# DSNs (RFC 3464 Diagnostic-Code), never the inbound SMTP wire.
R250_DELIVERED = R(250, "2.0.0", "Delivered to maildir")
R451_AGENT_ERROR = R(451, "4.3.0", "Delivery agent error, will retry")
R451_DELIVERY_FAILED = R(451, "4.3.0", "Local delivery failed, will retry")
R451_AGENT_FAILED = R(451, "4.3.0", "Temporary delivery failure, will retry")
R451_NO_RESULT = R(451, "4.3.0", "Delivery agent gave no result, will retry")
R451_BODY_UNREADABLE = R(451, "4.3.0", "Queued message unreadable, will retry")
R452_MAILBOX_FULL = R(452, "4.2.2", "Mailbox full, will retry")
R452_SYSTEM_FULL = R(452, "4.3.1", "Mail system full, will retry")
R550_UNKNOWN_MAILBOX = R(550, "5.1.1", "No such user here")
R550_NOT_LOCAL = R(550, "5.1.2", "Domain is not handled by local delivery")

# Outbound client results (net.outbound): what the sending side records for a
# recipient when the next hop gave no reply of its own to record.  Temporary ones say
# "will retry" (RFC 5321 §4.5.4.1: the sender retries); the reason in words (the
# peer, the exception) travels beside the reply, in the attempt history.
R451_NO_ANSWER = R(451, "4.4.1", "No answer from host, will retry")  # RFC 3463 X.4.1
R451_CONNECTION_LOST = R(451, "4.4.2", "Connection lost during the transaction, will retry")
R451_PEER_TIMEOUT = R(451, "4.4.2", "Timed out waiting for the next hop, will retry")
R451_PEER_PROTOCOL_ERROR = R(451, "4.5.0", "Protocol error from the next hop, will retry")
# Postfix's wording and codes: X.7.4 "security features not supported", X.7.5
# "cryptographic failure" (RFC 3463 §3.8).  Deferred, not bounced: the host may be
# fixed, and the next MX may do better.
R451_TLS_NOT_OFFERED = R(451, "4.7.4", "TLS is required, but was not offered by host")
R451_TLS_FAILED = R(451, "4.7.5", "TLS negotiation or certificate check failed")
R451_AUTH_UNAVAILABLE = R(
    451, "4.7.0", "Authentication is required, but no usable mechanism was offered by host"
)
# A transaction the client itself stopped early (``mailwright send --quit-after``):
# the recipients left without a reply of their own were never offered the message.
R451_STOPPED_BY_CLIENT = R(451, "4.3.0", "Transaction stopped by the client, message not sent")
# A queued envelope address the client cannot write (RFC 3463 X.1.7, X.1.3).
R553_BAD_SENDER_SYNTAX = R(553, "5.1.7", "Bad sender address syntax")
R553_BAD_RECIPIENT_SYNTAX = R(553, "5.1.3", "Bad recipient address syntax")
# RFC 1870 §6.1: a message larger than the server's declared SIZE is not sent; the
# condition is permanent (RFC 3463 X.3.4 "message too big for system").
R552_TOO_BIG_FOR_PEER = R(552, "5.3.4", "Message size exceeds the next hop's fixed maximum")
# RFC 6531 §3.2 / §3.5: an internationalised envelope or header section must not be
# sent to a server without SMTPUTF8; X.6.7 as RFC 6531 §3.5 names it, Postfix's text.
R553_SMTPUTF8_REQUIRED = R(553, "5.6.7", "SMTPUTF8 is required, but was not offered by host")
# RFC 6152 §3: an 8-bit message for a server without 8BITMIME is converted to 7-bit
# MIME or fails permanently; X.6.3 "conversion required but not supported".
R554_CONVERSION_IMPOSSIBLE = R(
    554, "5.6.3", "8-bit message cannot be converted to 7-bit MIME for a host without 8BITMIME"
)
# Relay results (delivery.relay): routing and MX outcomes.  RFC 3463 X.4.x are
# network and routing statuses; the detail (which name, which host) goes in the
# private reason, the text stays fixed.
R451_DNS_TEMPORARY = R(451, "4.4.3", "Temporary DNS failure looking up the destination, will retry")
R451_NO_MX_ADDRESS = R(451, "4.4.4", "No address for the domain's mail servers, will retry")
R451_SESSION_LIMIT = R(451, "4.4.2", "Mail servers for the domain failed, will retry")
# RFC 8461 §5.1: no MX host matches the domain's enforced MTA-STS policy: temporary
# until a fresh policy is fetched.  X.7.5 "cryptographic failure" as Postfix's
# MTA-STS helpers report it.
R451_MTA_STS_NO_MX = R(
    451, "4.7.5", "No MX host allowed by the domain's MTA-STS policy, will retry"
)
# RFC 7672 §2.2: a failed TLSA lookup after an authenticated MX answer makes the MX
# host unusable; with none usable the mail is deferred.  X.7.5 as Postfix's "TLSA
# lookup error for host:port".
R451_DANE_TLSA_LOOKUP = R(
    451, "4.7.5", "TLSA lookup for the domain's mail servers failed, will retry"
)
R550_DOMAIN_NOT_FOUND = R(550, "5.1.2", "Recipient domain not found")
R550_BAD_DOMAIN = R(550, "5.1.2", "Recipient domain name is not valid")
R550_NO_ADDRESS = R(550, "5.4.4", "Recipient domain has no mail server address")
# RFC 7505 §4.1: the reply a null MX domain's mail gets, code and text as written there.
R556_NULL_MX = R(556, "5.1.10", "Recipient address has null MX")
# RFC 3463 X.4.6 "routing loop detected" (Postfix: "mail for ... loops back to myself").
R554_MAIL_LOOP = R(554, "5.4.6", "Mail for the domain loops back to myself")
