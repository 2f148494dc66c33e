"""STARTTLS (RFC 3207) and implicit TLS (RFC 8314) in real sessions.

One in-process server per test with a listener of each role and the generated
self-signed certificate; clients are raw sockets (``TlsSMTP``) that see every byte,
or stdlib smtplib.  The CVE-2011-0411 class (plaintext injected behind STARTTLS) has
named regression tests.
"""

from __future__ import annotations

import re
import smtplib
import ssl
import time
import warnings

from helpers.procs import wait_until
from helpers.secure import (
    ALICE,
    BOB,
    PASSWORD,
    TlsSMTP,
    b64,
    client_context,
    connect,
    plain_blob,
    secure_extra,
    wait_for_log,
    write_users,
)
from helpers.servers import EXAMPLE, HOST
from helpers.wire import CLIENT_NAME, message, queue_id_of
from mailwright.smtp import codes

RECEIVED_TLS_RE = re.compile(rb"with (ESMTP\w*) \((TLSv1\.[23]) ([A-Z0-9_-]+)\) id ([0-9A-Z]{16})")


def secure_server(make_server, **kwargs):
    return make_server(extra=secure_extra(**kwargs), prepare=write_users)


def ehlo_keywords(reply) -> set[str]:
    return {line.split(" ", 1)[0].upper() for line in reply.lines[1:]}


def test_starttls_offered_on_inbound_and_submission_only(make_server):
    server = secure_server(make_server)
    for role in ("inbound", "submission"):
        with connect(server, role, tls=False, ehlo=False) as c:
            assert "STARTTLS" in ehlo_keywords(c.ehlo())
    with connect(server, "submissions", ehlo=False) as c:
        keywords = ehlo_keywords(c.ehlo())
        assert "STARTTLS" not in keywords  # already TLS from the first byte
        assert "AUTH" in keywords
        assert c.tls.version() in ("TLSv1.2", "TLSv1.3")


def test_starttls_then_ehlo_offers_auth_not_starttls(make_server):
    server = secure_server(make_server)
    with connect(server, "submission", ehlo=False) as c:
        reply = c.ehlo()
        keywords = ehlo_keywords(reply)
        assert "STARTTLS" not in keywords
        [auth] = [line for line in reply.lines if line.upper().startswith("AUTH ")]
        assert set(auth.split()[1:]) == {"PLAIN", "LOGIN", "CRAM-MD5", "SCRAM-SHA-256"}


def test_starttls_plaintext_injection(make_server):
    """CVE-2011-0411: commands pipelined behind STARTTLS in the same packet are
    plaintext an attacker could have inserted; they must never be executed, and
    after the handshake the session starts over (EHLO required, no transaction)."""
    assert_injection_ignored(secure_server(make_server))


def test_starttls_plaintext_injection_under_uvloop(make_subprocess_server):
    """The same against ``mailwright serve``, which runs on uvloop (transports differ)."""
    assert_injection_ignored(make_subprocess_server(extra=secure_extra()))


def assert_injection_ignored(server) -> None:
    with TlsSMTP(HOST, server.ports["inbound"]) as c:
        c.greeting()
        c.ehlo()
        c.send(
            b"STARTTLS\r\nMAIL FROM:<evil@remote.test>\r\nRCPT TO:<alice@example.test>\r\nDATA\r\n"
        )
        reply = c.reply()
        assert (reply.code, reply.enhanced) == (220, "2.0.0"), reply
        # Nothing else is answered in plaintext: the server waits for our ClientHello.
        assert c.silent_for(0.3)
        c.wrap()
        # The first reply under TLS answers our NOOP, not the injected MAIL/RCPT/DATA.
        reply = c.cmd("NOOP")
        assert reply.matches(codes.R250_OK), reply
        # The session is back to "EHLO required" ...
        reply = c.cmd("MAIL FROM:<alice@example.test>")
        assert reply.matches(codes.R503_SEND_HELO_FIRST), reply
        c.ehlo()
        # ... and the injected MAIL was not kept as a transaction.
        assert c.cmd("RCPT TO:<alice@example.test>").matches(codes.R503_NEED_MAIL)
        assert c.cmd("DATA").code == 503
        assert c.cmd("QUIT").code == 221
    server.assert_nothing_stored()
    assert "evil@remote.test" not in server.mail_log()


