"""STARTTLS (RFC 3207) and AUTH (RFC 4954) state, and the state table itself."""

from __future__ import annotations

import base64

import pytest

from mailwright.smtp import (
    DEFAULT_EXTENSIONS,
    PAUSED,
    Address,
    Auth,
    AuthResponse,
    CommandError,
    Ehlo,
    LocalProtocolError,
    MailFrom,
    Noop,
    RcptTo,
    Reply,
    Rset,
    ServerConnection,
    StartTls,
    State,
    codes,
)
from mailwright.smtp._state import next_state
from mailwright.smtp.limits import MAX_AUTH_LINE

from .helpers import (
    AUTH_CANCELLED,
    AUTH_CONTINUE,
    AUTH_FAILED,
    EHLO,
    GREETING,
    STARTTLS_READY,
    Driver,
    lines,
    reject,
)

TLS_EXTENSIONS = DEFAULT_EXTENSIONS | {"STARTTLS"}
AUTH_EXTENSIONS = DEFAULT_EXTENSIONS | {"AUTH"}
PLAIN = base64.b64encode(b"\x00alice\x00secret").decode()


# -- STARTTLS -------------------------------------------------------------------------


def test_starttls_then_handshake(mode: str) -> None:
    d = Driver(mode, extensions=TLS_EXTENSIONS, auto_tls=False)
    d.feed(EHLO + lines("STARTTLS"))
    assert d.replies[-1] == STARTTLS_READY
    assert d.last_output.endswith(b"220 2.0.0 Ready to start TLS\r\n")
    assert d.state is State.TLS
    assert d.conn.next_event() is PAUSED
    d.feed(b"\x16\x03\x01 this would be a ClientHello, not for the SMTP core")
    assert d.conn.buffered == 0
    assert d.conn.next_event() is PAUSED
    d.conn.tls_established()
    assert d.state is State.NEED_HELO
    assert d.conn.tls_active is True
    assert d.conn.helo is None and d.conn.esmtp is False


def test_client_must_ehlo_again_after_tls(mode: str) -> None:
    d = Driver(mode, extensions=TLS_EXTENSIONS)
    d.feed(EHLO + lines("STARTTLS"))
    assert d.tls_handshakes == 1
    d.feed(lines("MAIL FROM:<a@a.example>", "EHLO client.example", "MAIL FROM:<a@a.example>"))
    assert d.command_errors == [codes.R503_SEND_HELO_FIRST]
    assert d.state is State.MAIL


@pytest.mark.parametrize(
    "injected",
    [
        b"MAIL FROM:<evil@x.example>\r\n",
        b"RSET\r\nMAIL FROM:<evil@x.example>\r\nRCPT TO:<victim@b.example>\r\n",
        b"EHLO evil.example\r\nMAIL FROM:<evil@x.example>\r\n",
    ],
    ids=["mail", "rset-mail-rcpt", "ehlo-mail"],
)
def test_plaintext_after_starttls_is_discarded_cve_2011_0411(mode: str, injected: bytes) -> None:
    """CVE-2011-0411: commands pipelined behind STARTTLS in one packet must be dropped,
    or a man in the middle can inject them into the encrypted session."""
    d = Driver(mode, extensions=TLS_EXTENSIONS, auto_tls=False)
    d.feed(EHLO + b"STARTTLS\r\n" + injected)  # one packet, before the handshake
    assert d.state is State.TLS
    d.handshake()
    assert d.conn.buffered == 0
    assert d.state is State.NEED_HELO
    assert not d.of_type(MailFrom)
    assert not d.of_type(RcptTo)
    assert d.of_type(Ehlo) == [Ehlo("client.example")]
    assert not d.of_type(Rset)
    # The session then works normally, with what comes over TLS.
    d.feed(lines("EHLO client.example", "MAIL FROM:<good@a.example>"))
    assert [str(m.address) for m in d.of_type(MailFrom)] == ["good@a.example"]


