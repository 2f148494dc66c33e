"""The session's state machine, as data, for both roles.

Rule 1 (after h11): everything that decides a state transition lives in this file;
``_server.py`` and ``_client.py`` only look the answers up.

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

Roles (after h11's role-aware tables).  The *session* state is one: the server moves
it when it sends a reply, the client when it receives one, both through
``next_state``, so the two ends of a connection agree on it after every reply
(``tests/smtp/test_client_pair.py`` checks that over every dialog fixture).  What
differs by role is what each side may produce: the server answers a command outside
its states (``ALLOWED``); the client may only *write* what ``CLIENT_WRITES`` allows in
the state its received replies put it in, and nothing after a command that ends a
pipelined group until that command's reply is in (``CLIENT_GROUP_ENDERS``).  Either
core that meets a protocol error is poisoned: ``State.ERROR``, and every later call
raises (h11's ERROR state).
"""

from __future__ import annotations

from enum import Enum

from mailwright.smtp import codes
from mailwright.smtp._events import (
    Auth,
    AuthResponse,
    Bdat,
    Data,
    DataChunk,
    Ehlo,
    EndOfData,
    Helo,
    MailFrom,
    Quit,
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
    ERROR = "error"  # client role: a protocol error poisoned the connection

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


# -- the client role ----------------------------------------------------------------
#
# The client judges only what it *writes*.  Whether a command fits the session (RCPT
# before MAIL, ...) is the server's to answer with its 503, and a testing client
# (`mailwright send`) must be able to provoke that answer; what the client refuses is
# whatever would put the two ends out of step: octets the server would read in
# another mode than the client meant them (body as commands, commands as body,
# plaintext as TLS, a command as a SASL response).

# What the client may write in each session state.  ``COMMAND`` stands for every
# command but the SASL response; ``DataChunk`` is also allowed, whatever the state,
# for the octets a BDAT command announced (RFC 3030 §2: counted, never framed).
COMMAND = object()
_CLIENT_COMMAND_STATES = (
    # Before the greeting too: talking early is a policy matter (Postfix's pregreet
    # test judges it), the octets stay in step.
    State.GREETING,
    State.NEED_HELO,
    State.READY,
    State.MAIL,
    State.RCPT,
    State.BDAT,
)
CLIENT_WRITES: dict[State, frozenset[object]] = {
    **{s: frozenset({COMMAND}) for s in _CLIENT_COMMAND_STATES},
    # RFC 5321 §4.1.1.4: "message data MUST NOT be sent unless a 354 reply is received";
    # from the 354 until the client writes EndOfData (then it writes as in READY: any
    # reply to the end of data ends the transaction).
    State.DATA: frozenset({DataChunk, EndOfData}),
    # RFC 4954 §4: after a 334 the next line is the SASL response, nothing else.
    State.AUTH: frozenset({AuthResponse}),
    # RFC 3207 §4: after the 220 the client starts TLS before any other command.
    State.TLS: frozenset(),
    State.CLOSED: frozenset(),
    State.ERROR: frozenset(),
}

# Commands whose reply decides how the next octets are read, so the client writes
# nothing after one until that reply is in: DATA and QUIT (RFC 2920 §3.1: "can only
# appear as the last command in a group"), STARTTLS (RFC 3207 §4: what follows the
# 220 is TLS), AUTH and its responses (RFC 4954 §4: a 334 makes the next line a SASL
# response).  RFC 2920 puts EHLO, VRFY, EXPN and NOOP in the list too, but the reply
# to those changes nothing about framing; the client leaves that choice to its user.
CLIENT_GROUP_ENDERS: frozenset[type] = frozenset({Data, Quit, StartTls, Auth, AuthResponse})


def client_next_state(state: State, event: object, reply: Reply) -> State:
    """The client's state after receiving ``reply`` to ``event`` sent in ``state``.

    ``next_state``, plus two replies that decide whatever the client made of the
    envelope: a 354 to DATA opens the body (RFC 5321 §4.1.1.4) and a 220 to STARTTLS
    starts TLS (RFC 3207 §4).  The server core only sends those in RCPT / READY
    (``ALLOWED``), where ``next_state`` agrees; a client that thought otherwise (it
    pipelined DATA behind a RCPT the server refused) must follow the server anyway,
    or the two ends fall out of step."""
    event_type = type(event)
    if event_type is Data and reply.code == 354:
        return State.DATA
    if event_type is StartTls and reply.code == 220:
        return State.TLS
    return next_state(state, event, reply)


def client_may_write(state: State, event_type: type) -> bool:
    """Whether the client may write an event of ``event_type`` in session ``state``
    (BDAT chunk octets and a pending group ender are the caller's to check)."""
    allowed = CLIENT_WRITES[state]
    if event_type in (DataChunk, EndOfData, AuthResponse):
        return event_type in allowed
    return COMMAND in allowed