def test_ehlo_sent_with_the_last_handshake_message_is_answered(make_server):
    """A TLS 1.3 client may send its first command in the same write as its last
    handshake message (Finished).  The server's TLS layer then hands the EHLO to the
    session before it reports the handshake complete; the session took it for plaintext
    injected behind STARTTLS and dropped it, and the client waited for a reply until it
    timed out (89 of 100 parallel smtplib STARTTLS sessions under load)."""
    assert_first_command_kept(secure_server(make_server))


def test_ehlo_sent_with_the_last_handshake_message_is_answered_under_uvloop(
    make_subprocess_server,
):
    """The same against ``mailwright serve`` on uvloop, whose TLS layer hands the EHLO
    over after reporting the handshake (the race did not show there): the plaintext
    boundary (``begin_tls``) must hold on that transport too."""
    assert_first_command_kept(make_subprocess_server(extra=secure_extra()))


def assert_first_command_kept(server) -> None:
    with TlsSMTP(HOST, server.ports["inbound"]) as c:
        c.greeting()
        c.ehlo()
        assert c.cmd("STARTTLS").code == 220
        context = client_context()
        context.minimum_version = ssl.TLSVersion.TLSv1_3
        incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        tls = context.wrap_bio(incoming, outgoing)
        while True:
            try:
                tls.do_handshake()
                break
            except ssl.SSLWantReadError:
                c.sock.sendall(outgoing.read())
                data = c.sock.recv(65536)
                assert data, "the server closed during the handshake"
                incoming.write(data)
        # Our Finished is still in `outgoing`: the EHLO goes in the same write.
        tls.write(f"EHLO {CLIENT_NAME}\r\n".encode())
        c.sock.sendall(outgoing.read())
        received = b""
        while not re.search(rb"(^|\r\n)250 ", received):
            try:
                received += tls.read(65536)
                continue
            except ssl.SSLWantReadError:
                pass
            data = c.sock.recv(65536)  # READ_TIMEOUT: the old server never answered
            assert data, f"closed before the EHLO was answered: {received!r}"
            incoming.write(data)
        assert received.startswith(b"250-"), received
        assert b"STARTTLS" not in received  # answered under TLS


def test_starttls_plaintext_injection_of_auth(make_server):
    """Injected ``AUTH`` behind STARTTLS on the submission port neither authenticates
    the session nor is answered; MAIL after the handshake still needs AUTH (530)."""
    server = secure_server(make_server)
    blob = b64(plain_blob(ALICE, PASSWORD))
    with TlsSMTP(HOST, server.ports["submission"]) as c:
        c.greeting()
        c.ehlo()
        c.send(f"STARTTLS\r\nEHLO evil.test\r\nAUTH PLAIN {blob}\r\n".encode())
        assert c.reply().code == 220
        assert c.silent_for(0.3)
        c.wrap()
        c.ehlo()
        reply = c.cmd(f"MAIL FROM:<{ALICE}>")
        assert (reply.code, reply.enhanced) == (530, "5.7.0"), reply
        # The session is not in an AUTH exchange either: a real AUTH works normally.
        assert c.cmd(f"AUTH PLAIN {blob}").code == 235


def test_starttls_twice_503(make_server):
    server = secure_server(make_server)
    with connect(server, "inbound") as c:
        reply = c.cmd("STARTTLS")
        assert reply.matches(codes.R503_TLS_ACTIVE), reply
        # The session goes on under the first TLS layer.
        assert c.cmd("NOOP").matches(codes.R250_OK)


def test_starttls_on_implicit_tls_port_503(make_server):
    server = secure_server(make_server)
    with connect(server, "submissions") as c:
        assert c.cmd("STARTTLS").matches(codes.R503_TLS_ACTIVE)
        assert c.cmd("NOOP").matches(codes.R250_OK)