def test_plaintext_before_handshake_is_discarded_even_if_buffered() -> None:
    conn = ServerConnection()
    conn.send(GREETING)
    conn.receive_data(EHLO)
    conn.next_event()
    conn.send(codes.R250_OK)
    conn.receive_data(b"STARTTLS\r\nMAIL FROM:<evil@x.example>\r\n")
    assert conn.next_event() == StartTls()
    assert conn.buffered > 0  # the injected line sits in the buffer ...
    conn.send(STARTTLS_READY)
    conn.receive_data(b"RCPT TO:<evil@x.example>\r\n")  # ... and more arrives
    conn.tls_established()
    assert conn.buffered == 0  # ... and all of it is gone
    conn.receive_data(b"NOOP\r\n")
    assert conn.next_event() == Noop()


def test_input_after_begin_tls_is_kept_for_after_the_handshake() -> None:
    """begin_tls() marks where the transport hands the connection to TLS: plaintext
    buffered before it is discarded, bytes after it came through TLS and are the
    first command once the handshake is reported, even if they came first."""
    conn = ServerConnection()
    conn.send(GREETING)
    conn.receive_data(EHLO)
    conn.next_event()
    conn.send(codes.R250_OK)
    conn.receive_data(b"STARTTLS\r\nMAIL FROM:<evil@x.example>\r\n")
    assert conn.next_event() == StartTls()
    conn.send(STARTTLS_READY)
    conn.receive_data(b"RCPT TO:<evil@x.example>\r\n")  # plaintext, still
    conn.begin_tls()
    assert conn.buffered == 0
    conn.receive_data(b"NOOP\r\n")  # decrypted, before the handshake is reported
    assert conn.next_event() is PAUSED
    conn.tls_established()
    assert conn.next_event() == Noop()


def test_starttls_refused_keeps_the_plain_session(mode: str) -> None:
    refused = Reply.of(454, "4.7.0", "TLS not available due to temporary reason")
    d = Driver(mode, extensions=TLS_EXTENSIONS, policy=reject(StartTls, refused))
    d.feed(EHLO + lines("STARTTLS", "MAIL FROM:<a@a.example>"))
    assert d.state is State.MAIL  # no TLS happened, so the pipelined MAIL is fine
    assert d.conn.tls_active is False


def test_starttls_when_tls_is_active(mode: str) -> None:
    d = Driver(mode, extensions=TLS_EXTENSIONS)
    d.feed(EHLO + lines("STARTTLS"))
    d.feed(EHLO + lines("STARTTLS"))
    assert d.command_errors == [codes.R503_TLS_ACTIVE]
    assert d.state is State.READY
    assert d.tls_handshakes == 1


def test_starttls_on_implicit_tls(mode: str) -> None:
    d = Driver(mode, greet=False)
    d.conn.start_tls_direct()
    if d.shadow is not None:
        d.shadow.conn.start_tls_direct()
    d.greet()
    d.feed(EHLO + lines("STARTTLS"))
    assert d.command_errors == [codes.R503_TLS_ACTIVE]


@pytest.mark.parametrize(
    ("setup", "error"),
    [
        (b"", codes.R503_SEND_HELO_FIRST),
        (EHLO + lines("MAIL FROM:<a@a.example>"), codes.R503_BAD_SEQUENCE),
    ],
    ids=["before-ehlo", "in-transaction"],
)
def test_starttls_out_of_sequence(mode: str, setup: bytes, error: Reply) -> None:
    d = Driver(mode, extensions=TLS_EXTENSIONS).feed(setup + lines("STARTTLS"))
    assert d.command_errors == [error]
    assert d.tls_handshakes == 0


def test_starttls_with_argument(mode: str) -> None:
    d = Driver(mode).feed(EHLO + lines("STARTTLS now"))
    assert (d.command_errors[0].code, d.command_errors[0].enhanced) == (501, "5.5.4")


def test_tls_established_without_starttls_is_a_local_error() -> None:
    conn = ServerConnection()
    conn.send(GREETING)
    with pytest.raises(LocalProtocolError):
        conn.tls_established()


