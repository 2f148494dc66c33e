"""A spool that cannot store answers 451 4.3.0 (DESIGN principle 3): the client keeps
the message and retries, nothing is delivered, and the session goes on."""

from __future__ import annotations

import pytest

from helpers.servers import EXAMPLE, InProcessServer
from helpers.wire import RawSMTP, expect, message, queue_id_of, smtplib_client
from mailwright.smtp import codes
from mailwright.spool.store import SpoolError

SENDER = "sender@remote.test"


@pytest.fixture
def failing_put(server: InProcessServer, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Make ``spool.put`` fail like a full disk; returns the queue ids it refused."""
    refused: list[str] = []

    async def put(writer, envelope, header_block=b""):
        refused.append(writer.queue_id)
        raise SpoolError(f"{writer.queue_id}: cannot write body: No space left on device")

    monkeypatch.setattr(server.app.spool, "put", put)
    return refused


def test_store_failure_answers_451_and_delivers_nothing(server, failing_put, monkeypatch):
    with smtplib_client(server.host, server.port) as client:
        client.ehlo()
        expect(client.mail(SENDER), codes.R250_SENDER_OK)
        expect(client.rcpt("alice@example.test"), codes.R250_RECIPIENT_OK)
        expect(client.data(message("lost?")), codes.R451_LOCAL_ERROR)
        assert len(failing_put) == 1
        # The session continues; once the disk is back the next message is queued.
        monkeypatch.undo()
        expect(client.mail(SENDER), codes.R250_SENDER_OK)
        expect(client.rcpt("bob@example.test"), codes.R250_RECIPIENT_OK)
        code, text = client.data(message("retried"))
        assert code == 250, text
        queue_id = queue_id_of(text)
    [delivered] = server.maildir_messages(EXAMPLE, "bob")
    assert f"id {queue_id}".encode() in delivered and b"Subject: retried" in delivered
    server.wait_settled()
    assert server.message_files(EXAMPLE, "alice") == []  # the 451'd message went nowhere
    assert server.spool_files() == {"tmp": [], "msg": []}  # its temporary body is gone
    assert f"{failing_put[0]}: delivered" not in server.mail_log()


def test_store_failure_after_bdat_last_answers_451(server, failing_put):
    body = b"Subject: bdat\r\n\r\nbody\r\n"
    with RawSMTP(server.host, server.port) as raw:
        raw.greeting()
        raw.ehlo()
        raw.send(
            f"MAIL FROM:<{SENDER}>\r\nRCPT TO:<alice@example.test>\r\n"
            f"BDAT {len(body)} LAST\r\n".encode()
            + body
        )
        assert raw.replies(3)[-1].matches(codes.R451_LOCAL_ERROR)
        assert raw.cmd("NOOP").matches(codes.R250_OK)  # still in session
    server.assert_nothing_stored()


def test_spool_unavailable_at_data_answers_451(server, monkeypatch):
    def new_message():
        raise SpoolError("cannot create body: Read-only file system [EROFS]")

    monkeypatch.setattr(server.app.spool, "new_message", new_message)
    with smtplib_client(server.host, server.port) as client:
        client.ehlo()
        expect(client.mail(SENDER), codes.R250_SENDER_OK)
        expect(client.rcpt("alice@example.test"), codes.R250_RECIPIENT_OK)
        expect(client.docmd("DATA"), codes.R451_LOCAL_ERROR)
        # No 354, so the client sends no body; the transaction can be reset and reused.
        expect(client.rset(), codes.R250_RESET)
        expect(client.noop(), codes.R250_OK)
    server.assert_nothing_stored()