def test_starttls_with_argument_is_refused(make_server):
    server = secure_server(make_server)
    with connect(server, "inbound", tls=False) as c:
        reply = c.cmd("STARTTLS now")
        assert reply.code == 501, reply
        assert c.cmd("NOOP").matches(codes.R250_OK)  # still plaintext, still talking


def test_failed_handshake_closes_only_that_session(make_server):
    server = secure_server(make_server)
    with TlsSMTP(HOST, server.ports["inbound"]) as c:
        c.greeting()
        c.ehlo()
        assert c.cmd("STARTTLS").code == 220
        c.send(b"this is not a TLS ClientHello\r\n" * 4)
        assert c.closed_by_peer(5)
    with connect(server, "inbound") as c:  # the server is fine
        assert c.cmd("NOOP").matches(codes.R250_OK)
    wait_for_log(server, "TLS handshake failed")


def test_plaintext_client_on_implicit_tls_port_gets_nothing(make_server):
    server = secure_server(make_server)
    with TlsSMTP(HOST, server.ports["submissions"]) as c:
        # No plaintext greeting: the server waits for a ClientHello.
        assert c.silent_for(0.3)
        c.send(b"EHLO client.test\r\n")
        assert c.closed_by_peer(5)
        assert b"220" not in c.buf


def test_tls_1_1_client_is_refused(make_server):
    """TLS 1.2 minimum (RFC 8996): a client that can do at most TLS 1.1 (and is
    allowed to by its own OpenSSL security level) fails the handshake at the server."""
    server = secure_server(make_server)
    ctx = client_context()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        ctx.minimum_version = ssl.TLSVersion.TLSv1
        ctx.maximum_version = ssl.TLSVersion.TLSv1_1
    ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
    conn = TlsSMTP(HOST, server.ports["inbound"])
    try:
        conn.greeting()
        conn.ehlo()
        assert conn.cmd("STARTTLS").code == 220
        try:
            conn.wrap(ctx)
        except (ssl.SSLError, OSError):
            pass
        else:  # pragma: no cover - would be a security bug
            raise AssertionError(f"TLS 1.1 handshake succeeded: {conn.tls.version()}")
    finally:
        conn.close()
    log = wait_for_log(server, "TLS handshake failed")
    assert "UNSUPPORTED_PROTOCOL" in log or "version" in log.lower(), log


def _submit_and_read_received(server, smtp) -> tuple[re.Match[bytes], str, str]:
    version, cipher = smtp.sock.version(), smtp.sock.cipher()[0]
    smtp.login(ALICE, PASSWORD)
    code, text = smtp.docmd("MAIL FROM:<alice@example.test>")
    assert code == 250, text
    assert smtp.docmd("RCPT TO:<bob@example.test>")[0] == 250
    code, text = smtp.data(message("tls received"))
    assert code == 250, text
    queue_id = queue_id_of(text)
    msg = server.message_with_id(EXAMPLE, "bob", queue_id)
    match = RECEIVED_TLS_RE.search(msg)
    assert match, msg[:400]
    assert match.group(4).decode() == queue_id
    return match, version, cipher


def test_received_header_names_esmtpsa_and_tls_after_starttls(make_server):
    server = secure_server(make_server)
    with smtplib.SMTP(HOST, server.ports["submission"], CLIENT_NAME, timeout=10) as smtp:
        smtp.starttls(context=client_context())
        smtp.ehlo()
        match, version, cipher = _submit_and_read_received(server, smtp)
    assert match.group(1) == b"ESMTPSA"
    assert match.group(2).decode() == version
    assert match.group(3).decode() == cipher


def test_received_header_names_esmtpsa_and_tls_on_implicit_tls(make_server):
    server = secure_server(make_server)
    with smtplib.SMTP_SSL(
        HOST, server.ports["submissions"], CLIENT_NAME, timeout=10, context=client_context()
    ) as smtp:
        smtp.ehlo()
        match, version, cipher = _submit_and_read_received(server, smtp)
    assert match.group(1) == b"ESMTPSA"
    assert (match.group(2).decode(), match.group(3).decode()) == (version, cipher)


