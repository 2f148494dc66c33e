"""The server session's state machine, as data.

Rule 1 (after h11): everything that decides a state transition lives in this file;
``_server.py`` only looks the answers up.

Theory of operation.  In HTTP an event alone moves the state.  In SMTP the *reply*
decides: RCPT answered 250 moves a transaction on, RCPT answered 550 does not.  So the
server core yields one command event, pauses, and the transition happens when the
application sends its reply, looked up here by (state, event type, reply class).
Pipelined commands wait in the buffer meanwhile, so replies leave in command order
for free (RFC 2920 §3.1).

States::

    GREETING  --220-->  NEED_HELO  --EHLO/HELO 250-->  READY  --MAIL 250-->  MAIL
    MAIL  --RCPT 250-->  RCPT  --DATA 354-->  DATA  --end of data, any reply-->  READY
    RCPT  --BDAT 250 (not LAST)-->  BDAT  --BDAT LAST, any reply-->  READY
    READY --STARTTLS 220--> TLS  --tls_established()--> NEED_HELO       (RFC 3207 §4.2)
    READY --AUTH 334--> AUTH --(334)*--> AUTH --235 / 5xx--> READY       (RFC 4954)
    any   --221, 421, 521, greeting 554--> CLOSED

A command outside its states is answered 503 by the core itself; ``SEQUENCE_ERRORS``
holds the text for each case, as Postfix words them.
"""

from __future__ import annotations

from enum import Enum

from mailwright.smtp import codes
from mailwright.smtp._events import (
    Auth,
    AuthResponse,
    Bdat,
    Data,
    Ehlo,
    EndOfData,
    Helo,
    MailFrom,
    RcptTo,
    Rset,
    StartTls,
)
from mailwright.smtp._replies import Reply


class State(Enum):
    GREETING = "greeting"  # connected; the application owes the 220 greeting
    NEED_HELO = "need-helo"  # greeted, no HELO/EHLO yet (or after STARTTLS)
    READY = "ready"  # HELO/EHLO done, no transaction
    MAIL = "mail"  # MAIL accepted, no recipient yet
    RCPT = "rcpt"  # at least one recipient accepted
    DATA = "data"  # 354 sent, reading the body
    BDAT = "bdat"  # inside a BDAT transaction (a non-LAST chunk was accepted)
    TLS = "tls"  # 220 to STARTTLS sent; the transport owes the handshake
    AUTH = "auth"  # a SASL exchange is in progress (334 sent)
    CLOSED = "closed"

    # Members are singletons compared by identity, so the identity hash is correct;
    # Enum's own __hash__ is Python code, and states are hashed on every command
    # (set membership, the transition tables).
    __hash__ = object.__hash__


_AFTER_HELO = {State.READY, State.MAIL, State.RCPT, State.BDAT}
_ANY_COMMAND_STATE = {State.NEED_HELO, *_AFTER_HELO}

# In which states a command may be given at all.  Commands missing from this table
# (RSET, NOOP, HELP, VRFY, EXPN, QUIT) are valid in every command state.
ALLOWED: dict[type, set[State]] = {
    Helo: _ANY_COMMAND_STATE,
    Ehlo: _ANY_COMMAND_STATE,
    MailFrom: {State.READY},
    RcptTo: {State.MAIL, State.RCPT},
    Data: {State.RCPT},
    Bdat: {State.RCPT, State.BDAT},
    StartTls: {State.READY},
    Auth: {State.READY},
}


def sequence_error(event_type: type, state: State) -> Reply:
    """The 503 (or 554) for a command given in the wrong state."""
    if state is State.NEED_HELO:
        return codes.R503_SEND_HELO_FIRST
    if event_type is MailFrom:
        return codes.R503_NESTED_MAIL
    if event_type is RcptTo:
        return codes.R503_NEED_MAIL
    if event_type is Data:
        if state is State.MAIL:
            return codes.R554_NO_VALID_RECIPIENTS  # Postfix's wording and code
        if state is State.BDAT:
            return codes.R503_DATA_AFTER_BDAT
        return codes.R503_NEED_MAIL if state is State.READY else codes.R503_BAD_SEQUENCE
    if event_type is Bdat:
        return codes.R503_NEED_RCPT if state is State.MAIL else codes.R503_NEED_MAIL
    return codes.R503_BAD_SEQUENCE


# (state, event type) -> state after a positive (2xx/3xx) reply.
ON_POSITIVE: dict[tuple[State, type], State] = {
    **{(s, Helo): State.READY for s in _ANY_COMMAND_STATE},
    **{(s, Ehlo): State.READY for s in _ANY_COMMAND_STATE},
    (State.READY, MailFrom): State.MAIL,
    (State.MAIL, RcptTo): State.RCPT,
    (State.RCPT, RcptTo): State.RCPT,
    (State.RCPT, Data): State.DATA,
    (State.DATA, EndOfData): State.READY,
    (State.READY, StartTls): State.TLS,
    (State.READY, Auth): State.READY,  # 235; a 334 goes to AUTH, see next_state
    (State.AUTH, AuthResponse): State.READY,
    **{(s, Rset): State.READY for s in _AFTER_HELO},
}

# (state, event type) -> state after a negative (4xx/5xx) reply; default: unchanged.
ON_NEGATIVE: dict[tuple[State, type], State] = {
    (State.DATA, EndOfData): State.READY,  # the transaction is over either way
    (State.RCPT, Bdat): State.READY,  # RFC 3030 §2: a failed chunk ends the transaction
    (State.BDAT, Bdat): State.READY,
    (State.AUTH, AuthResponse): State.READY,
}

# Replies after which the server closes: 221 (QUIT), 421 (RFC 5321 §3.8), 521
# (RFC 7504), and a 554 greeting (RFC 5321 §3.1).
CLOSING_CODES = frozenset({221, 421, 521})


def next_state(state: State, event: object, reply: Reply) -> State:
    """The state after ``reply`` is sent in answer to ``event`` in ``state``."""
    if reply.code in CLOSING_CODES:
        return State.CLOSED
    if state is State.GREETING:
        return State.NEED_HELO if reply.code == 220 else State.CLOSED
    event_type = type(event)
    if event_type is Bdat and state in (State.RCPT, State.BDAT):
        if reply.is_positive:
            return State.READY if event.last else State.BDAT  # type: ignore[attr-defined]
        return State.READY
    if reply.code == 334 and event_type in (Auth, AuthResponse):
        return State.AUTH
    if reply.is_positive:
        if event_type is Rset:
            return State.NEED_HELO if state is State.NEED_HELO else State.READY
        return ON_POSITIVE.get((state, event_type), state)
    return ON_NEGATIVE.get((state, event_type), state)
