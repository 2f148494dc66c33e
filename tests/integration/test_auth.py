"""SMTP AUTH (RFC 4954) over real TLS sessions: every mechanism, every refusal.

Users are written to ``users.json`` with cheap argon2/SCRAM parameters before the
in-process server starts.  SCRAM-SHA-256 is also driven by scramp's own ``ScramClient``
(an implementation independent of ours), byte by byte over an ssl-wrapped socket.
"""

from __future__ import annotations

import base64
import time

import pytest
from scramp import ScramClient

from helpers.secure import (
    ALICE,
    BOB,
    PASSWORD,
    WRONG_PASSWORD,
    TlsSMTP,
    b64,
    connect,
    fast_store,
    listeners,
    login,
    plain_blob,
    secure_extra,
    wait_for_log,
    write_users,
)
from helpers.servers import HOST
from mailwright.smtp import codes


def secure_server(make_server, **kwargs):
    return make_server(extra=secure_extra(**kwargs), prepare=write_users)


def code(reply) -> tuple[int, str]:
    return reply.code, reply.enhanced


# -- each mechanism ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("mechanism", "user", "initial"),
    [
        ("PLAIN", ALICE, True),
        ("PLAIN", ALICE, False),
        ("LOGIN", ALICE, False),
        ("CRAM-MD5", BOB, False),
        ("SCRAM-SHA-256", ALICE, True),
        ("SCRAM-SHA-256", BOB, False),
    ],
)
def test_auth_mechanism_succeeds_after_starttls(make_server, mechanism, user, initial):
    server = secure_server(make_server)
    with connect(server, "submission") as c:
        reply = c.sasl(mechanism, user, PASSWORD, initial=initial)
        assert code(reply) == (235, "2.7.0"), reply
        assert c.cmd(f"MAIL FROM:<{user}>").code == 250


def test_auth_login_with_initial_response(make_server):
    """Some clients send the LOGIN username as an initial response."""
    server = secure_server(make_server)
    with connect(server, "submission") as c:
        reply = c.cmd(f"AUTH LOGIN {b64(ALICE)}")
        assert reply.code == 334 and base64.b64decode(reply.lines[0]) == b"Password:"
        assert code(c.cmd(b64(PASSWORD))) == (235, "2.7.0")


def test_auth_on_implicit_tls_port(make_server):
    server = secure_server(make_server)
    with connect(server, "submissions") as c:
        assert code(c.sasl("SCRAM-SHA-256", ALICE, PASSWORD)) == (235, "2.7.0")


def test_scram_sha_256_with_independent_scramp_client(make_server):
    """RFC 7677 with scramp's ScramClient: client-first as initial response, 334
    server-first, client-final, 334 server-final (its signature verified by scramp),
    empty response, 235."""
    server = secure_server(make_server)
    with connect(server, "submission") as c:
        client = ScramClient(["SCRAM-SHA-256"], ALICE, PASSWORD)
        reply = c.cmd(f"AUTH SCRAM-SHA-256 {b64(client.get_client_first())}")
        assert reply.code == 334, reply
        server_first = base64.b64decode(reply.lines[0]).decode()
        assert server_first.startswith("r=") and ",s=" in server_first and ",i=4096" in server_first
        client.set_server_first(server_first)
        reply = c.cmd(b64(client.get_client_final()))
        assert reply.code == 334, reply
        server_final = base64.b64decode(reply.lines[0]).decode()
        assert server_final.startswith("v=")
        client.set_server_final(server_final)  # raises if the server signature is wrong
        assert code(c.cmd("")) == (235, "2.7.0")
        assert c.cmd(f"MAIL FROM:<{ALICE}>").code == 250


def test_scram_sha_256_without_initial_response(make_server):
    server = secure_server(make_server)
    with connect(server, "submission") as c:
        client = ScramClient(["SCRAM-SHA-256"], ALICE, PASSWORD)
        reply = c.cmd("AUTH SCRAM-SHA-256")
        assert reply.code == 334 and reply.lines == ("",), reply
        reply = c.cmd(b64(client.get_client_first()))
        client.set_server_first(base64.b64decode(reply.lines[0]).decode())
        reply = c.cmd(b64(client.get_client_final()))
        client.set_server_final(base64.b64decode(reply.lines[0]).decode())
        assert code(c.cmd("")) == (235, "2.7.0")


