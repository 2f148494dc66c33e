"""``mailwright serve`` relaying to a second ``mailwright serve``: the whole path as an
operator runs it — a trusted client submits, the queue routes by MX (loopback DNS)
or through a smarthost with AUTH, the next hop stores the mail in its Maildir.

The receiving server listens on 127.0.0.N at the port ``[outbound] port`` names.
"""

from __future__ import annotations

import smtplib

import pytest

from helpers.dnsserver import LoopbackDns, MakeDns
from helpers.relaykit import free_shared_port
from helpers.secure import (
    ALICE,
    FAST_ABUSE,
    PASSWORD,
    WRONG_PASSWORD,
    wait_for_log,
    write_users,
)
from helpers.servers import DELIVERY_TIMEOUT, HOST, HOSTNAME
from helpers.wire import message

ZONE = """
$ORIGIN test.
$TTL 300
@ IN SOA ns.test. hostmaster.test. 1 3600 600 86400 60
remote          IN MX 10 mx.remote
mx.remote       IN A 127.0.0.11
mx.example      IN A 127.0.0.11
"""
NEXT_HOP = "127.0.0.11"
SMARTHOST = "127.0.0.12"
CAROL = "carol@remote.test"
WORKER_TIMEOUT = 30.0  # s for a subprocess server's delivery worker to relay


@pytest.fixture
def dns(loopback_dns: MakeDns) -> LoopbackDns:
    return loopback_dns(ZONE)


def receiver(make_server, address: str, port: int, role: str = "inbound", **kw):
    """A second server, the next hop: ``remote.test`` is its local domain."""
    extra = {
        "domain": [{"name": "remote.test", "mailboxes": ["carol"]}],
        "listener": [{"address": address, "port": port, "role": role}],
        "abuse": FAST_ABUSE,
        **kw,
    }
    return make_server(extra=extra, prepare=write_users)


def sender(make_server, dns: LoopbackDns, port: int, **outbound):
    """The relaying server: trusts 127.0.0.1 to relay (the RelayAccess hook)."""
    return make_server(
        extra={
            "relay": {"trusted_networks": ["127.0.0.1/32"]},
            "dns": {"nameservers": [dns.nameserver]},
            "outbound": {"port": port, "allow_private_addresses": True, **outbound},
        }
    )


def submit(server, rcpt: str, subject: str, mail_from: str = "alice@example.test") -> None:
    with smtplib.SMTP(HOST, server.port, local_hostname="client.test", timeout=10) as client:
        refused = client.sendmail(mail_from, [rcpt], message(subject))
    assert refused == {}


def test_relayed_by_mx_into_the_next_hops_maildir(make_server, dns):
    port = free_shared_port([NEXT_HOP])
    next_hop = receiver(make_server, NEXT_HOP, port)
    relay = sender(make_server, dns, port)
    submit(relay, CAROL, "by mx")
    (stored,) = next_hop.maildir_messages("remote.test", "carol")
    assert b"Subject: by mx" in stored
    # Both hops added their trace field (RFC 5321 §4.4): ours, then the next hop's.
    assert stored.count(b"Received: ") >= 2
    relay.wait_settled()
    line = next(x for x in relay.mail_log().splitlines() if " delivered to=" in x)
    assert f"to=<{CAROL}>" in line
    assert f"relay=mx.remote.test[{NEXT_HOP}]:{port}" in line
    assert "tls=may (default" in line and "TLSv1." in line  # the policy, why, and the TLS
    assert relay.queue_rows() == 0


def test_smarthost_with_auth(make_server, dns, tmp_path):
    port = free_shared_port([SMARTHOST])
    smarthost = receiver(make_server, SMARTHOST, port, role="submission")
    secret = tmp_path / "smarthost.password"
    secret.write_text(PASSWORD + "\n")
    relay = sender(
        make_server,
        dns,
        25,  # the MX port is not used: the relayhost names its own
        relayhost=f"[{SMARTHOST}]:{port}",
        username=ALICE,
        password_file=str(secret),
    )
    submit(relay, CAROL, "via smarthost")
    (stored,) = smarthost.maildir_messages("remote.test", "carol")
    assert b"Subject: via smarthost" in stored
    smarthost.wait_settled()
    assert f"user={ALICE}" in smarthost.mail_log()
    assert dns.queries == []  # "[host]:port": no MX lookup, no address lookup


