"""The MESSAGE stage over real sockets: after the final dot, before the spool commit."""

from __future__ import annotations

import pytest

from helpers.fixtures import MakeServer
from helpers.servers import EXAMPLE, InProcessServer, in_maildir
from helpers.wire import RawSMTP, WireReply, message
from mailwright.policy.message import MessageTransaction
from mailwright.policy.pipeline import Stage
from mailwright.policy.verdict import Reject, TempFail
from mailwright.smtp import Reply

SENDER = "sender@remote.test"
R554_TEST = Reply.of(554, "5.7.1", "Refused by a content check")
R451_TEST = Reply.of(451, "4.7.1", "Try again later")


def send_raw(server: InProcessServer, body: bytes) -> list[WireReply]:
    """MAIL, RCPT, DATA, the body and its dot; the replies to each."""
    raw = RawSMTP(server.host, server.port)
    try:
        raw.greeting()
        raw.ehlo()
        raw.send(f"MAIL FROM:<{SENDER}>\r\nRCPT TO:<alice@example.test>\r\nDATA\r\n".encode())
        replies = raw.replies(3)
        raw.send(body + b".\r\nQUIT\r\n")
        return replies + raw.replies(2)
    finally:
        raw.close()


def test_message_hook_rejects_after_the_final_dot_and_nothing_is_stored(
    server: InProcessServer,
):
    seen: list[MessageTransaction] = []

    def refuse(ctx, txn: MessageTransaction):
        seen.append(txn)
        return Reject(R554_TEST, "test hook")

    server.app.listeners[0].services.pipeline.register(Stage.MESSAGE, "refuse", refuse)
    body = message("refused at the end")
    mail, rcpt, data, final, bye = send_raw(server, body)
    assert (mail.code, rcpt.code, data.code) == (250, 250, 354)
    assert final.matches(R554_TEST)
    assert bye.code == 221
    [txn] = seen
    assert txn.envelope.mail_from == SENDER
    assert [r.address for r in txn.envelope.recipients] == ["alice@example.test"]
    assert txn.header_section == body[: body.index(b"\r\n\r\n") + 2]
    assert ("Subject", "refused at the end") in txn.fields
    assert txn.size == len(body)
    server.assert_nothing_stored()


def test_message_hook_that_waits_can_temp_fail(server: InProcessServer):
    async def later(ctx, txn: MessageTransaction):
        return TempFail(R451_TEST, "test hook")

    server.app.listeners[0].services.pipeline.register(Stage.MESSAGE, "later", later)
    *_, final, _ = send_raw(server, message("temp-failed at the end"))
    assert (final.code, final.enhanced) == (451, "4.7.1")
    server.assert_nothing_stored()
    assert server.message_files(EXAMPLE, "alice") == []


@pytest.mark.parametrize("worker", [False, True], ids=["in-process", "worker"])
def test_message_hook_header_is_delivered_above_received_with_the_body_unchanged(
    make_server: MakeServer, worker: bool
):
    """The Done-when of issue 9 item 3: the added field is in the Maildir file, on top
    (RFC 8601 §5, RFC 7208 §9.1), and everything from our Received on is the message
    as it was stored without the stage: the body file is never rewritten.  Delivered
    by the server's own runner (from memory) and by a worker (read from the spool)."""
    server = make_server(worker=worker)

    def add(ctx, txn: MessageTransaction):
        txn.add_field("X-Test", "yes")

    server.app.listeners[0].services.pipeline.register(Stage.MESSAGE, "add", add)
    body = message("with an added field", body=b"line one\r\n..dot-stuffed\r\nlast\r\n")
    *_, final, _ = send_raw(server, body)
    assert final.code == 250
    [delivered] = server.maildir_messages(EXAMPLE, "alice")
    sent = in_maildir(body.replace(b"\r\n..", b"\r\n."))
    top, received_and_rest = delivered.split(b"\nReceived: ", 1)
    assert top.endswith(b"X-Test: yes") and b"X-Test" not in received_and_rest
    assert received_and_rest.endswith(sent)
    # Between them only our Received: its first line and its folded continuations.
    received = received_and_rest[: -len(sent)]
    first, *folded = received.removesuffix(b"\n").split(b"\n")
    assert first.startswith(b"from ") and all(line.startswith(b"\t") for line in folded)
