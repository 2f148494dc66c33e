"""The LMTP route into a real Dovecot (Debian ``dovecot-lmtpd``) over its unix socket:
a local domain whose mailboxes live in Dovecot (``[[transport]] nexthop =
"lmtp:unix:/path"``), the way a mailwright MX hands mail to a mailbox store.  LMTP
answers per recipient after the data (RFC 2033 §4.2): from one transaction, one
recipient is stored in Dovecot's Maildir, the other (whose Maildir is broken) is
deferred on its own."""

from __future__ import annotations

import smtplib

import pytest

from helpers.dovecot_lmtp import dovecot_lmtp
from helpers.secure import wait_for_log
from helpers.servers import HOST
from helpers.wire import message

pytestmark = pytest.mark.interop


def test_lmtp_into_dovecot_per_recipient(make_server):
    with dovecot_lmtp(prepare_mail=("dave",)) as dovecot:
        server = make_server(
            extra={
                "domain": [
                    {"name": "store.test", "mailboxes": ["carol", "dave"]},
                    {"name": "example.test", "mailboxes": ["alice"]},
                ],
                "transport": [{"domain": "store.test", "nexthop": f"lmtp:unix:{dovecot.socket}"}],
            }
        )
        with smtplib.SMTP(HOST, server.port, local_hostname="client.test", timeout=10) as client:
            refused = client.sendmail(
                "alice@example.test",
                ["carol@store.test", "dave@store.test"],
                message("into dovecot"),
            )
        assert refused == {}  # both are our mailboxes: accepted here
        wait_for_log(server, "deferred to=<dave@store.test>")
        log = wait_for_log(server, "delivered to=<carol@store.test>")
        (stored,) = dovecot.maildir_messages("carol")
        assert b"Subject: into dovecot" in stored
    delivered = next(x for x in log.splitlines() if "delivered to=<carol@store.test>" in x)
    assert f"relay=localhost[{dovecot.socket}]:0" in delivered
    assert f"lmtp:unix:{dovecot.socket}" in delivered and "tls=none" in delivered
    deferred = next(x for x in log.splitlines() if "deferred to=<dave@store.test>" in x)
    assert 'reply="4' in deferred  # Dovecot's own temporary failure for dave
    # Nothing for store.test went to our own Maildirs: the transport won.
    assert server.message_files("store.test", "carol") == []
    assert server.message_files("store.test", "dave") == []