def test_tls_forgets_the_transaction_and_authentication(mode: str) -> None:
    # RFC 3207 §4.2: discard all knowledge obtained from the client before TLS.
    d = Driver(mode, extensions=TLS_EXTENSIONS | {"AUTH"})
    d.feed(EHLO + lines(f"AUTH PLAIN {PLAIN}"))
    assert d.conn.authenticated is True
    d.feed(lines("STARTTLS"))
    assert d.conn.authenticated is False
    assert d.conn.transaction.mail is None


# -- AUTH -----------------------------------------------------------------------------


def test_auth_with_a_challenge(mode: str) -> None:
    d = Driver(mode, extensions=AUTH_EXTENSIONS).feed(EHLO + lines("AUTH PLAIN"))
    assert d.of_type(Auth) == [Auth("PLAIN", None)]
    assert d.state is State.AUTH
    assert d.last_output.endswith(b"\r\n334 \r\n")  # RFC 4954 §4: "334" SP [base64]
    d.feed(lines(PLAIN))
    assert d.of_type(AuthResponse) == [AuthResponse(b"\x00alice\x00secret")]
    assert d.replies[-1] == codes.R235_AUTH_OK
    assert d.last_output == b"235 2.7.0 Authentication successful\r\n"
    assert d.state is State.READY
    assert d.conn.authenticated is True


def test_auth_with_initial_response(mode: str) -> None:
    d = Driver(mode, extensions=AUTH_EXTENSIONS).feed(EHLO + lines(f"auth plain {PLAIN}"))
    assert d.of_type(Auth) == [Auth("PLAIN", b"\x00alice\x00secret")]
    assert d.conn.authenticated is True
    assert d.state is State.READY


def test_auth_with_empty_initial_response(mode: str) -> None:
    d = Driver(mode).feed(EHLO + lines("AUTH EXTERNAL ="))
    assert d.of_type(Auth) == [Auth("EXTERNAL", b"")]


def _login_policy(conn: ServerConnection, event: object) -> Reply | None:
    # AUTH LOGIN: username and password challenges, decided by what was received.
    if isinstance(event, Auth):
        return Reply.of(334, "", "VXNlcm5hbWU6")
    if isinstance(event, AuthResponse) and event.data == b"alice":
        return Reply.of(334, "", "UGFzc3dvcmQ6")
    return None


def test_auth_login_two_challenges(mode: str) -> None:
    d = Driver(mode, policy=_login_policy)
    d.feed(EHLO + lines("AUTH LOGIN", "YWxpY2U=", "c2VjcmV0", "MAIL FROM:<a@a.example>"))
    assert d.of_type(AuthResponse) == [AuthResponse(b"alice"), AuthResponse(b"secret")]
    assert [a.state_after for a in d.answers[1:4]] == [State.AUTH, State.AUTH, State.READY]
    assert d.conn.authenticated is True
    assert d.state is State.MAIL


def test_auth_cancelled(mode: str) -> None:
    d = Driver(mode).feed(EHLO + lines("AUTH PLAIN", "*", "MAIL FROM:<a@a.example>"))
    assert d.of_type(AuthResponse) == [AuthResponse(None)]
    assert d.replies[2] == AUTH_CANCELLED
    assert d.conn.authenticated is False
    assert d.state is State.MAIL


def test_auth_failed(mode: str) -> None:
    d = Driver(mode, policy=reject(AuthResponse, AUTH_FAILED))
    d.feed(EHLO + lines("AUTH PLAIN", PLAIN, "NOOP"))
    assert d.replies[2:] == [AUTH_FAILED, codes.R250_OK]
    assert d.conn.authenticated is False
    assert d.state is State.READY


def test_bad_base64_response_ends_the_exchange(mode: str) -> None:
    d = Driver(mode).feed(EHLO + lines("AUTH PLAIN", "not base64!", "MAIL FROM:<a@a.example>"))
    (error,) = d.of_type(CommandError)
    assert (error.reply.code, error.reply.enhanced) == (501, "5.5.2")
    assert d.conn.authenticated is False
    # RFC 4954 §4: the exchange is over; the next line is a command again.
    assert [str(m.address) for m in d.of_type(MailFrom)] == ["a@a.example"]
    assert d.state is State.MAIL