def test_scram_sha_256_wrong_password_535(make_server):
    server = secure_server(make_server)
    with connect(server, "submission") as c:
        client = ScramClient(["SCRAM-SHA-256"], ALICE, WRONG_PASSWORD)
        reply = c.cmd(f"AUTH SCRAM-SHA-256 {b64(client.get_client_first())}")
        client.set_server_first(base64.b64decode(reply.lines[0]).decode())
        reply = c.cmd(b64(client.get_client_final()))
        assert code(reply) == (535, "5.7.8"), reply
        assert c.cmd(f"MAIL FROM:<{ALICE}>").code == 530


def test_scram_unknown_user_looks_like_a_wrong_password(make_server):
    """RFC 5802 §5.1: an unknown user gets a normal server-first, with the same salt
    every time (so the salt does not reveal that the user is unknown), and 535 at the
    proof, exactly like a wrong password."""
    server = secure_server(make_server)
    salts = set()
    for _ in range(2):
        with connect(server, "submission") as c:
            client = ScramClient(["SCRAM-SHA-256"], "nobody@example.test", PASSWORD)
            reply = c.cmd(f"AUTH SCRAM-SHA-256 {b64(client.get_client_first())}")
            assert reply.code == 334, reply
            server_first = base64.b64decode(reply.lines[0]).decode()
            salts.add(dict(f.split("=", 1) for f in server_first.split(","))["s"])
            client.set_server_first(server_first)
            assert code(c.cmd(b64(client.get_client_final()))) == (535, "5.7.8")
    assert len(salts) == 1


# -- refusals ------------------------------------------------------------------------


def test_auth_before_tls_is_refused_538(make_server):
    server = secure_server(make_server)
    for role in ("submission", "inbound"):
        with connect(server, role, tls=False, ehlo=False) as c:
            reply = c.ehlo()
            assert not [line for line in reply.lines if line.upper().startswith("AUTH")], reply
            reply = c.cmd(f"AUTH PLAIN {b64(plain_blob(ALICE, PASSWORD))}")
            assert code(reply) == (538, "5.7.11"), reply
            reply = c.cmd("AUTH LOGIN")
            assert code(reply) == (538, "5.7.11"), reply
            # The session goes on, unauthenticated.
            assert c.cmd("NOOP").matches(codes.R250_OK)
    assert "AUTH before TLS" in server.mail_log()


def test_plaintext_auth_only_where_configured_with_a_warning(make_server):
    server = make_server(
        extra=secure_extra(listener=listeners(submission={"allow_plaintext_auth": True})),
        prepare=write_users,
    )
    warnings = [line for line in server.announced if "AUTH without TLS" in line]
    assert warnings == [
        f"mailwright: warning: {HOST}:{server.ports['submission']} offers AUTH without TLS; "
        "passwords can be read on the network"
    ]
    with connect(server, "submission", tls=False) as c:
        assert code(c.sasl("PLAIN", ALICE, PASSWORD)) == (235, "2.7.0")
    with connect(server, "inbound", tls=False) as c:  # other listeners keep the rule
        assert c.cmd(f"AUTH PLAIN {b64(plain_blob(ALICE, PASSWORD))}").code == 538


def test_starttls_forgets_plaintext_auth(make_server):
    """RFC 3207 §4.2: after STARTTLS the client must authenticate again."""
    server = make_server(
        extra=secure_extra(listener=listeners(submission={"allow_plaintext_auth": True})),
        prepare=write_users,
    )
    with connect(server, "submission", tls=False) as c:
        assert c.sasl("PLAIN", ALICE, PASSWORD).code == 235
        c.starttls()
        c.ehlo()
        assert code(c.cmd(f"MAIL FROM:<{ALICE}>")) == (530, "5.7.0")
        assert c.sasl("PLAIN", ALICE, PASSWORD).code == 235  # not a re-AUTH (503)


def test_auth_bad_base64_501(make_server):
    server = secure_server(make_server)
    with connect(server, "submission") as c:
        # In the initial response ...
        assert code(c.cmd("AUTH PLAIN not*base64!")) == (501, "5.5.2")
        # ... and in a response to a challenge; the exchange ends either way, so the
        # next line is a command again, not a SASL response.
        assert c.cmd("AUTH LOGIN").code == 334
        assert code(c.cmd("%%%=")) == (501, "5.5.2")
        assert c.cmd("NOOP").matches(codes.R250_OK)
        assert c.sasl("PLAIN", ALICE, PASSWORD).code == 235


def test_auth_malformed_plain_message_501(make_server):
    server = secure_server(make_server)
    with connect(server, "submission") as c:
        # Valid base64, but not authzid NUL authcid NUL passwd.
        assert code(c.cmd(f"AUTH PLAIN {b64(f'{ALICE}{PASSWORD}')}")) == (501, "5.5.2")
        assert c.cmd("NOOP").matches(codes.R250_OK)


