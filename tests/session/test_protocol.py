"""The line protocol of ``mailwright session``, byte for byte: typed lines -> the
octets on the wire, octets from the server -> replies and transcript lines."""

from __future__ import annotations

import base64

import pytest

from mailwright.client.interactive.protocol import (
    AuthRequest,
    Closed,
    LineProtocol,
    Mode,
    Note,
    Received,
    SaveRequest,
    StartTlsRequest,
    Write,
)
from mailwright.smtp import Auth, AuthResponse, State

GREETING = b"220 mx.test ESMTP\r\n"
EHLO_REPLY = (
    b"250-mx.test\r\n250-PIPELINING\r\n250-STARTTLS\r\n250-AUTH PLAIN LOGIN\r\n"
    b"250-SMTPUTF8\r\n250 DSN\r\n"
)


def write(proto: LineProtocol, line: str) -> bytes:
    action = proto.typed(line)
    assert isinstance(action, Write), action
    return action.data


def replies(proto: LineProtocol, data: bytes) -> list[int]:
    return [
        item.reply.code for item in proto.receive(data) if isinstance(item, Received) and item.reply
    ]


def greeted() -> LineProtocol:
    proto = LineProtocol()
    assert replies(proto, GREETING) == [220]
    return proto


def ready() -> LineProtocol:
    proto = greeted()
    assert write(proto, "EHLO client.test") == b"EHLO client.test\r\n"
    assert replies(proto, EHLO_REPLY) == [250]
    return proto


def in_data() -> LineProtocol:
    proto = ready()
    assert write(proto, "MAIL FROM:<a@b.test>") == b"MAIL FROM:<a@b.test>\r\n"
    proto.receive(b"250 2.1.0 Ok\r\n")
    assert write(proto, "RCPT TO:<c@d.test>") == b"RCPT TO:<c@d.test>\r\n"
    proto.receive(b"250 2.1.5 Ok\r\n")
    assert write(proto, "DATA") == b"DATA\r\n"
    assert proto.mode is Mode.COMMAND  # not before the 354 (RFC 5321 §4.1.1.4)
    proto.receive(b"354 go ahead\r\n")
    assert proto.mode is Mode.DATA
    return proto


def test_commands_go_out_as_the_core_writes_them() -> None:
    proto = ready()
    assert write(proto, "mail from:<a@b.test>") == b"MAIL FROM:<a@b.test>\r\n"
    assert proto.transcript.lines[-1].render() == "-> MAIL FROM:<a@b.test>"
    assert proto.waiting
    proto.receive(b"250 2.1.0 Ok\r\n")
    assert not proto.waiting
    assert proto.transcript.lines[-1].render() == "<- 250 2.1.0 Ok"


def test_ehlo_reply_gives_the_extensions_and_helo_forgets_them() -> None:
    proto = ready()
    assert set(proto.extensions) == {"PIPELINING", "STARTTLS", "AUTH", "SMTPUTF8", "DSN"}
    assert proto.extensions["AUTH"] == "PLAIN LOGIN"
    write(proto, "HELO client.test")
    proto.receive(b"250 mx.test\r\n")
    assert proto.extensions == {}


@pytest.mark.parametrize(
    "line",
    [
        "FROB x",  # no such verb
        "MAIL FROM:a@b.test",  # no angle brackets (RFC 5321 §4.1.2)
        "MAIL FROM:<a@b.test> BODY=BINARYMIME",  # not advertised
        "RCPT TO:<c@d.test> NOTIFY=BOGUS",
    ],
)
def test_a_line_the_core_cannot_read_is_not_sent(line: str) -> None:
    proto = ready()
    before = list(proto.transcript.lines)
    action = proto.typed(line)
    assert isinstance(action, Note) and action.text.startswith("not sent: ")
    assert "raw" in action.text  # says how to send it anyway
    assert proto.transcript.lines == before and not proto.waiting


def test_a_command_waits_for_the_reply_owed_to_the_last_one() -> None:
    proto = ready()
    write(proto, "NOOP")
    action = proto.typed("NOOP")
    assert isinstance(action, Note) and "still owed" in action.text


def test_parameters_of_advertised_extensions_are_sent() -> None:
    proto = ready()
    assert (
        write(proto, "MAIL FROM:<ü@b.test> SMTPUTF8 RET=HDRS")
        == "MAIL FROM:<ü@b.test> SMTPUTF8 RET=HDRS\r\n".encode()
    )


def test_data_mode_dot_stuffs_and_ends_on_a_lone_dot() -> None:
    proto = in_data()
    typed = ["Subject: dots", "", ".hidden", "..", " .", "...", "."]
    actions = [proto.typed(line) for line in typed]
    assert all(isinstance(a, Write) for a in actions)
    wire = b"".join(a.data for a in actions if isinstance(a, Write))
    assert wire == b"Subject: dots\r\n\r\n..hidden\r\n...\r\n .\r\n....\r\n.\r\n"
    assert [a.ended_data for a in actions if isinstance(a, Write)] == [False] * 6 + [True]
    # The dot is written; until its reply a typed line is a command, not body.
    assert proto.mode is Mode.COMMAND and proto.waiting
    assert replies(proto, b"250 2.0.0 Ok: queued as X\r\n") == [250]
    assert proto.conn.state is State.READY


def test_data_mode_sends_a_line_that_looks_like_a_helper_as_body() -> None:
    proto = in_data()
    assert [write(proto, w) for w in ("raw", "save x", "QUIT")] == [
        b"raw\r\n",
        b"save x\r\n",
        b"QUIT\r\n",
    ]