def test_received_header_esmtps_without_auth_on_inbound(make_server):
    server = secure_server(make_server)
    with connect(server, "inbound") as c:
        assert c.cmd("MAIL FROM:<sender@remote.test>").code == 250
        assert c.cmd(f"RCPT TO:<{BOB}>").code == 250
        assert c.cmd("DATA").code == 354
        reply = c.cmd(message("inbound tls") + b"\r\n.")
        assert reply.code == 250, reply
        version, cipher = c.tls.version(), c.tls.cipher()[0]
    msg = server.message_with_id(EXAMPLE, "bob", queue_id_of(reply.text))
    match = RECEIVED_TLS_RE.search(msg)
    assert match, msg[:400]
    assert match.groups()[:3] == (b"ESMTPS", version.encode(), cipher.encode())


def test_mail_log_records_tls_version_and_cipher(make_server):
    """The issue: TLS details go into the Received header *and the log*.  For each
    session that negotiated TLS (STARTTLS or implicit) the mail log has a ``tls``
    line, with the session id the ``accepted`` line refers to."""
    server = secure_server(make_server)
    seen = []
    for role in ("submission", "submissions"):
        with connect(server, role) as c:
            assert c.sasl("PLAIN", ALICE, PASSWORD).code == 235
            assert c.cmd(f"MAIL FROM:<{ALICE}>").code == 250
            assert c.cmd(f"RCPT TO:<{BOB}>").code == 250
            assert c.cmd("DATA").code == 354
            reply = c.cmd(message(f"log {role}") + b"\r\n.")
            assert reply.code == 250, reply
            seen.append((queue_id_of(reply.text), c.tls.version(), c.tls.cipher()[0]))
    for queue_id, version, cipher in seen:
        log = wait_for_log(server, f"{queue_id}: accepted")
        [accepted] = [ln for ln in log.splitlines() if f"{queue_id}: accepted" in ln]
        session = re.search(r"session=(\w+)", accepted)
        assert session, accepted
        tls_lines = [ln for ln in log.splitlines() if f"{session.group(1)}: tls " in ln]
        assert len(tls_lines) == 1, log
        assert f"version={version}" in tls_lines[0] and f"cipher={cipher}" in tls_lines[0]


def test_tls_sessions_leave_no_warnings_on_stderr(make_subprocess_server):
    """Closing a TLS session must not make asyncio warn ("returning true from
    eof_received() has no effect when using ssl"): one line per TLS client on the
    server's standard error is noise that buries real problems."""
    server = make_subprocess_server(extra=secure_extra())
    for role in ("inbound", "submissions"):
        with connect(server, role) as c:
            assert c.cmd("QUIT").code == 221
            assert c.closed_by_peer(5)
    with connect(server, "inbound") as c:  # the client just goes away
        c.tls.unwrap()
    # Each session logs its end after the server handled the client's close.
    assert wait_until(server.sessions_ended, 5), server.mail_log()
    assert server.terminate() == 0
    assert "eof_received" not in server.stderr(), server.stderr()


def test_quit_under_tls_is_answered_and_closed_without_delay(make_server):
    """Regression: the plaintext close sends the 221 corked with the FIN (TCP_CORK).
    Under TLS the close waits for the client's close_notify, so a corked 221 and
    close_notify sat in the kernel for its 200 ms cork timer: TLS sessions/s fell 3×."""
    server = secure_server(make_server)
    took = []
    for role in ("submissions", "inbound", "submissions", "inbound", "submissions"):
        conn = connect(server, role)  # implicit TLS, or STARTTLS on inbound
        try:
            started = time.monotonic()
            assert conn.cmd("QUIT").code == 221
            assert conn.closed_by_peer(timeout=5)
            took.append(time.monotonic() - started)
        finally:
            conn.close()
    took.sort()
    assert took[len(took) // 2] < 0.12, took  # the cork timer alone is 0.2 s
