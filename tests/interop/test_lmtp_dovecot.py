"""The LMTP route into a real Dovecot (Debian ``dovecot-lmtpd``): a local domain whose
mailboxes live in Dovecot (``[[transport]] nexthop = "lmtp:..."``), the way a
mailwright MX hands mail to a mailbox store.  LMTP answers per recipient after the
data (RFC 2033 §4.2): one recipient Dovecot knows is delivered into its Maildir, one
it does not is bounced, from one transaction."""

from __future__ import annotations

import smtplib

import pytest

from helpers.dovecot_lmtp import dovecot_lmtp
from helpers.secure import wait_for_log
from helpers.servers import HOST
from helpers.tools import require_tool
from helpers.wire import message

pytestmark = pytest.mark.interop


def test_lmtp_into_dovecot_per_recipient(make_server):
    exe = require_tool("dovecot", "dovecot-lmtpd")
    with dovecot_lmtp(exe, ["carol@store.test"]) as dovecot:
        server = make_server(
            extra={
                "domain": [
                    {"name": "store.test", "mailboxes": ["carol", "dave"]},
                    {"name": "example.test", "mailboxes": ["alice"]},
                ],
                "transport": [
                    {"domain": "store.test", "nexthop": f"lmtp:{dovecot.host}:{dovecot.port}"}
                ],
            }
        )
        with smtplib.SMTP(HOST, server.port, timeout=10) as client:
            refused = client.sendmail(
                "alice@example.test",
                ["carol@store.test", "dave@store.test"],
                message("into dovecot"),
            )
        assert refused == {}  # both are our mailboxes: accepted here
        log = wait_for_log(server, "bounced to=<dave@store.test>")
        log = wait_for_log(server, "delivered to=<carol@store.test>")
        (stored,) = dovecot.messages("store.test", "carol")
        assert stored["Subject"] == "into dovecot"
        assert dovecot.messages("store.test", "dave") == []
        delivered = next(x for x in log.splitlines() if "delivered to=<carol@store.test>" in x)
        assert f"relay=127.0.0.1[127.0.0.1]:{dovecot.port}" in delivered
        assert "lmtp:[127.0.0.1]" in delivered and "tls=none" in delivered
        bounced = next(x for x in log.splitlines() if "bounced to=<dave@store.test>" in x)
        assert 'reply="550 5.1.1' in bounced
        # Nothing for store.test went to our own Maildir: the transport won.
        assert server.message_files("store.test", "carol") == []
        assert server.message_files("store.test", "dave") == []
        # The bounce reached the local sender.
        (dsn,) = server.maildir_messages("example.test", "alice")
        assert b"dave@store.test" in dsn and b"5.1.1" in dsn
