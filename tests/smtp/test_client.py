"""The client role: writing commands and data, reading replies, and round trips through
the server core (they share one grammar module, so they must agree byte for byte)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mailwright.smtp import (
    DEFAULT_EXTENSIONS,
    NEED_DATA,
    Address,
    Auth,
    AuthResponse,
    Bdat,
    ClientConnection,
    ConnectionClosed,
    Data,
    DataChunk,
    Ehlo,
    EndOfData,
    Event,
    Expn,
    Helo,
    Help,
    LocalProtocolError,
    MailFrom,
    MailParams,
    Noop,
    Quit,
    RcptParams,
    RcptTo,
    RemoteProtocolError,
    Reply,
    Rset,
    StartTls,
    State,
    Vrfy,
    codes,
    ehlo_reply,
    has_bare_line_ending,
    normalize_line_endings,
    parse_command,
    parse_ehlo,
    write_command,
)
from mailwright.smtp._buffer import ReceiveBuffer
from mailwright.smtp._client import read_reply
from mailwright.smtp._commands import ParseContext, parse_auth_response

from .helpers import QUEUED, ConnectionPair

EXTENSIONS = DEFAULT_EXTENSIONS | {"AUTH"}
ALICE = Address("alice", "a.example")
BOB = Address("bob", "b.example")

COMMANDS: list[Event] = [
    Helo("client.example"),
    Ehlo("client.example"),
    Ehlo("[192.0.2.1]"),
    MailFrom(None),
    MailFrom(ALICE),
    MailFrom(Address('"a b"', "a.example")),
    MailFrom(Address("alice", "[IPv6:2001:db8::1]")),
    MailFrom(Address("jösé", "bücher.example"), MailParams(smtputf8=True)),
    MailFrom(
        ALICE,
        MailParams(size=100, body="8BITMIME", ret="HDRS", envid="id+1=x é", auth="alice@a.example"),
    ),
    MailFrom(None, MailParams(size=0, body="BINARYMIME", ret="FULL", auth="<>")),
    RcptTo(BOB),
    RcptTo(Address("postmaster", "")),
    RcptTo(BOB, RcptParams(notify=("NEVER",))),
    RcptTo(BOB, RcptParams(notify=("SUCCESS", "DELAY"), orcpt="rfc822;bob+x@b.example")),
    Data(),
    Bdat(10),
    Bdat(0, last=True),
    Rset(),
    Noop(),
    Noop("ping"),
    Quit(),
    Vrfy("bob"),
    Expn("staff"),
    Help(),
    Help("MAIL"),
    StartTls(),
    Auth("PLAIN"),
    Auth("PLAIN", b"\x00alice\x00secret"),
    Auth("EXTERNAL", b""),
]


@pytest.mark.parametrize("event", COMMANDS, ids=repr)
def test_command_round_trip(event: Event) -> None:
    data = write_command(event)
    assert data.endswith(b"\r\n")
    assert b"\r" not in data[:-2] and b"\n" not in data[:-2]
    assert parse_command(data[:-2], ParseContext(EXTENSIONS)) == event
    assert ClientConnection().send(event) == data


@pytest.mark.parametrize(
    "event", [AuthResponse(b"secret"), AuthResponse(b""), AuthResponse(None)], ids=repr
)
def test_auth_response_round_trip(event: AuthResponse) -> None:
    assert parse_auth_response(write_command(event)[:-2]) == event


@pytest.mark.parametrize(
    ("event", "wire"),
    [
        (MailFrom(None), b"MAIL FROM:<>\r\n"),
        (
            MailFrom(ALICE, MailParams(size=5, body="8BITMIME")),
            b"MAIL FROM:<alice@a.example> SIZE=5 BODY=8BITMIME\r\n",
        ),
        (
            RcptTo(BOB, RcptParams(notify=("SUCCESS", "FAILURE"), orcpt="rfc822;b+c@x")),
            b"RCPT TO:<bob@b.example> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;b+2Bc@x\r\n",
        ),
        (Bdat(3, last=True), b"BDAT 3 LAST\r\n"),
        (Auth("PLAIN", b""), b"AUTH PLAIN =\r\n"),
        (AuthResponse(None), b"*\r\n"),
        (Noop(), b"NOOP\r\n"),
    ],
)
def test_command_wire_bytes(event: Event, wire: bytes) -> None:
    assert write_command(event) == wire


def test_writer_refuses_line_breaks_and_non_commands() -> None:
    with pytest.raises(ValueError):
        write_command(Noop("x\r\nRCPT TO:<evil@x.example>"))
    with pytest.raises(TypeError):
        write_command(DataChunk(b"x"))


def test_end_of_data_outside_data_is_a_local_error() -> None:
    with pytest.raises(LocalProtocolError):
        ClientConnection().send(EndOfData(0))


local_parts = st.text(alphabet="abcXYZ019.-_+=", min_size=1, max_size=10).filter(
    lambda s: not s.startswith(".") and not s.endswith(".") and ".." not in s
)
domains = st.sampled_from(["a.example", "b.example", "[192.0.2.1]"])
addresses = st.builds(Address, local_parts, domains)
xtext_values = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=30
)
mail_params = st.builds(
    MailParams,
    size=st.none() | st.integers(0, 10**12),
    body=st.none() | st.sampled_from(["7BIT", "8BITMIME", "BINARYMIME"]),
    smtputf8=st.booleans(),
    ret=st.none() | st.sampled_from(["FULL", "HDRS"]),
    envid=st.none() | xtext_values,
    auth=st.none() | xtext_values,
)
rcpt_params = st.builds(
    RcptParams,
    notify=st.sampled_from(
        [(), ("NEVER",), ("SUCCESS",), ("FAILURE", "DELAY"), ("DELAY", "SUCCESS", "FAILURE")]
    ),
    orcpt=st.none() | xtext_values.map(lambda v: "rfc822;" + v),
)


@settings(max_examples=150, deadline=None)
@given(st.one_of(st.none(), addresses), mail_params)
def test_mail_round_trip_property(address: Address | None, params: MailParams) -> None:
    event = MailFrom(address, params)
    assert parse_command(write_command(event)[:-2], ParseContext(EXTENSIONS)) == event


@settings(max_examples=150, deadline=None)
@given(addresses, rcpt_params)
def test_rcpt_round_trip_property(address: Address, params: RcptParams) -> None:
    event = RcptTo(address, params)
    assert parse_command(write_command(event)[:-2], ParseContext(EXTENSIONS)) == event


# -- data -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "normal"),
    [
        (b"", b""),
        (b"a\r\nb", b"a\r\nb"),
        (b"a\nb\n", b"a\r\nb\r\n"),
        (b"a\rb\r", b"a\r\nb\r\n"),
        (b"a\r\r\nb", b"a\r\n\r\nb"),
        (b"a\n\rb", b"a\r\n\r\nb"),
    ],
)
def test_normalize_line_endings(data: bytes, normal: bytes) -> None:
    assert normalize_line_endings(data) == normal
    assert not has_bare_line_ending(normalize_line_endings(data))


def expected_content(message: bytes) -> bytes:
    """What the server must receive for ``message``: LF/CR -> CRLF, ends with CRLF."""
    normal = normalize_line_endings(message)
    if normal and not normal.endswith(b"\r\n"):
        normal += b"\r\n"
    return normal


def transfer(chunks: list[bytes]) -> tuple[ConnectionPair, bytes]:
    """Send ``chunks`` as one message over a ConnectionPair; return it and the data bytes."""
    pair = ConnectionPair()
    pair.send(Ehlo("c.example"))
    assert pair.send(MailFrom(ALICE), RcptTo(BOB), Data()) == [
        codes.R250_SENDER_OK,
        codes.R250_RECIPIENT_OK,
        codes.R354_START_DATA,
    ]
    start = len(pair.client_bytes)
    pair.write(*[DataChunk(c) for c in chunks])
    replies = pair.send(EndOfData(0))
    assert replies == [QUEUED]
    return pair, bytes(pair.client_bytes[start:])


def test_dot_stuffing_and_normalisation_survive_the_trip() -> None:
    message = b".starts with a dot\n..two dots\r\nbare\rcr\n.\nmid.dot\n.\r\n."
    pair, wire = transfer([message[:7], message[7:20], message[20:]])
    assert wire == (
        b"..starts with a dot\r\n...two dots\r\nbare\r\ncr\r\n..\r\nmid.dot\r\n..\r\n..\r\n.\r\n"
    )
    assert pair.server.content == expected_content(message)
    assert pair.server.of_type(EndOfData)[0].error is None


def test_cr_split_from_its_lf_across_chunks() -> None:
    pair, wire = transfer([b"a\r", b"\n.b\r", b"", b"\n", b"c\r"])
    assert wire == b"a\r\n..b\r\nc\r\n.\r\n"
    assert pair.server.content == b"a\r\n.b\r\nc\r\n"


def test_empty_message() -> None:
    pair, wire = transfer([])
    assert wire == b".\r\n"
    assert pair.server.of_type(EndOfData) == [EndOfData(0)]


# No NUL: the server refuses it outside BINARYMIME (554 5.6.0, test_smuggling.py).
message_parts = st.lists(
    st.sampled_from([b".", b"..", b"\r", b"\n", b"\r\n", b"a", b"bc", b"\r\n.\r\n", b"\xff", b" "]),
    max_size=30,
).map(b"".join)


@settings(max_examples=150, deadline=None)
@given(message_parts, st.lists(st.integers(0, 60), max_size=5))
def test_any_message_survives_the_trip(message: bytes, cuts: list[int]) -> None:
    points = sorted({min(c, len(message)) for c in cuts})
    chunks = [message[a:b] for a, b in zip([0, *points], [*points, len(message)], strict=True)]
    pair, wire = transfer(chunks)
    assert not has_bare_line_ending(wire)
    assert wire.endswith(b"\r\n.\r\n") or wire == b".\r\n"
    assert wire.count(b"\r\n.\r\n") == 1 or wire == b".\r\n"
    assert pair.server.content == expected_content(message)


def test_bdat_chunks_are_sent_verbatim() -> None:
    pair = ConnectionPair()
    # BINARYMIME: outside it the server refuses the bare LF (test_bdat.py).
    pair.send(Ehlo("c.example"), MailFrom(ALICE, MailParams(body="BINARYMIME")), RcptTo(BOB))
    payload = b".\r\nbare\nlf\r\n.\r\n"
    replies = pair.send(Bdat(len(payload), last=True), DataChunk(payload))
    assert replies == [QUEUED]
    assert pair.server.content == payload


# -- replies ----------------------------------------------------------------------------


def read_replies(data: bytes, bytewise: bool = False) -> list[Reply]:
    """The reply grammar alone (a ClientConnection would also match each reply to a
    command; test_client_bytewise.py drives that)."""
    buf = ReceiveBuffer()
    pieces = [data[i : i + 1] for i in range(len(data))] if bytewise else [data]
    out: list[Reply] = []
    for piece in pieces:
        buf.extend(piece)
        while (reply := read_reply(buf)) is not None:
            out.append(reply)
    return out


def test_multiline_ehlo_reply() -> None:
    data = (
        b"250-mx.example\r\n250-PIPELINING\r\n250-SIZE 1000\r\n"
        b"250-AUTH PLAIN LOGIN\r\n250 8BITMIME\r\n"
    )
    (reply,) = read_replies(data)
    assert reply == Reply(
        250, "", ("mx.example", "PIPELINING", "SIZE 1000", "AUTH PLAIN LOGIN", "8BITMIME")
    )
    assert parse_ehlo(reply) == {
        "PIPELINING": "",
        "SIZE": "1000",
        "AUTH": "PLAIN LOGIN",
        "8BITMIME": "",
    }


def test_multiline_reply_with_enhanced_codes() -> None:
    data = b"550-5.1.1 The email account that you tried to reach\r\n550 5.1.1 does not exist\r\n"
    (reply,) = read_replies(data)
    assert reply == Reply(
        550, "5.1.1", ("The email account that you tried to reach", "does not exist")
    )
    assert reply.is_permanent and not reply.is_transient


@pytest.mark.parametrize(
    ("data", "reply"),
    [
        (b"250 Ok\r\n", Reply(250, "", ("Ok",))),
        (b"250 2.0.0\r\n", Reply(250, "2.0.0", ("",))),
        (b"250\r\n", Reply(250, "", ("",))),
        (b"250 5.0.0 odd\r\n", Reply(250, "", ("5.0.0 odd",))),  # class must match
        (b"354 Go ahead\n", Reply(354, "", ("Go ahead",))),  # LF-only tolerated
        (b"421 4.7.0 Bye\r\n", Reply(421, "4.7.0", ("Bye",))),
    ],
)
def test_single_line_replies(data: bytes, reply: Reply) -> None:
    assert read_replies(data) == [reply]


NAMED = [
    value
    for name, value in vars(codes).items()
    if name.startswith("R") and isinstance(value, Reply)
]


@pytest.mark.parametrize(
    "reply", [*NAMED, ehlo_reply("mx", DEFAULT_EXTENSIONS, max_size=9)], ids=str
)
def test_every_named_reply_round_trips(reply: Reply) -> None:
    assert read_replies(reply.to_bytes()) == [reply]
    assert read_replies(reply.to_bytes(), bytewise=True) == [reply]


def test_pipelined_replies_bytewise() -> None:
    data = b"".join(r.to_bytes() for r in NAMED)
    assert read_replies(data, bytewise=True) == read_replies(data) == NAMED


def test_pending_counts_owed_replies() -> None:
    client = ClientConnection()
    assert client.pending == 1  # the greeting
    client.send(Ehlo("c.example"))
    client.send(Noop())
    assert client.pending == 3
    client.receive_data(b"220 hi\r\n250 mx\r\n")
    client.next_event()
    client.next_event()
    assert client.pending == 1
    assert client.next_event() is NEED_DATA


@pytest.mark.parametrize(
    "data",
    [
        b"hello\r\n",
        b"25\r\n",
        b"25O Ok\r\n",
        b"2500 Ok\r\n",
        b"250Ok\r\n",
        b"099 x\r\n",
        b"600 x\r\n",
        b"199 x\r\n",
        b"250-a\r\n251 b\r\n",
        b"250-a\r\n\r\n",
        b"x" * 1001,
        b"250-x\r\n" * 101 + b"250 x\r\n",
    ],
    ids=repr,
)
def test_malformed_replies_raise(data: bytes) -> None:
    client = ClientConnection()
    client.receive_data(data)
    with pytest.raises(RemoteProtocolError):
        client.next_event()


@pytest.mark.parametrize(
    "data",
    [
        b"550 " + "€".encode() * 300 + b"\r\n",
        b"550 5.7.1 " + b"\xff" * 900 + b"\r\n",
        b"250 " + b"x" * 999 + b"\r\n",
    ],
    ids=["long-utf8", "long-invalid-utf8", "long-ascii"],
)
def test_long_reply_text_is_kept_readable(data: bytes) -> None:
    client = ClientConnection()
    client.receive_data(data)
    reply = client.next_event()
    assert isinstance(reply, Reply)
    assert reply.code == int(data[:3])


def test_eof_gives_connection_closed() -> None:
    client = ClientConnection()
    client.receive_data(b"250-partial\r\n")
    assert client.next_event() is NEED_DATA
    client.receive_data(b"")
    assert isinstance(client.next_event(), ConnectionClosed)


@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=300))
def test_any_reply_bytes_give_a_reply_or_a_remote_error(data: bytes) -> None:
    client = ClientConnection()
    client.receive_data(data)
    try:
        while isinstance(client.next_event(), Reply):
            pass
    except RemoteProtocolError:
        pass


# -- a whole session ---------------------------------------------------------------------


def test_connection_pair_full_transaction() -> None:
    pair = ConnectionPair()
    assert pair.greeting.code == 220
    ehlo = pair.command(Ehlo("client.example"))
    assert "PIPELINING" in parse_ehlo(ehlo)
    assert (
        pair.command(MailFrom(ALICE, MailParams(size=30, body="8BITMIME"))) == codes.R250_SENDER_OK
    )
    assert pair.command(RcptTo(BOB, RcptParams(notify=("FAILURE",)))) == codes.R250_RECIPIENT_OK
    assert pair.command(Data()) == codes.R354_START_DATA
    assert pair.send(DataChunk(b"Subject: hi\r\n\r\n"), DataChunk(b".hello\n")) == []
    assert pair.command(EndOfData(0)) == QUEUED
    assert pair.command(Quit()) == codes.R221_BYE
    assert pair.server.state is State.CLOSED
    assert pair.client.pending == 0
    # The server saw exactly what the client meant.
    server = pair.server
    assert server.of_type(MailFrom) == [MailFrom(ALICE, MailParams(size=30, body="8BITMIME"))]
    assert server.of_type(RcptTo) == [RcptTo(BOB, RcptParams(notify=("FAILURE",)))]
    assert server.content == b"Subject: hi\r\n\r\n.hello\r\n"


def test_connection_pair_pipelined_transaction() -> None:
    pair = ConnectionPair()
    pair.command(Ehlo("client.example"))
    carol = Address("carol", "c.example")
    replies = pair.send(MailFrom(ALICE), RcptTo(BOB), RcptTo(carol), Data())
    assert replies == [
        codes.R250_SENDER_OK,
        codes.R250_RECIPIENT_OK,
        codes.R250_RECIPIENT_OK,
        codes.R354_START_DATA,
    ]
    assert pair.send(DataChunk(b"x\r\n"), EndOfData(0), Rset(), Quit()) == [
        QUEUED,
        codes.R250_RESET,
        codes.R221_BYE,
    ]


@pytest.mark.parametrize(
    "event",
    [
        e
        for e in COMMANDS
        if not isinstance(e, (Helo, Ehlo, Data, Bdat, Quit, StartTls, Auth, MailFrom, RcptTo))
    ],
    ids=repr,
)
def test_commands_reach_the_server_as_sent(event: Event) -> None:
    pair = ConnectionPair()
    pair.command(Ehlo("client.example"))
    pair.command(event)
    assert pair.server.events[-1] == event
