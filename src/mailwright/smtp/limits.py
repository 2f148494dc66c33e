"""Every protocol limit, named, with the RFC that sets it.

The defaults here are what ``mailwright.config`` falls back to; the parsers take the
configured value, so each limit is overridable without touching code.
"""

from __future__ import annotations

# RFC 5321 §4.5.3.1.4: a command line is at most 512 octets including CRLF.
MAX_COMMAND_LINE = 512
# RFC 1869 §4.1.2 / RFC 5321 §4.5.3.1.4: each supported MAIL/RCPT extension may add up
# to 500 octets.  We advertise SIZE, BODY, SMTPUTF8, RET, ENVID (MAIL) and NOTIFY,
# ORCPT (RCPT); a flat allowance of four extensions' worth is what Postfix tolerates
# in practice (its line_length_limit is 2048).
EXTENSION_ALLOWANCE = 4 * 500
MAX_EXTENDED_COMMAND_LINE = MAX_COMMAND_LINE + EXTENSION_ALLOWANCE

# RFC 5321 §4.5.3.1.1-3.
MAX_LOCAL_PART_LENGTH = 64
MAX_DOMAIN_LENGTH = 255
MAX_PATH_LENGTH = 256

# RFC 5321 §4.5.3.1.5 / 4.5.3.1.6: a reply line and a text line are 1000 octets with
# CRLF; RFC 5322 §2.1.1 puts the message line limit at 998 octets plus CRLF.
MAX_REPLY_LINE = 512
MAX_TEXT_LINE = 998
# RFC 5321 §4.5.3.1.10 says a server must accept at least 100 recipients; Postfix's
# smtpd_recipient_limit defaults to 1000, and so do we.
DEFAULT_MAX_RECIPIENTS = 1000
# 50 MiB, Postfix's message_size_limit is 10 MB; modern providers accept 25-50 MB.
DEFAULT_MAX_MESSAGE_SIZE = 50 * 1024 * 1024

# RFC 5321 §4.5.3.2: suggested minimum timeouts.  The greeting timeout is how long a
# *client* waits (5 minutes); a server waits as long for commands (§4.5.3.2.7).
GREETING_TIMEOUT = 300.0
COMMAND_TIMEOUT = 300.0  # §4.5.3.2.7 server timeout: 5 minutes
DATA_BLOCK_TIMEOUT = 180.0  # §4.5.3.2.6: 3 minutes between data blocks
SESSION_TIMEOUT = 3600.0  # a hard cap so a slow-drip client cannot hold a slot forever
# Waiting for a command before MAIL (nothing at stake yet): shorter than §4.5.3.2.7's
# 5 minutes, so idle connections do not hold slots; never longer than COMMAND_TIMEOUT.
IDLE_TIMEOUT = 60.0
# Postfix smtpd_min_data_rate: a DATA/BDAT body earns one second of its deadline per 500
# octets received, never more than DATA_BLOCK_TIMEOUT ahead (a drip cannot keep it open).
MIN_DATA_RATE = 500.0
# Postfix stress mode (${stress?{10}:{300}} for smtpd_timeout): every wait for input
# when the connection count nears its cap.
STRESS_TIMEOUT = 10.0

# Errors tolerated per session before 421 and close (Postfix smtpd_hard_error_limit
# is 20; chasquid closes after 3 errors of a kind).
DEFAULT_MAX_ERRORS = 20
# Connection caps (Postfix default_process_limit 100; per-client 50).
DEFAULT_MAX_CONNECTIONS = 1000
DEFAULT_MAX_CONNECTIONS_PER_IP = 50

# BDAT chunk sizes are announced by the client; anything above this is refused before
# we read it (RFC 3030 §2 allows any size, the message size limit applies anyway).
MAX_BDAT_CHUNK = 2**31 - 1

# How much unprocessed input we hold while a reply is owed (PIPELINING, RFC 2920 §3.1
# lets the client send a whole transaction).  Beyond this we stop reading the socket,
# which pushes back through TCP flow control rather than buffering without bound.
MAX_PIPELINE_BUFFER = 64 * 1024

# ENVID and ORCPT are xtext of at most 100 and 500 octets (RFC 3461 §4.4, §4.2).
MAX_ENVID_LENGTH = 100
MAX_ORCPT_LENGTH = 500

# RFC 4954 §4: AUTH command and SASL response lines may be up to 12288 octets.
MAX_AUTH_LINE = 12288
