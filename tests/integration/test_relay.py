"""Never an open relay: the classic relay-test address forms, without AUTH, from
127.0.0.1 (which is *not* trusted by default).

Each form is its own named regression test.  A form may be refused as not ours
(550 5.7.1), as an unknown local user (550 5.1.1) or as a syntax error (501); it may
never get 250 for a non-local destination, and nothing may be queued (spool and mail
log are checked).  Forms that parse as a *local* address are delivered locally when
the domain has a catch-all, never forwarded.  Trusted networks may relay.
"""

from __future__ import annotations

from helpers.secure import connect, secure_extra, wait_for_log, write_users
from helpers.servers import CATCHALL, EXAMPLE
from helpers.wire import message, queue_id_of

SENDER = "sender@remote.test"
REFUSALS = {(550, "5.7.1"), (550, "5.1.1")}


def relay_server(make_server, **kwargs):
    return make_server(extra=secure_extra(**kwargs), prepare=write_users)


def assert_not_relayed(make_server, rcpt: str) -> None:
    server = relay_server(make_server)
    for tls in (False, True):
        with connect(server, "inbound", tls=tls) as c:
            assert c.cmd(f"MAIL FROM:<{SENDER}>").code == 250
            reply = c.cmd(f"RCPT TO:<{rcpt}>")
            assert (reply.code, reply.enhanced) in REFUSALS or reply.code == 501, (rcpt, reply)
            # With no accepted recipient there is no message to send.
            assert c.cmd("DATA").code in (503, 554)
            assert c.cmd("QUIT").code == 221
    server.assert_nothing_stored()
    log = server.mail_log()
    assert ": accepted " not in log
    assert "stage=rcpt" in log or "stage=command" in log


def test_relay_plain_remote_domain(make_server):
    assert_not_relayed(make_server, "user@remote.test")


def test_relay_percent_hack(make_server):
    assert_not_relayed(make_server, f"user%remote.test@{EXAMPLE}")


def test_relay_source_route(make_server):
    assert_not_relayed(make_server, f"@{EXAMPLE}:user@remote.test")


def test_relay_double_at(make_server):
    assert_not_relayed(make_server, f"user@remote.test@{EXAMPLE}")


def test_relay_quoted_local_part(make_server):
    assert_not_relayed(make_server, f'"user@remote.test"@{EXAMPLE}')


def test_relay_bang_path(make_server):
    assert_not_relayed(make_server, f"remote.test!user@{EXAMPLE}")


def test_relay_trailing_dot(make_server):
    assert_not_relayed(make_server, "user@remote.test.")


def test_relay_ip_literal(make_server):
    assert_not_relayed(make_server, "user@[1.2.3.4]")


def test_relay_ip_literal_loopback(make_server):
    assert_not_relayed(make_server, "user@[127.0.0.1]")


def test_relay_mixed_forms(make_server):
    """A few combinations that have fooled real MTAs."""
    for rcpt in (
        f'"user%remote.test"@{EXAMPLE}',
        f"user%remote.test@{EXAMPLE}.",
        f"@{EXAMPLE},@other.test:user@remote.test",
        "user@REMOTE.test",
        "user@[IPv6:::1]",
    ):
        assert_not_relayed(make_server, rcpt)


def test_relay_forms_to_a_catch_all_domain_are_delivered_locally(make_server):
    """Forms that parse as a local address reach the catch-all mailbox; the mail log
    shows local deliveries only, never a bounce or a remote attempt."""
    server = relay_server(make_server)
    forms = [
        f"user%remote.test@{CATCHALL}",
        f'"user@remote.test"@{CATCHALL}',
        f"remote.test!user@{CATCHALL}",
    ]
    with connect(server, "inbound") as c:
        assert c.cmd(f"MAIL FROM:<{SENDER}>").code == 250
        for rcpt in forms:
            assert c.cmd(f"RCPT TO:<{rcpt}>").code == 250, rcpt
        assert c.cmd("DATA").code == 354
        reply = c.cmd(message("catch-all") + b"\r\n.")
        assert reply.code == 250, reply
        queue_id = queue_id_of(reply.text)
    messages = server.maildir_messages(CATCHALL, "sink", count=1)
    assert messages and b"Subject: catch-all" in messages[0]
    log = wait_for_log(server, f"{queue_id}: delivered")
    assert "bounced" not in log and "deferred" not in log
    boxes = {p.relative_to(server.data_dir / "mail").parts[:2] for p in server.all_mail_files()}
    assert boxes == {(CATCHALL, "sink")}


def test_relay_not_allowed_for_untrusted_network(make_server):
    server = relay_server(make_server, relay={"trusted_networks": ["10.0.0.0/8", "::1/128"]})
    with connect(server, "inbound") as c:
        assert c.cmd(f"MAIL FROM:<{SENDER}>").code == 250
        reply = c.cmd("RCPT TO:<user@remote.test>")
        assert (reply.code, reply.enhanced) == (550, "5.7.1"), reply


def test_trusted_network_may_relay(make_server):
    """relay.trusted_networks = ["127.0.0.1/32"] (Postfix mynetworks): accepted and
    queued without AUTH, then relayed by MX; the test DNS has no remote.test, so
    the delivery fails with 550 5.1.2 and bounces to the (local) sender."""
    server = relay_server(make_server, relay={"trusted_networks": ["127.0.0.1/32"]})
    with connect(server, "inbound", tls=False) as c:
        assert c.cmd(f"MAIL FROM:<alice@{EXAMPLE}>").code == 250
        assert c.cmd("RCPT TO:<user@remote.test>").code == 250
        assert c.cmd("DATA").code == 354
        reply = c.cmd(message("trusted") + b"\r\n.")
        assert reply.code == 250, reply
        queue_id = queue_id_of(reply.text)
    log = wait_for_log(server, f"{queue_id}: bounced to=<user@remote.test>")
    assert "550 5.1.2 Recipient domain not found" in log
    [dsn] = server.maildir_messages(EXAMPLE, "alice")
    assert b"user@remote.test" in dsn


def test_trusted_network_does_not_lift_submission_auth(make_server):
    """Trust is about relaying; the submission role still requires AUTH."""
    server = relay_server(make_server, relay={"trusted_networks": ["127.0.0.1/32"]})
    with connect(server, "submission") as c:
        assert c.cmd(f"MAIL FROM:<alice@{EXAMPLE}>").code == 530