def test_auth_cancelled_501(make_server):
    server = secure_server(make_server)
    with connect(server, "submission") as c:
        assert c.cmd("AUTH LOGIN").code == 334
        assert c.cmd(b64(ALICE)).code == 334
        assert code(c.cmd("*")) == (501, "5.7.0")
        assert c.cmd(f"MAIL FROM:<{ALICE}>").code == 530  # not authenticated
        # SCRAM cancelled after server-first, then a fresh AUTH works.
        client = ScramClient(["SCRAM-SHA-256"], ALICE, PASSWORD)
        assert c.cmd(f"AUTH SCRAM-SHA-256 {b64(client.get_client_first())}").code == 334
        assert code(c.cmd("*")) == (501, "5.7.0")
        assert code(c.sasl("LOGIN", ALICE, PASSWORD)) == (235, "2.7.0")


def test_scram_cancelled_at_server_final_is_not_authenticated(make_server):
    server = secure_server(make_server)
    with connect(server, "submission") as c:
        client = ScramClient(["SCRAM-SHA-256"], ALICE, PASSWORD)
        reply = c.cmd(f"AUTH SCRAM-SHA-256 {b64(client.get_client_first())}")
        client.set_server_first(base64.b64decode(reply.lines[0]).decode())
        assert c.cmd(b64(client.get_client_final())).code == 334
        assert code(c.cmd("*")) == (501, "5.7.0")
        assert c.cmd(f"MAIL FROM:<{ALICE}>").code == 530


def test_reauth_503(make_server):
    server = secure_server(make_server)
    with login(server) as c:
        reply = c.cmd(f"AUTH PLAIN {b64(plain_blob(BOB, PASSWORD))}")
        assert reply.matches(codes.R503_ALREADY_AUTHENTICATED), reply
        assert c.cmd("AUTH LOGIN").code == 503
        # Still alice, not bob: alice's sender address is accepted, bob's is not.
        assert c.cmd(f"MAIL FROM:<{BOB}>").code == 553
        assert c.cmd(f"MAIL FROM:<{ALICE}>").code == 250


def test_bad_credentials_535(make_server):
    server = secure_server(make_server)
    with connect(server, "submission") as c:
        for mechanism, user, password in [
            ("PLAIN", ALICE, WRONG_PASSWORD),
            ("PLAIN", "nobody@example.test", PASSWORD),
            ("LOGIN", ALICE, WRONG_PASSWORD),
            ("CRAM-MD5", BOB, WRONG_PASSWORD),
            ("SCRAM-SHA-256", BOB, WRONG_PASSWORD),
        ]:
            reply = c.sasl(mechanism, user, password)
            assert code(reply) == (535, "5.7.8"), (mechanism, user, reply)
        assert c.cmd(f"MAIL FROM:<{ALICE}>").code == 530


def test_failed_cram_md5_and_scram_log_the_login(make_server):
    """Issue 8, item 9: the login named in the client's response is in the failure
    line (it was ``AUTH failed for ?:``)."""
    server = secure_server(make_server)
    with connect(server, "submission") as c:
        assert code(c.sasl("CRAM-MD5", BOB, WRONG_PASSWORD)) == (535, "5.7.8")
        assert code(c.sasl("SCRAM-SHA-256", ALICE, WRONG_PASSWORD)) == (535, "5.7.8")
    log = wait_for_log(server, "SCRAM: bad credentials")
    assert f"AUTH failed for {BOB}: CRAM-MD5: bad credentials" in log, log
    assert f"AUTH failed for {ALICE}: SCRAM: bad credentials" in log, log
    assert "AUTH failed for ?" not in log


@pytest.mark.parametrize("user", [ALICE, "nobody@example.test"])
def test_cram_md5_without_a_cram_secret_is_534_and_not_a_failure(make_server, user):
    """CRAM-MD5 for a login that has no CRAM-MD5 secret (alice did not opt in; nobody
    does not exist): 534 5.7.9 at once (RFC 4954 §6), no tarpit delay, and not counted:
    with a limit of one failure, the next AUTH still succeeds."""
    # A failure's tarpit far longer than any hiccup of a busy machine (and than the
    # client's read timeout): a reply at all means it was not tarpitted.
    tarpit = 60.0
    server = make_server(
        extra=secure_extra(
            abuse={"auth_max_failures": 1, "auth_base_delay": tarpit, "auth_max_delay": tarpit}
        ),
        prepare=write_users,
    )
    with connect(server, "submission") as c:
        start = time.monotonic()
        reply = c.sasl("CRAM-MD5", user, PASSWORD)
        assert code(reply) == (534, "5.7.9"), reply
        assert time.monotonic() - start < tarpit / 2
        assert code(c.sasl("PLAIN", ALICE, PASSWORD)) == (235, "2.7.0")
    log = wait_for_log(server, "user=alice@example.test")
    assert f"AUTH CRAM-MD5 refused for {user}: no CRAM-MD5 secret" in log, log
    assert "AUTH failed" not in log, log


