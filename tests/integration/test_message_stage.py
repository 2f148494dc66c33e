"""The MESSAGE stage over real sockets: after the final dot, before the spool commit."""

from __future__ import annotations

from helpers.servers import EXAMPLE, InProcessServer
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