def test_bad_base64_initial_response(mode: str) -> None:
    d = Driver(mode).feed(EHLO + lines("AUTH PLAIN %%%", "NOOP"))
    (error,) = d.command_errors
    assert (error.code, error.enhanced) == (501, "5.5.2")
    assert d.state is State.READY
    assert d.conn.authenticated is False


def test_reauth_is_503(mode: str) -> None:
    d = Driver(mode).feed(EHLO + lines(f"AUTH PLAIN {PLAIN}", f"AUTH PLAIN {PLAIN}"))
    assert d.command_errors == [codes.R503_ALREADY_AUTHENTICATED]
    assert len(d.of_type(Auth)) == 1


def test_auth_inside_a_transaction_is_503(mode: str) -> None:
    d = Driver(mode).feed(EHLO + lines("MAIL FROM:<a@a.example>", f"AUTH PLAIN {PLAIN}"))
    assert d.command_errors == [codes.R503_BAD_SEQUENCE]
    assert d.conn.authenticated is False
    assert d.state is State.MAIL


def test_auth_before_ehlo_is_503(mode: str) -> None:
    d = Driver(mode).feed(lines(f"AUTH PLAIN {PLAIN}"))
    assert d.command_errors == [codes.R503_SEND_HELO_FIRST]


def test_long_auth_lines_are_allowed(mode: str) -> None:
    # RFC 4954 §4: up to 12288 octets, in the AUTH command as in responses, however the
    # line arrives (a byte at a time it is well past the 2512-octet command limit).
    blob = base64.b64encode(b"k" * 6000)
    assert 2512 < len(blob) + 13 < MAX_AUTH_LINE
    d = Driver(mode).feed(EHLO + b"AUTH GSSAPI " + blob + b"\r\n")
    assert d.of_type(Auth) == [Auth("GSSAPI", b"k" * 6000)]
    d = Driver(mode, policy=lambda c, e: AUTH_CONTINUE if isinstance(e, Auth) else None)
    d.feed(EHLO + lines("AUTH GSSAPI") + blob + b"\r\n")
    assert d.of_type(AuthResponse) == [AuthResponse(b"k" * 6000)]


def test_too_long_auth_response_ends_the_exchange(mode: str) -> None:
    d = Driver(mode).feed(
        EHLO + lines("AUTH PLAIN") + b"A" * (MAX_AUTH_LINE + 10) + b"\r\n" + lines("NOOP")
    )
    assert d.command_errors == [codes.R500_LINE_TOO_LONG]
    assert d.replies[-1] == codes.R250_OK
    assert d.state is State.READY


# -- the state table --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("state", "event", "reply", "after"),
    [
        (State.READY, MailFrom(None), codes.R250_SENDER_OK, State.MAIL),
        (State.READY, MailFrom(None), codes.R451_TEMP_POLICY, State.READY),
        (State.MAIL, RcptTo(Address("a", "b")), codes.R550_NO_SUCH_USER, State.MAIL),
        (State.MAIL, RcptTo(Address("a", "b")), codes.R250_RECIPIENT_OK, State.RCPT),
        (State.READY, Rset(), codes.R250_RESET, State.READY),
        (State.NEED_HELO, Rset(), codes.R250_RESET, State.NEED_HELO),
        (State.MAIL, Rset(), codes.R421_SHUTTING_DOWN, State.CLOSED),
        (State.READY, StartTls(), STARTTLS_READY, State.TLS),
        (State.READY, Auth("PLAIN"), AUTH_CONTINUE, State.AUTH),
        (State.AUTH, AuthResponse(b"x"), AUTH_FAILED, State.READY),
        (State.READY, Ehlo("x"), codes.R521_BARE_LINE_ENDING, State.CLOSED),
    ],
)
def test_next_state(state: State, event: object, reply: Reply, after: State) -> None:
    assert next_state(state, event, reply) is after