def test_auth_as_another_user_is_refused_535(make_server):
    """PLAIN's authzid: alice may not act as bob (no proxy authorisation)."""
    server = secure_server(make_server)
    with connect(server, "submission") as c:
        reply = c.cmd(f"AUTH PLAIN {b64(plain_blob(ALICE, PASSWORD, authzid=BOB))}")
        assert code(reply) == (535, "5.7.8")
        reply = c.cmd(f"AUTH PLAIN {b64(plain_blob(ALICE, PASSWORD, authzid=ALICE))}")
        assert code(reply) == (235, "2.7.0")


def test_unknown_mechanism_504(make_server):
    server = secure_server(make_server)
    with connect(server, "submission") as c:
        assert code(c.cmd("AUTH GSSAPI")) == (504, "5.5.4")
        assert code(c.cmd("AUTH SCRAM-SHA-256-PLUS")) == (504, "5.5.4")
        assert c.sasl("PLAIN", ALICE, PASSWORD).code == 235


def test_auth_brute_force_lockout(make_server):
    """Each failure delays the 535 longer; the Nth failure in the window bans the IP:
    AUTH then answers 454 4.7.0 at once, even with the right password and in a new
    session, while the same user from another address (::1) is unaffected."""
    base, cap = 0.15, 0.6
    server = make_server(
        extra=secure_extra(
            abuse={
                "auth_max_failures": 3,
                "auth_window": 60,
                "auth_ban_time": 60,
                "auth_base_delay": base,
                "auth_max_delay": cap,
            },
            listener=[
                *listeners(),
                {"address": "::1", "port": 0, "role": "submission"},
            ],
        ),
        prepare=write_users,
    )
    delays = []
    with connect(server, "submission") as c:
        for _ in range(3):
            start = time.monotonic()
            assert code(c.sasl("PLAIN", ALICE, WRONG_PASSWORD)) == (535, "5.7.8")
            delays.append(time.monotonic() - start)
        # Growing delays: base, 2*base, then the ban's maximum.
        assert delays[0] >= base
        assert delays[1] >= 2 * base and delays[1] > delays[0] + base / 2
        assert delays[2] >= cap and delays[2] > delays[1]
        start = time.monotonic()
        reply = c.cmd(f"AUTH PLAIN {b64(plain_blob(ALICE, PASSWORD))}")
        assert code(reply) == (454, "4.7.0"), reply
        assert time.monotonic() - start < cap  # no password check, no delay
        assert c.cmd(f"MAIL FROM:<{ALICE}>").code == 530
    with connect(server, "submissions") as c:  # a new session, another port: still banned
        assert code(c.sasl("SCRAM-SHA-256", ALICE, PASSWORD)) == (454, "4.7.0")
    v6_port = next(lst.port for lst in server.app.listeners if lst.config.address == "::1")
    with TlsSMTP("::1", v6_port) as c:
        c.greeting()
        c.ehlo()
        c.starttls()
        c.ehlo()
        assert code(c.sasl("PLAIN", ALICE, PASSWORD)) == (235, "2.7.0")
    assert "AUTH from a banned IP" in server.mail_log()


def test_auth_success_resets_the_failure_count(make_server):
    server = make_server(
        extra=secure_extra(abuse={"auth_max_failures": 2, "auth_ban_time": 60}),
        prepare=write_users,
    )
    for _ in range(3):
        with connect(server, "submission") as c:
            assert c.sasl("PLAIN", ALICE, WRONG_PASSWORD).code == 535
            assert c.sasl("PLAIN", ALICE, PASSWORD).code == 235


def test_auth_user_added_after_start_is_seen(make_server):
    """The server re-reads users.json when it changes (no restart needed)."""
    server = secure_server(make_server)
    with connect(server, "submission") as c:
        assert c.sasl("PLAIN", "carol@example.test", PASSWORD).code == 535
    fast_store(server.data_dir).add("carol@example.test", PASSWORD)
    with connect(server, "submission") as c:
        assert c.sasl("PLAIN", "carol@example.test", PASSWORD).code == 235
