"""postmaster at the server's own address literal (RFC 5321 §4.5.1), over real sockets.

``RCPT TO:<postmaster@[<the address the client connected to>]>`` is accepted and
delivered to the primary domain's postmaster; other local parts at the literal, and
postmaster at somebody else's literal, stay refused (never an open relay).
"""

from __future__ import annotations

import pytest

from helpers.servers import EXAMPLE, InProcessServer
from helpers.wire import expect, message, queue_id_of, smtplib_client
from mailwright.smtp import codes

SENDER = "sender@remote.test"
DOMAINS = {"domain": [{"name": EXAMPLE, "mailboxes": ["alice", "postmaster"]}]}
FAMILIES = pytest.mark.parametrize(
    ("address", "literal"), [("127.0.0.1", "[127.0.0.1]"), ("::1", "[IPv6:::1]")]
)


def literal_server(make_server, address: str) -> InProcessServer:
    return make_server(extra={**DOMAINS, "listener": [{"address": address, "port": 0}]})


@FAMILIES
def test_postmaster_at_own_address_literal_is_delivered(make_server, address, literal):
    server = literal_server(make_server, address)
    with smtplib_client(address, server.port) as client:
        client.ehlo()
        expect(client.mail(SENDER), codes.R250_SENDER_OK)
        expect(client.rcpt(f"PostMaster@{literal}"), codes.R250_RECIPIENT_OK)
        code, text = client.data(message("to the postmaster"))
        assert code == 250, text
        queue_id = queue_id_of(text)
    [delivered] = server.maildir_messages(EXAMPLE, "postmaster")
    assert b"Subject: to the postmaster" in delivered
    assert f"id {queue_id}".encode() in delivered
    assert f"for <PostMaster@{literal}>".encode() in delivered  # as the client wrote it
    assert server.maildir_messages(EXAMPLE, "alice", count=0) == []


@FAMILIES
def test_other_recipients_at_address_literals_are_refused(make_server, address, literal):
    server = literal_server(make_server, address)
    other = "[IPv6:2001:db8::1]" if address == "::1" else "[192.0.2.1]"
    with smtplib_client(address, server.port) as client:
        client.ehlo()
        expect(client.mail(SENDER), codes.R250_SENDER_OK)
        expect(client.rcpt(f"alice@{literal}"), codes.R550_RELAY_DENIED)
        expect(client.rcpt(f"postmaster@{other}"), codes.R550_RELAY_DENIED)
    server.assert_nothing_stored()


def test_postmaster_literal_in_a_session_process(make_subprocess_server):
    # A session process gets its connection handed over (SCM_RIGHTS): the address the
    # client reached must still be known there.
    server = make_subprocess_server(smtp={"processes": 1}, extra=DOMAINS)
    with smtplib_client(server.host, server.port) as client:
        client.ehlo()
        expect(client.mail(SENDER), codes.R250_SENDER_OK)
        expect(client.rcpt("postmaster@[127.0.0.1]"), codes.R250_RECIPIENT_OK)
        expect(client.rcpt("alice@[127.0.0.1]"), codes.R550_RELAY_DENIED)
        code, text = client.data(message("postmaster via a session process"))
        assert code == 250, text
    [delivered] = server.maildir_messages(EXAMPLE, "postmaster")
    assert b"Subject: postmaster via a session process" in delivered
