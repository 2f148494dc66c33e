"""DSNs end to end over real sockets: smtplib sends with the RFC 3461 parameters, the
server queues, the queue runner delivers and reports, and the report lands in a
Maildir, where it is read back with the stdlib ``email`` package.  Runs with the runner
in the server's process and in a delivery worker (the composition root's wiring: the
reporting MTA name and the postmaster who gets double bounces)."""

from __future__ import annotations

import email
import email.message

import pytest

from helpers.fixtures import MakeServer
from helpers.servers import EXAMPLE, HOSTNAME, InProcessServer
from helpers.wire import expect, message, queue_id_of, smtplib_client
from mailwright.smtp import codes

# Loopback may relay (Postfix's mynetworks), so mail to a remote domain is accepted and
# fails at delivery: the relay finds no such domain in the tests' DNS (550 5.1.2).
EXTRA = {
    "relay": {"trusted_networks": ["127.0.0.1/32"]},
    "domain": [{"name": EXAMPLE, "mailboxes": ["alice", "bob", "postmaster"]}],
}


@pytest.fixture(params=[False, True], ids=["runner-in-server", "worker-process"])
def server(request: pytest.FixtureRequest, make_server: MakeServer) -> InProcessServer:
    return make_server(worker=request.param, extra=EXTRA)


def send(
    server: InProcessServer,
    sender: str,
    rcpt: str,
    msg: bytes,
    mail_options: list[str] | None = None,
    rcpt_options: list[str] | None = None,
) -> str:
    with smtplib_client(server.host, server.port) as client:
        client.ehlo()
        assert client.has_extn("dsn")
        expect(client.mail(sender, mail_options or []), codes.R250_SENDER_OK)
        expect(client.rcpt(rcpt, rcpt_options or []), codes.R250_RECIPIENT_OK)
        code, text = client.data(msg)
        assert code == 250, text
        client.quit()
    return queue_id_of(text)


def report_of(data: bytes) -> tuple[email.message.Message, list[email.message.Message]]:
    parsed = email.message_from_bytes(data)
    assert parsed.get_content_type() == "multipart/report"
    parts = parsed.get_payload()
    assert isinstance(parts, list) and len(parts) == 3
    blocks = parts[1].get_payload()
    assert isinstance(blocks, list)
    return parsed, blocks


def test_notify_success_reports_delivered_to_a_local_sender(server: InProcessServer) -> None:
    msg = message("success-e2e")
    queue_id = send(
        server,
        "alice@example.test",
        "bob@example.test",
        msg,
        mail_options=["RET=HDRS", "ENVID=QQ314159"],
        rcpt_options=["NOTIFY=SUCCESS", "ORCPT=rfc822;bob@example.test"],
    )
    assert len(server.maildir_messages(EXAMPLE, "bob")) == 1
    [data] = server.maildir_messages(EXAMPLE, "alice")
    parsed, (per_message, bob) = report_of(data)
    assert parsed["Return-Path"] == "<>"
    assert parsed["Subject"] == "Successful Mail Delivery Report"
    assert parsed["From"] == f"Mail Delivery System <MAILER-DAEMON@{HOSTNAME}>"
    assert per_message["Reporting-MTA"] == f"dns; {HOSTNAME}"
    assert per_message["Original-Envelope-Id"] == "QQ314159"
    assert bob["Final-Recipient"] == "rfc822; bob@example.test"
    assert bob["Original-Recipient"] == "rfc822; bob@example.test"
    assert bob["Action"] == "delivered" and bob["Status"] == "2.0.0"
    assert queue_id.encode() in data  # the returned header names the original's id
    server.wait_queue_empty()


def test_undeliverable_bounce_reaches_the_postmaster_once(server: InProcessServer) -> None:
    send(server, "ghost@elsewhere.test", "someone@elsewhere.test", message("2bounce-e2e"))
    [data] = server.maildir_messages(EXAMPLE, "postmaster")
    parsed, (_, block) = report_of(data)
    assert parsed["Return-Path"] == "<>"
    # HOSTNAME is not a local domain: the primary domain's postmaster.
    assert parsed["To"] == f"<postmaster@{EXAMPLE}>"
    assert parsed["Subject"] == "Postmaster Copy: Undelivered Mail"
    assert block["Final-Recipient"] == "rfc822; ghost@elsewhere.test"
    # The relay routes elsewhere.test by MX; the tests' DNS has no such domain.
    assert block["Action"] == "failed" and block["Status"] == "5.1.2"
    server.wait_queue_empty()  # original, bounce and notice all done: nothing loops
    assert len(server.message_files(EXAMPLE, "postmaster")) == 1
    log = server.mail_log()
    assert log.count(": bounced ") == 2, log  # the original's recipient and the bounce's
