"""The client core, byte at a time: server replies fed whole and one byte at a time
(``ClientDriver``, whose bytewise mode checks itself against a whole-mode shadow), as
the server core is tested with ``Driver``.

The client's state moves on the replies it *receives* (``_state.next_state``); it
writes message data only after a 354, BDAT octets counted and never framed, nothing
behind a command that ends a pipelined group, and nothing read behind a 220 to
STARTTLS survives the handshake.  A protocol error poisons the connection.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mailwright.smtp import (
    DEFAULT_EXTENSIONS,
    NEED_DATA,
    PAUSED,
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
    LocalProtocolError,
    MailFrom,
    MailParams,
    Noop,
    Quit,
    RcptTo,
    RemoteProtocolError,
    Reply,
    Rset,
    StartTls,
    State,
    codes,
    ehlo_reply,
)

from .helpers import (
    GREETING,
    HOSTNAME,
    QUEUED,
    STARTTLS_READY,
    ClientDriver,
    ConnectionPair,
    Driver,
    reject,
)

ALICE = Address("alice", "a.example")
BOB = Address("bob", "b.example")
R554_DATA_REFUSED = Reply.of(554, "5.7.1", "Message refused")
EHLO_TLS = ehlo_reply(HOSTNAME, DEFAULT_EXTENSIONS | {"STARTTLS"}, max_size=10_000_000)


def feed(client: ClientConnection, data: bytes, mode: str) -> list[Reply]:
    """Server bytes into a bare ClientConnection; the replies it reads."""
    pieces = [data[i : i + 1] for i in range(len(data))] if mode == "bytewise" else [data]
    out: list[Reply] = []
    for piece in pieces:
        client.receive_data(piece)
        while isinstance(reply := client.next_event(), Reply):
            out.append(reply)
    return out


# -- the named regressions (issue 9, item 6) ---------------------------------------------


@pytest.mark.parametrize(
    ("mail", "refusal", "payload"),
    [
        # The case: DATA answered 554, then BDAT 4 LAST with ".ab\n" (legal in
        # a BINARYMIME chunk, RFC 3030 §3; the core refuses DATA for it with 503 first).
        (MailFrom(ALICE, MailParams(body="BINARYMIME")), None, b".ab\n"),
        (MailFrom(ALICE), R554_DATA_REFUSED, b".a\r\n"),
    ],
    ids=["503-binarymime", "554-policy"],
)
def test_bdat_after_rejected_data_is_counted_not_stuffed(
    mode: str, mail: MailFrom, refusal: Reply | None, payload: bytes
) -> None:
    """A DATA that was refused never opened a body, so the BDAT chunk that follows is
    written as its counted octets: no dot-stuffing, no line-end conversion.  The old
    client entered data mode when it *wrote* DATA and wrote ``..ab\\r\\n`` (6 octets
    for a 4-octet chunk): the server then read ``\\r\\n`` as a command and every later
    reply answered the wrong command."""
    server = Driver(policy=None if refusal is None else reject(Data, refusal))
    client = ClientConnection()
    sent = 0

    def exchange(*events: Event) -> list[Reply]:
        nonlocal sent
        server.feed(b"".join(client.send(e) for e in events))
        out = bytes(server.output[sent:])
        sent = len(server.output)
        return feed(client, out, mode)

    assert exchange() == [GREETING]
    assert [r.code for r in exchange(Ehlo("c.example"), mail, RcptTo(BOB))] == [250, 250, 250]
    (data_reply,) = exchange(Data())
    assert data_reply.code in (503, 554)
    chunk = [Bdat(len(payload), last=True), DataChunk(payload)]
    assert b"".join(client.send(e) for e in chunk) == b"BDAT %d LAST\r\n" % len(payload) + payload
    server.feed(b"BDAT %d LAST\r\n" % len(payload) + payload)
    replies = feed(client, bytes(server.output[sent:]), mode)
    sent = len(server.output)
    assert replies == [QUEUED]
    assert server.content == payload
    assert exchange(Noop()) == [codes.R250_OK]  # still in step


def test_starttls_response_injection_is_discarded(mode: str) -> None:
    """Replies a man in the middle appends in plaintext behind the 220 to STARTTLS are
    never read: ``next_event`` pauses until ``tls_established()``, which drops them,
    and the session starts again with EHLO (RFC 3207 §4.2).  The old client read the
    injected 250 as the answer to its next command sent over TLS."""
    client = ClientConnection()
    assert feed(client, GREETING.to_bytes(), mode) == [GREETING]
    client.send(Ehlo("c.example"))
    assert feed(client, EHLO_TLS.to_bytes(), mode) == [EHLO_TLS]
    client.send(StartTls())
    injected = b"250-mx.example\r\n250 AUTH PLAIN\r\n235 2.7.0 Authentication successful\r\n"
    assert feed(client, STARTTLS_READY.to_bytes() + injected, mode) == [STARTTLS_READY]
    assert feed(client, b"250 2.1.0 more plaintext\r\n", mode) == []
    assert client.next_event() is PAUSED
    client.tls_established()
    assert client.tls_active
    assert client.state is State.NEED_HELO
    assert client.next_event() is NEED_DATA  # nothing of the injection is left
    client.send(Ehlo("c.example"))
    real = ehlo_reply(HOSTNAME, DEFAULT_EXTENSIONS, max_size=10_000_000)
    assert feed(client, real.to_bytes(), mode) == [real]
    assert client.state is State.READY


# -- the state moves on replies received -------------------------------------------------


def greeted(mode: str, *commands: Event, replies: list[Reply] | None = None) -> ClientDriver:
    """A ClientDriver past the greeting that wrote ``commands`` and read ``replies``."""
    d = ClientDriver(mode)
    d.feed(GREETING.to_bytes())
    if commands:
        d.send(*commands)
    for reply in replies or []:
        d.feed(reply.to_bytes())
    return d


ENVELOPE = (Ehlo("c.example"), MailFrom(ALICE), RcptTo(BOB))
ENVELOPE_OK = [codes.R250_OK, codes.R250_SENDER_OK, codes.R250_RECIPIENT_OK]


def test_states_follow_the_replies(mode: str) -> None:
    d = greeted(mode)
    assert d.state is State.NEED_HELO
    d.send(*ENVELOPE, Data())
    assert d.state is State.NEED_HELO  # written is not answered
    d.feed(b"".join(r.to_bytes() for r in ENVELOPE_OK))
    assert d.states[1:] == [State.READY, State.MAIL, State.RCPT]
    d.feed(codes.R354_START_DATA.to_bytes())
    assert d.state is State.DATA
    d.send(DataChunk(b"hi\n"), EndOfData(0), Quit())
    assert d.output.endswith(b"DATA\r\nhi\r\n.\r\nQUIT\r\n")
    assert d.state is State.DATA  # until the reply to the end of data
    d.feed(QUEUED.to_bytes() + codes.R221_BYE.to_bytes())
    assert d.states[-2:] == [State.READY, State.CLOSED]
    assert d.conn.pending == 0


def test_body_before_354_is_a_local_error(mode: str) -> None:
    d = greeted(mode, *ENVELOPE, Data(), replies=ENVELOPE_OK)
    with pytest.raises(LocalProtocolError, match="outside a message body"):
        d.conn.send(DataChunk(b"too early\r\n"))
    assert d.state is State.ERROR


def test_data_refused_leaves_the_transaction_and_no_body(mode: str) -> None:
    """RFC 5321 §4.1.1.4: after a 5yz to DATA the client "MUST NOT send the message
    data".  The transaction stays: §4.1.1.4 clears the reverse-path, forward-path and
    mail data buffers on the end of mail data, not on a refused DATA (the server core
    keeps MAIL and RCPT likewise), so BDAT or a new DATA may follow."""
    d = greeted(mode, *ENVELOPE, Data(), replies=[*ENVELOPE_OK, R554_DATA_REFUSED])
    assert d.state is State.RCPT
    with pytest.raises(LocalProtocolError):
        d.conn.send(EndOfData(0))


def test_data_reply_opens_the_body_even_after_a_refused_rcpt(mode: str) -> None:
    """The reply decides: a server that answers DATA 354 reads a body, whatever the
    client made of the RCPT replies, so the client must write one."""
    d = greeted(mode, Ehlo("c.example"), MailFrom(ALICE), RcptTo(BOB), Data())
    d.feed(b"".join(r.to_bytes() for r in [codes.R250_OK, codes.R250_SENDER_OK]))
    d.feed(codes.R550_NO_SUCH_USER.to_bytes() + codes.R354_START_DATA.to_bytes())
    assert d.state is State.DATA
    assert d.send(DataChunk(b"."), EndOfData(0)) == b"..\r\n.\r\n"


@pytest.mark.parametrize("ender", [Data(), Quit(), StartTls(), Auth("PLAIN")], ids=repr)
def test_nothing_is_written_behind_a_group_ender(mode: str, ender: Event) -> None:
    """RFC 2920 §3.1: the reply to these decides how the next octets are read."""
    d = greeted(mode, *ENVELOPE, replies=ENVELOPE_OK)
    d.send(ender)
    with pytest.raises(LocalProtocolError, match="before the reply"):
        d.conn.send(Noop())


def test_commands_pipeline_behind_the_end_of_data(mode: str) -> None:
    d = greeted(mode, *ENVELOPE, Data(), replies=[*ENVELOPE_OK, codes.R354_START_DATA])
    d.send(DataChunk(b"x"), EndOfData(0), Rset(), MailFrom(ALICE), RcptTo(BOB), Data())
    d.feed(b"".join(r.to_bytes() for r in [QUEUED, codes.R250_RESET, *ENVELOPE_OK[1:]]))
    assert d.states[-4:] == [State.READY, State.READY, State.MAIL, State.RCPT]
    assert d.conn.pending == 1  # the second DATA


def test_commands_inside_the_body_are_refused(mode: str) -> None:
    d = greeted(mode, *ENVELOPE, Data(), replies=[*ENVELOPE_OK, codes.R354_START_DATA])
    with pytest.raises(LocalProtocolError, match="inside the message body"):
        d.conn.send(Quit())


# -- BDAT: counted octets ----------------------------------------------------------------


def test_bdat_chunk_is_sent_as_counted_octets_in_pieces(mode: str) -> None:
    d = greeted(mode, *ENVELOPE, replies=ENVELOPE_OK)
    out = d.send(Bdat(6, last=True), DataChunk(b".a\n"), DataChunk(b"\r.\n"), Noop())
    assert out == b"BDAT 6 LAST\r\n.a\n\r.\nNOOP\r\n"


@pytest.mark.parametrize(
    "after",
    [DataChunk(b"abcd"), Noop(), EndOfData(0)],
    ids=["longer-than-announced", "command-inside-chunk", "end-of-data-inside-chunk"],
)
def test_bdat_chunk_must_be_exactly_the_announced_octets(mode: str, after: Event) -> None:
    d = greeted(mode, *ENVELOPE, replies=ENVELOPE_OK)
    d.send(Bdat(3), DataChunk(b"a"))
    with pytest.raises(LocalProtocolError):
        d.conn.send(after)


def test_data_chunk_outside_data_and_bdat_is_refused() -> None:
    """The old client wrote a DataChunk outside DATA verbatim, framed by nothing."""
    client = ClientConnection()
    with pytest.raises(LocalProtocolError):
        client.send(DataChunk(b"MAIL FROM:<evil@x.example>\r\n"))


# -- TLS and AUTH ------------------------------------------------------------------------


def test_tls_established_without_starttls_is_a_local_error(mode: str) -> None:
    d = greeted(mode, Ehlo("c.example"), StartTls(), replies=[EHLO_TLS])
    with pytest.raises(LocalProtocolError):
        d.conn.tls_established()  # the 220 has not come yet


def test_starttls_refused_keeps_the_plain_session(mode: str) -> None:
    refused = Reply.of(454, "4.7.0", "TLS not available")
    d = greeted(mode, Ehlo("c.example"), StartTls(), replies=[EHLO_TLS, refused])
    assert d.state is State.READY
    assert not d.conn.tls_active
    d.send(MailFrom(ALICE))


def test_starttls_over_the_pair_forgets_the_session(mode: str) -> None:
    pair = ConnectionPair(mode, extensions=DEFAULT_EXTENSIONS | {"STARTTLS"})
    pair.command(Ehlo("c.example"))
    assert pair.starttls() == STARTTLS_READY
    assert pair.client.state is pair.server.state is State.NEED_HELO
    assert pair.client.tls_active and pair.server.conn.tls_active
    assert pair.command(MailFrom(ALICE)) == codes.R503_SEND_HELO_FIRST


def test_auth_exchange(mode: str) -> None:
    d = greeted(mode, Ehlo("c.example"), Auth("LOGIN"))
    with pytest.raises(LocalProtocolError):
        ClientConnection().send(AuthResponse(b"alice"))  # no 334 yet
    d.feed(codes.R250_OK.to_bytes() + Reply.of(334, "", "VXNlcm5hbWU6").to_bytes())
    assert d.state is State.AUTH
    d.send(AuthResponse(b"alice"))
    d.feed(Reply.of(334, "", "UGFzc3dvcmQ6").to_bytes())
    d.send(AuthResponse(b"secret"))
    d.feed(codes.R235_AUTH_OK.to_bytes())
    assert d.state is State.READY


def test_only_a_sasl_response_after_a_challenge(mode: str) -> None:
    d = greeted(mode, Ehlo("c.example"), Auth("LOGIN"))
    d.feed(codes.R250_OK.to_bytes() + Reply.of(334, "", "VXNlcm5hbWU6").to_bytes())
    with pytest.raises(LocalProtocolError):
        d.conn.send(MailFrom(ALICE))


# -- replies that answer nothing, closing, poisoning ----------------------------------------


def test_reply_to_no_command_is_a_remote_error(mode: str) -> None:
    d = greeted(mode)
    with pytest.raises(RemoteProtocolError, match="to no command"):
        d.feed(codes.R250_OK.to_bytes())


def test_unsolicited_421_closes(mode: str) -> None:
    """RFC 5321 §3.8: a server may send 421 at any time before it closes."""
    d = greeted(mode)
    d.feed(codes.R421_SHUTTING_DOWN.to_bytes())
    assert d.state is State.CLOSED
    assert d.closed
    with pytest.raises(LocalProtocolError):
        d.conn.send(Noop())


def test_greeting_554_closes(mode: str) -> None:
    d = ClientDriver(mode)
    d.feed(Reply.of(554, "5.3.2", "No service").to_bytes())
    assert d.state is State.CLOSED


def test_malformed_reply_poisons_the_connection(mode: str) -> None:
    d = greeted(mode, Noop())
    with pytest.raises(RemoteProtocolError):
        d.feed(b"25O Ok\r\n")
    assert d.state is State.ERROR
    with pytest.raises(RemoteProtocolError):
        d.conn.next_event()
    with pytest.raises(RemoteProtocolError):
        d.conn.send(Noop())


def test_local_error_poisons_the_connection(mode: str) -> None:
    d = greeted(mode, Ehlo("c.example"), replies=[codes.R250_OK])
    with pytest.raises(LocalProtocolError):
        d.conn.send(EndOfData(0))
    with pytest.raises(LocalProtocolError):
        d.conn.send(Noop())
    d.conn.receive_data(codes.R250_OK.to_bytes())
    with pytest.raises(LocalProtocolError):
        d.conn.next_event()


def test_text_the_writer_refuses_changes_nothing(mode: str) -> None:
    """A ValueError from the command writer is the caller's input, not a protocol
    state: nothing was written, so the connection stays usable."""
    d = greeted(mode, Ehlo("c.example"), replies=[codes.R250_OK])
    with pytest.raises(ValueError):
        d.conn.send(Noop("x\r\nRCPT TO:<evil@x.example>"))
    assert d.conn.pending == 0
    d.send(Noop())


def test_eof_gives_connection_closed(mode: str) -> None:
    d = greeted(mode, Noop())
    d.feed(b"250-partial\r\n")
    assert not d.closed
    d.eof()
    assert d.closed
    assert isinstance(d.conn.next_event(), ConnectionClosed)


# -- segmentation independence ---------------------------------------------------------

PIPELINE = (Ehlo("c.example"), MailFrom(ALICE), RcptTo(BOB), RcptTo(ALICE), Rset(), Noop())
REPLY_CHOICES = [
    codes.R250_OK,
    ehlo_reply(HOSTNAME, DEFAULT_EXTENSIONS, max_size=1000),
    codes.R550_NO_SUCH_USER,
    codes.R451_TEMP_POLICY,
    codes.R503_NEED_MAIL,
    codes.R421_SHUTTING_DOWN,
    Reply.of(250, "", "x" * 300),
]


def read_split(data: bytes, cuts: list[int]) -> tuple[list[Reply], list[State]]:
    client = ClientConnection()
    for command in PIPELINE:
        client.send(command)
    points = sorted({min(c, len(data)) for c in cuts})
    replies: list[Reply] = []
    states: list[State] = []
    for a, b in zip([0, *points], [*points, len(data)], strict=True):
        if b > a:
            client.receive_data(data[a:b])
        while isinstance(reply := client.next_event(), Reply):
            replies.append(reply)
            states.append(client.state)
    return replies, states


@settings(max_examples=150, deadline=None)
@given(
    st.lists(st.sampled_from(REPLY_CHOICES), min_size=len(PIPELINE), max_size=len(PIPELINE)),
    st.lists(st.integers(0, 2000), max_size=8),
)
def test_any_split_of_pipelined_replies_gives_the_same_session(
    replies: list[Reply], cuts: list[int]
) -> None:
    data = GREETING.to_bytes() + b"".join(r.to_bytes() for r in replies)
    whole = read_split(data, [])
    assert read_split(data, cuts) == whole
    assert read_split(data, list(range(len(data)))) == whole
    # Replies are matched to the pipelined commands in order, up to a closing one.
    got, states = whole
    closing = next((i for i, r in enumerate(replies) if r.code == 421), None)
    assert got[1:] == (replies if closing is None else replies[: closing + 1])
    assert (states[-1] is State.CLOSED) == (closing is not None)
