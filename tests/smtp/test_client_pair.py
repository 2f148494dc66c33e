"""ClientConnection <-> ServerConnection over every dialog fixture of the server suite.

Each fixture in ``test_dialogs.CASES`` is first fed to a server ``Driver`` as raw
bytes (the reference); the events it yielded are then written by a ClientConnection
to a fresh server core, and both ends must agree: the server yields the same events
and sends the same replies, the client reads exactly those replies from exactly the
server's bytes, and after every reply the client's state is the server's.  Commands
the server could not parse (``CommandError``) are what a client cannot write, so they
are left out of the replay; they change no state unless the reply closes, and then
the reference's events stop there.

Two ways of writing: ``lockstep`` (a reply read after every command) and
``pipelined`` (replies read only where the client must wait: after a command that
ends a pipelined group, RFC 2920 §3.1); and both feeding modes on the client's side.
"""

from __future__ import annotations

import pytest

from mailwright.smtp import (
    DEFAULT_EXTENSIONS,
    Address,
    Auth,
    AuthResponse,
    Bdat,
    CommandError,
    ConnectionClosed,
    Data,
    DataChunk,
    Ehlo,
    EndOfData,
    Event,
    MailFrom,
    MailParams,
    Noop,
    Quit,
    RcptTo,
    Reply,
    StartTls,
    State,
    codes,
)

from .helpers import ConnectionPair, Driver, merge_chunks, reject
from .test_dialogs import CASES, Case

# Where a client has to wait for the reply before writing on (_state.CLIENT_GROUP_ENDERS).
WAIT_AFTER = (Data, Quit, StartTls, Auth, AuthResponse)


def reference(case: Case) -> Driver:
    driver = Driver("whole", **case.kwargs)
    for data in case.writes:
        driver.feed(data)
    return driver


def writable(events: list[Event]) -> list[Event]:
    """The events a client writes to produce ``events`` on the server: no CommandError,
    and each BDAT before its chunk's octets (the server yields the command after)."""
    out: list[Event] = []
    chunks: list[Event] = []
    for event in merge_chunks(events):
        if isinstance(event, (CommandError, ConnectionClosed)):
            continue
        if isinstance(event, DataChunk):
            chunks.append(event)
            continue
        if isinstance(event, Bdat):
            out.append(event)
            out.extend(chunks)
        else:
            out.extend(chunks)
            out.append(event)
        chunks = []
    return out + chunks


def replay(
    events: list[Event], mode: str, writing: str, **server_kwargs: object
) -> tuple[ConnectionPair, list[Event]]:
    """Write ``events`` through a pair; returns it and the events actually written."""
    pair = ConnectionPair(mode, **server_kwargs)
    written: list[Event] = []
    for event in events:
        if writing == "lockstep" or (written and isinstance(written[-1], WAIT_AFTER)):
            pair.replies()
        if pair.client.state is State.TLS:
            pair.driver.tls_established()  # the server driver's auto_tls did its half
        if pair.client.state is State.CLOSED:
            break
        pair.write(event)
        written.append(event)
    pair.replies()
    return pair, written


def assert_agree(pair: ConnectionPair, written: list[Event]) -> None:
    server, client = pair.server, pair.driver
    # The server read exactly the events the client wrote, and nothing else.
    assert writable(server.events) == merge_chunks(written)
    # The client read exactly the replies the server sent, from exactly its bytes ...
    assert client.replies == [pair.greeting, *server.replies]
    assert b"".join(r.to_bytes() for r in client.replies) == bytes(server.output)
    # ... and after every reply both ends are in the same state.
    assert client.states == [State.NEED_HELO, *(a.state_after for a in server.answers)]
    assert client.state is server.state
    assert client.conn.pending == 0 or client.state is State.CLOSED


WRITING = ["lockstep", "pipelined"]


@pytest.mark.parametrize("writing", WRITING)
@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_client_and_server_agree_on_every_dialog(case: Case, mode: str, writing: str) -> None:
    events = writable(reference(case).events)
    pair, written = replay(events, mode, writing, **case.kwargs)
    assert written == events
    assert_agree(pair, written)


def test_the_replay_covers_every_event_kind() -> None:
    """The pair test above is only as good as what it replays."""
    kinds = {type(e) for case in CASES for e in writable(reference(case).events)}
    assert {Data, DataChunk, EndOfData, Quit} <= kinds


# The server suite's STARTTLS, AUTH and BDAT cases are written as byte scripts inside
# their tests; these are the same dialogs as client scripts.
ALICE = Address("alice", "a.example")
BOB = Address("bob", "b.example")
ENVELOPE = [Ehlo("client.example"), MailFrom(ALICE), RcptTo(BOB)]
PLAIN = b"\x00alice\x00secret"
TLS = {"extensions": DEFAULT_EXTENSIONS | {"STARTTLS"}}
AUTH = {"extensions": DEFAULT_EXTENSIONS | {"AUTH"}}
SCRIPTS: dict[str, tuple[list[Event], dict[str, object]]] = {
    "bdat_chunks": (
        [*ENVELOPE, Bdat(5), DataChunk(b"one\r\n"), Bdat(5, last=True), DataChunk(b"two\r\n")],
        {},
    ),
    "bdat_zero_last": ([*ENVELOPE, Bdat(3), DataChunk(b"x\r\n"), Bdat(0, last=True), Quit()], {}),
    "bdat_binarymime": (
        [
            Ehlo("client.example"),
            MailFrom(ALICE, MailParams(body="BINARYMIME")),
            RcptTo(BOB),
            Bdat(6, last=True),
            DataChunk(b".\nb\r\x00\r"),
            Noop(),
        ],
        {},
    ),
    "bdat_refused_ends_the_transaction": (
        [*ENVELOPE, Bdat(3), DataChunk(b"x\r\n"), Bdat(2), DataChunk(b"\r\n"), MailFrom(ALICE)],
        {"policy": reject(Bdat, codes.R451_LOCAL_ERROR, lambda e: e.size == 2)},
    ),
    "data_refused_then_bdat": (
        [*ENVELOPE, Data(), Bdat(4, last=True), DataChunk(b".a\r\n"), Noop()],
        {"policy": reject(Data, Reply.of(554, "5.7.1", "Message refused"))},
    ),
    "starttls_then_ehlo_again": (
        [Ehlo("client.example"), StartTls(), Ehlo("client.example"), MailFrom(ALICE), Quit()],
        TLS,
    ),
    "starttls_refused_keeps_the_plain_session": (
        [Ehlo("client.example"), StartTls(), MailFrom(ALICE)],
        {**TLS, "policy": reject(StartTls, Reply.of(454, "4.7.0", "TLS not available"))},
    ),
    "auth_with_a_challenge": (
        [Ehlo("client.example"), Auth("PLAIN"), AuthResponse(PLAIN), MailFrom(ALICE)],
        AUTH,
    ),
    "auth_with_initial_response": (
        [Ehlo("client.example"), Auth("PLAIN", PLAIN), MailFrom(ALICE)],
        AUTH,
    ),
    "auth_cancelled": (
        [Ehlo("client.example"), Auth("LOGIN"), AuthResponse(None), Noop()],
        AUTH,
    ),
}


@pytest.mark.parametrize("writing", WRITING)
@pytest.mark.parametrize("name", list(SCRIPTS))
def test_client_and_server_agree_on_tls_auth_and_bdat(name: str, mode: str, writing: str) -> None:
    events, kwargs = SCRIPTS[name]
    pair, written = replay(events, mode, writing, **kwargs)
    assert written == events
    assert_agree(pair, written)