def test_smarthost_refusing_the_login_defers_not_bounces(make_server, dns, tmp_path):
    port = free_shared_port([SMARTHOST])
    receiver(make_server, SMARTHOST, port, role="submission")
    secret = tmp_path / "smarthost.password"
    secret.write_text(WRONG_PASSWORD + "\n")
    relay = sender(
        make_server,
        dns,
        25,
        relayhost=f"[{SMARTHOST}]:{port}",
        username=ALICE,
        password_file=str(secret),
    )
    submit(relay, CAROL, "wrong password")
    log = wait_for_log(relay, " deferred to=", DELIVERY_TIMEOUT)
    # Postfix smtp_sasl_auth_soft_bounce: the mail waits for the login to be fixed.
    assert " bounced " not in log
    line = next(x for x in log.splitlines() if " deferred to=" in x)
    assert 'reply="435 4.7.8' in line  # the smarthost's 535 5.7.8, softened
    assert f"relay={SMARTHOST}[{SMARTHOST}]:{port}" in line


def test_transport_tls_verify_defers_without_trust_then_delivers_with_ca_file(make_server, dns):
    """``tls = "verify"``: the next hop's self-signed certificate is not trusted, so
    the mail is deferred (451 4.7.5), never sent in plaintext instead; with that
    certificate as ``[outbound] ca_file`` the same route delivers, over TLS."""
    port = free_shared_port([NEXT_HOP])
    next_hop = receiver(make_server, NEXT_HOP, port)
    # The receiver's self-signed certificate names its smtp.hostname, mx.example.test.
    transport = {
        "domain": "remote.test",
        "nexthop": f"smtp:[{HOSTNAME}]:{port}",
        "tls": "verify",
    }
    untrusting = make_server(
        extra={
            "relay": {"trusted_networks": ["127.0.0.1/32"]},
            "dns": {"nameservers": [dns.nameserver]},
            "outbound": {"port": port, "allow_private_addresses": True},
            "transport": [transport],
        }
    )
    submit(untrusting, CAROL, "verify without trust")
    log = wait_for_log(untrusting, " deferred to=", DELIVERY_TIMEOUT)
    line = next(x for x in log.splitlines() if " deferred to=" in x)
    assert 'reply="451 4.7.5' in line and "tls=verify (transport" in line, line
    assert next_hop.message_files("remote.test", "carol") == []

    trusting = make_server(
        extra={
            "relay": {"trusted_networks": ["127.0.0.1/32"]},
            "dns": {"nameservers": [dns.nameserver]},
            "outbound": {
                "port": port,
                "allow_private_addresses": True,
                "ca_file": str(next_hop.data_dir / "tls" / "selfsigned.crt"),
            },
            "transport": [transport],
        }
    )
    submit(trusting, CAROL, "verify with trust")
    (stored,) = next_hop.maildir_messages("remote.test", "carol")
    assert b"Subject: verify with trust" in stored
    log = wait_for_log(trusting, " delivered to=", DELIVERY_TIMEOUT)
    line = next(x for x in log.splitlines() if " delivered to=" in x)
    assert "tls=verify" in line and "TLSv1." in line, line


def test_relayed_by_the_delivery_worker_of_a_real_serve(make_server, make_subprocess_server, dns):
    """The production process model: ``mailwright serve -c`` in a subprocess, its
    queue run by the delivery worker process under uvloop, relays by MX like the
    in-process one.  Regression: the outbound channel asserted ``isinstance(transport,
    asyncio.Transport)``, which uvloop's transports are not, so every relayed message
    died in ``connection_made`` in the real server."""
    port = free_shared_port([NEXT_HOP])
    next_hop = receiver(make_server, NEXT_HOP, port)
    relay = make_subprocess_server(
        extra={
            "relay": {"trusted_networks": ["127.0.0.1/32"]},
            "dns": {"nameservers": [dns.nameserver]},
            "outbound": {"port": port, "allow_private_addresses": True},
        }
    )
    submit(relay, CAROL, "from the worker")
    # The worker runs at idle CPU priority (delivery.worker_idle): give it time on a
    # busy machine.
    (stored,) = next_hop.maildir_messages("remote.test", "carol", timeout=WORKER_TIMEOUT)
    assert b"Subject: from the worker" in stored
    log = wait_for_log(relay, " delivered to=", WORKER_TIMEOUT)
    line = next(x for x in log.splitlines() if " delivered to=" in x)
    assert f"relay=mx.remote.test[{NEXT_HOP}]:{port}" in line
    assert "TLSv1." in line  # STARTTLS under uvloop too