def test_raw_mode_sends_exactly_what_was_typed_past_the_core() -> None:
    proto = ready()
    action = proto.typed("raw")
    assert isinstance(action, Note) and proto.mode is Mode.RAW
    assert write(proto, "DATA") == b"DATA\r\n"
    assert proto.receive(b"354 go ahead\r\n") != []
    # The smuggling variant the core's writer would never produce: bare LF, dot, LF.
    assert write(proto, "body\\n.\\n") == b"body\n.\n"
    assert write(proto, "NOOP") == b"NOOP\r\n"
    assert proto.transcript.lines[-2].render() == "-> body\\n.\\n  (no line end)"
    assert not proto.waiting and proto.conn.state is State.READY  # the core saw none of it
    # Replies are shown line by line, a partial line once its LF is in.
    assert proto.receive(b"250 2.0.0 Ok: queued\r\n250 2.0") != []
    [item] = proto.receive(b".0 Ok\r\n")
    assert isinstance(item, Received) and item.reply is not None
    assert (item.reply.code, item.reply.enhanced, item.reply.text) == (250, "2.0.0", "Ok")
    [other] = proto.receive(b"hello, not a reply\n")
    assert isinstance(other, Received) and other.reply is None


def test_leaving_raw_mode_starts_a_fresh_core_after_the_greeting() -> None:
    proto = ready()
    proto.typed("raw")
    write(proto, "MAIL FROM:<a@b.test>")
    proto.receive(b"250 2.1.0 Ok\r\n")
    note = proto.typed("raw")
    assert isinstance(note, Note) and "EHLO" in note.text
    assert proto.mode is Mode.COMMAND and proto.conn.state is State.NEED_HELO
    assert proto.extensions == {}
    assert write(proto, "EHLO again.test") == b"EHLO again.test\r\n"
    assert replies(proto, b"250 mx.test\r\n") == [250]
    assert proto.conn.state is State.READY


def test_bad_escape_in_raw_mode_sends_nothing() -> None:
    proto = ready()
    proto.typed("raw")
    action = proto.typed("oops\\q")
    assert isinstance(action, Note) and action.text.startswith("not sent: unknown escape")


def test_auth_secrets_are_redacted_in_the_transcript_but_not_on_the_wire() -> None:
    proto = ready()
    secret = b"\0user\0hunter2"
    action = proto.send(Auth("PLAIN", secret))
    assert action.data == b"AUTH PLAIN " + base64.b64encode(secret) + b"\r\n"
    proto.receive(b"334 \r\n")
    again = proto.send(AuthResponse(b"hunter2"))
    assert again.data == base64.b64encode(b"hunter2") + b"\r\n"
    rendered = proto.transcript.render()
    assert "-> AUTH PLAIN <redacted>\n" in rendered and "-> <redacted>\n" in rendered
    assert base64.b64encode(secret).decode() not in rendered and "aHVudGVyMg" not in rendered


def test_starttls_discards_what_came_behind_the_220_and_marks_tls_lines() -> None:
    proto = ready()
    assert isinstance(proto.typed("starttls"), StartTlsRequest)
    from mailwright.smtp import StartTls

    assert proto.send(StartTls()).data == b"STARTTLS\r\n"
    # A reply appended in plaintext by a man in the middle (CVE-2011-0411 class).
    assert replies(proto, b"220 2.0.0 Ready\r\n250 injected\r\n") == [220]
    proto.tls_started("TLSv1.3 TLS_AES_256_GCM_SHA384")
    assert proto.extensions == {}
    assert write(proto, "EHLO client.test") == b"EHLO client.test\r\n"
    assert replies(proto, b"250 mx.test\r\n") == [250]
    rendered = proto.transcript.render().splitlines()
    assert rendered[-3:] == [
        "== TLS started: TLSv1.3 TLS_AES_256_GCM_SHA384",
        "~> EHLO client.test",
        "<~ 250 mx.test",
    ]
    assert "injected" not in proto.transcript.render()


def test_helpers_and_local_commands() -> None:
    proto = ready()
    assert proto.typed("auth plain alice") == AuthRequest("PLAIN", "alice")
    assert proto.typed("AUTH scram-sha-256 bob") == AuthRequest("SCRAM-SHA-256", "bob")
    for bad in ("auth", "auth plain", "auth gssapi alice", "AUTH PLAIN dGVzdA== extra"):
        action = proto.typed(bad)
        assert isinstance(action, Note) and action.text.startswith("usage: auth")
    assert proto.typed("save /tmp/x.txt") == SaveRequest("/tmp/x.txt")
    assert isinstance(proto.typed("save"), Note)
    help_note = proto.typed("?")
    assert isinstance(help_note, Note) and "starttls" in help_note.text
    bdat = proto.typed("BDAT 10 LAST")
    assert isinstance(bdat, Note) and "BDAT" in bdat.text and not proto.waiting
    assert proto.typed("   ") == Note("")


def test_unsolicited_421_closes_the_session() -> None:
    proto = ready()
    items = proto.receive(b"421 4.4.2 Timeout, closing connection\r\n")
    assert [type(i) for i in items] == [Received, Closed]
    assert isinstance(proto.typed("NOOP"), Note)


def test_end_of_stream_closes_the_session() -> None:
    proto = ready()
    write(proto, "NOOP")
    [closed] = proto.receive(b"")
    assert isinstance(closed, Closed) and not closed.protocol_error
    assert proto.typed("NOOP") == Note("the connection is closed")


def test_malformed_reply_is_a_protocol_error() -> None:
    proto = ready()
    write(proto, "NOOP")
    [closed] = proto.receive(b"hello there\r\n")
    assert isinstance(closed, Closed) and closed.protocol_error
    assert "malformed reply" in closed.reason


def test_quit_is_remembered_for_the_exit_status() -> None:
    proto = ready()
    assert not proto.quit_sent
    write(proto, "QUIT")
    assert proto.quit_sent
