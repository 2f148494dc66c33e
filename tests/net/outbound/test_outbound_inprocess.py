"""The outbound session against a real in-process mailwright server: delivery into its
Maildirs, PIPELINING, CHUNKING, DSN parameters in its stored envelope, SMTPUTF8,
connection reuse, STARTTLS under each policy, AUTH on a submission listener."""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import pytest
import trustme

from helpers.outbound import message, run, settings
from helpers.secure import ALICE, PASSWORD, WRONG_PASSWORD, secure_extra, write_users
from helpers.servers import EXAMPLE, UTF8_BOX, InProcessServer
from mailwright.net.outbound import (
    Credentials,
    OutboundSession,
    OutgoingRecipient,
    Peer,
    SessionError,
    Stage,
    TlsMode,
    TlsPolicy,
)
from mailwright.net.outbound.transaction import BDAT_CHUNK_SIZE
from mailwright.spool.model import BodyType

NO_TLS = TlsPolicy(TlsMode.NONE)
MX_NAME = "mx.example.test"


def peer(server: InProcessServer, role: str = "inbound", host: str = MX_NAME) -> Peer:
    return Peer(host, "127.0.0.1", server.ports[role])


def stages(entries: tuple) -> list[str]:  # type: ignore[type-arg]
    return [e.stage.value for e in entries]


def test_message_delivered_over_pipelined_data(server: InProcessServer) -> None:
    data = message("alice@example.test", "bob@example.test").body

    async def main():  # type: ignore[no-untyped-def]
        session = await OutboundSession.open(peer(server), settings(use_chunking=False), NO_TLS)
        result = await session.send(message("alice@example.test", "bob@example.test"))
        await session.quit()
        return session, result

    session, result = run(main())
    assert [r.reply.code for r in result.recipients] == [250, 250]
    assert all(r.delivered and not r.permanent for r in result.recipients)
    assert result.usable and result.mail_reply is not None and result.mail_reply.code == 250
    assert stages(result.transcript) == ["mail", "rcpt", "rcpt", "data", "message"]
    assert result.transcript[0].command.startswith("MAIL FROM:<alice@example.test> SIZE=")
    assert stages(session.transcript)[:2] == ["greeting", "ehlo"]
    assert stages(session.transcript)[-1] == "quit"
    assert "PIPELINING" in result.info.extensions and result.info.tls_version is None
    for box in ("alice", "bob"):
        stored = server.maildir_messages(EXAMPLE, box)
        assert len(stored) == 1 and stored[0].endswith(data.replace(b"\r\n", b"\n"))


def test_chunking_sends_bdat_chunks(server: InProcessServer) -> None:
    text = b"".join(b"line %06d with some text to fill the chunk\r\n" % i for i in range(5000))
    data = message(data=None).body + text
    assert len(data) > 2 * BDAT_CHUNK_SIZE

    async def main():  # type: ignore[no-untyped-def]
        session = await OutboundSession.open(peer(server), settings(), NO_TLS)
        result = await session.send(message("alice@example.test", data=data))
        await session.quit()
        return result

    result = run(main())
    assert result.recipients[0].reply.code == 250
    chunks = len(data) // BDAT_CHUNK_SIZE + 1
    assert stages(result.transcript) == ["mail", "rcpt"] + ["bdat"] * (chunks - 1) + ["message"]
    assert result.transcript[-1].command == f"BDAT {len(data) % BDAT_CHUNK_SIZE} LAST"
    stored = server.maildir_messages(EXAMPLE, "alice")[0]
    assert stored.endswith(data.replace(b"\r\n", b"\n"))


def test_two_messages_on_one_connection(server: InProcessServer) -> None:
    async def main():  # type: ignore[no-untyped-def]
        session = await OutboundSession.open(peer(server), settings(), NO_TLS)
        first = await session.send(message("alice@example.test", data=message().body + b"one\r\n"))
        assert await session.reset()  # the idle-connection check before reuse
        second = await session.send(message("bob@example.test", data=message().body + b"two\r\n"))
        await session.quit()
        assert not await session.reset()  # closed: nothing to reuse
        return session, first, second

    session, first, second = run(main())
    # The session keeps its opening and the last transaction (the first is in its result).
    assert stages(session.transcript) == ["greeting", "ehlo", "mail", "rcpt", "message", "quit"]
    assert stages(first.transcript) == ["mail", "rcpt", "message"]
    assert first.usable and first.recipients[0].delivered and second.recipients[0].delivered
    assert server.maildir_messages(EXAMPLE, "alice")[0].endswith(b"one\n")
    assert server.maildir_messages(EXAMPLE, "bob")[0].endswith(b"two\n")
    server.wait_settled()
    log = server.mail_log()
    assert log.count(": connect client=") == 1 and log.count(": accepted from=") == 2


def test_dsn_parameters_reach_the_stored_envelope(server: InProcessServer) -> None:
    # A file where bob's Maildir should be: delivery to bob fails (temporarily) and
    # his envelope stays in the queue for the test to read.
    shutil.rmtree(server.maildir(EXAMPLE, "bob"))
    server.maildir(EXAMPLE, "bob").write_bytes(b"not a maildir")
    rcpt = OutgoingRecipient(
        "bob@example.test", ("SUCCESS", "DELAY"), "rfc822;bob+orig@example.org"
    )

    async def main():  # type: ignore[no-untyped-def]
        session = await OutboundSession.open(peer(server), settings(), NO_TLS)
        result = await session.send(message(rcpt, ret="HDRS", envid="env id+1"))
        await session.quit()
        return result

    result = run(main())
    assert result.recipients[0].delivered and result.recipients[0].dsn_passed
    db = sqlite3.connect(server.data_dir / "spool" / "queue.db")
    try:
        assert db.execute("SELECT ret, envid FROM messages").fetchall() == [("HDRS", "env id+1")]
        assert db.execute("SELECT address, notify, orcpt FROM recipients").fetchall() == [
            ("bob@example.test", "SUCCESS,DELAY", "rfc822;bob+orig@example.org")
        ]
    finally:
        db.close()


def test_smtputf8_message(server: InProcessServer) -> None:
    data = message().body.replace(b"Subject: outbound test", "Subject: grüße".encode())

    async def main():  # type: ignore[no-untyped-def]
        session = await OutboundSession.open(peer(server), settings(), NO_TLS)
        result = await session.send(
            message(
                f"{UTF8_BOX}@{EXAMPLE}",
                mail_from="jösé@example.org",
                data=data,
                smtputf8=True,
                body_type=BodyType.EIGHT_BIT_MIME,
            )
        )
        await session.quit()
        return result

    result = run(main())
    assert result.recipients[0].delivered, result.recipients
    assert (
        " SMTPUTF8" in result.transcript[0].command
        and "BODY=8BITMIME" in result.transcript[0].command
    )
    stored = server.maildir_messages(EXAMPLE, UTF8_BOX)[0]
    assert b"Return-Path: <j\xc3\xb6s\xc3\xa9@example.org>" in stored and stored.endswith(
        data.replace(b"\r\n", b"\n")
    )


@pytest.mark.parametrize("mode", [TlsMode.OPPORTUNISTIC, TlsMode.ENCRYPT])
def test_unverified_tls_with_a_self_signed_certificate(
    server: InProcessServer, mode: TlsMode
) -> None:
    async def main():  # type: ignore[no-untyped-def]
        session = await OutboundSession.open(peer(server), settings(), TlsPolicy(mode))
        result = await session.send(message("alice@example.test"))
        await session.quit()
        return session, result

    session, result = run(main())
    assert result.recipients[0].delivered
    assert result.info.tls_version in ("TLSv1.2", "TLSv1.3") and result.info.tls_cipher
    assert result.info.policy is not None and result.info.policy.mode is mode
    # EHLO twice: RFC 3207 §4.2, and STARTTLS is no longer offered over TLS.
    assert stages(session.transcript)[:4] == ["greeting", "ehlo", "starttls", "ehlo"]
    assert "STARTTLS" not in result.info.extensions
    server.wait_settled()
    assert f"version={result.info.tls_version}" in server.mail_log()


def test_verify_fails_on_a_self_signed_certificate(server: InProcessServer) -> None:
    with pytest.raises(SessionError) as caught:
        run(OutboundSession.open(peer(server), settings(), TlsPolicy(TlsMode.VERIFY)))
    err = caught.value
    assert err.stage is Stage.TLS and err.temporary
    assert "certificate verify failed" in err.reason
    assert (err.result_reply.code, err.result_reply.enhanced) == (451, "4.7.5")


@pytest.fixture
def ca() -> trustme.CA:
    return trustme.CA()


def _trusted_server(make_server, ca: trustme.CA, tmp_path: Path):  # type: ignore[no-untyped-def]
    leaf = ca.issue_cert(MX_NAME, "*.example.test")
    cert, key, ca_file = tmp_path / "mx.crt", tmp_path / "mx.key", tmp_path / "ca.pem"
    leaf.cert_chain_pems[0].write_to_path(str(cert))
    leaf.private_key_pem.write_to_path(str(key))
    ca.cert_pem.write_to_path(str(ca_file))
    tls = {"certificates": [{"cert": str(cert), "key": str(key)}]}
    return make_server(extra=secure_extra(tls=tls), prepare=write_users), ca_file


def test_verify_with_a_trusted_ca_and_a_wildcard(make_server, ca, tmp_path) -> None:  # type: ignore[no-untyped-def]
    server, ca_file = _trusted_server(make_server, ca, tmp_path)
    policy = TlsPolicy(TlsMode.VERIFY, "transport", match_names=("mx2.example.test",))

    async def main():  # type: ignore[no-untyped-def]
        session = await OutboundSession.open(peer(server), settings(ca_file=ca_file), policy)
        result = await session.send(message("alice@example.test"))
        await session.quit()
        return result

    result = run(main())
    assert result.recipients[0].delivered and result.info.tls_version


def test_verify_fails_on_the_wrong_name(make_server, ca, tmp_path) -> None:  # type: ignore[no-untyped-def]
    server, ca_file = _trusted_server(make_server, ca, tmp_path)
    policy = TlsPolicy(TlsMode.VERIFY, match_names=("mx.example.org", "a.b.example.test"))
    with pytest.raises(SessionError) as caught:
        run(OutboundSession.open(peer(server), settings(ca_file=ca_file), policy))
    assert caught.value.stage is Stage.TLS and caught.value.temporary
    assert caught.value.reason == "certificate does not match mx.example.org, a.b.example.test"


def test_peer_check_failure_fails_the_session(make_server, ca, tmp_path) -> None:  # type: ignore[no-untyped-def]
    server, _ca_file = _trusted_server(make_server, ca, tmp_path)
    seen: list[str | None] = []

    def check(ssl_object):  # type: ignore[no-untyped-def]
        seen.append(ssl_object.version())
        return "no TLSA record matches"

    policy = TlsPolicy(TlsMode.DANE, "dane", peer_check=check)
    with pytest.raises(SessionError) as caught:
        run(OutboundSession.open(peer(server), settings(), policy))
    assert caught.value.reason == "no TLSA record matches" and seen and seen[0]


@pytest.mark.parametrize(
    ("mechanisms", "used"), [((), "SCRAM-SHA-256"), (("PLAIN",), "PLAIN"), (("LOGIN",), "LOGIN")]
)
def test_auth_over_tls_on_submission(make_server, ca, tmp_path, mechanisms, used) -> None:  # type: ignore[no-untyped-def]
    server, ca_file = _trusted_server(make_server, ca, tmp_path)
    creds = Credentials(ALICE, PASSWORD, mechanisms=mechanisms)

    async def main():  # type: ignore[no-untyped-def]
        session = await OutboundSession.open(
            peer(server, "submission"),
            settings(auth=creds, ca_file=ca_file),
            TlsPolicy(TlsMode.VERIFY),
        )
        result = await session.send(message("bob@example.test", mail_from=ALICE))
        await session.quit()
        return session, result

    session, result = run(main())
    assert result.recipients[0].delivered and result.info.authenticated_as == ALICE
    auth = [e for e in session.transcript if e.stage is Stage.AUTH]
    assert auth[0].command == f"AUTH {used}" and auth[-1].reply.code == 235
    assert PASSWORD not in repr(session.transcript)


def test_auth_refused_is_permanent_for_the_host(make_server, ca, tmp_path) -> None:  # type: ignore[no-untyped-def]
    server, _ca_file = _trusted_server(make_server, ca, tmp_path)
    creds = Credentials(ALICE, WRONG_PASSWORD, mechanisms=("PLAIN",))
    with pytest.raises(SessionError) as caught:
        run(
            OutboundSession.open(
                peer(server, "submission"), settings(auth=creds), TlsPolicy(TlsMode.ENCRYPT)
            )
        )
    err = caught.value
    assert err.stage is Stage.AUTH and not err.temporary
    assert err.reply is not None and (err.reply.code, err.reply.enhanced) == (535, "5.7.8")


def test_no_credentials_over_plaintext(make_server, ca, tmp_path) -> None:  # type: ignore[no-untyped-def]
    server, _ = _trusted_server(make_server, ca, tmp_path)
    creds = Credentials(ALICE, PASSWORD)
    with pytest.raises(SessionError) as caught:
        run(OutboundSession.open(peer(server, "submission"), settings(auth=creds), NO_TLS))
    assert caught.value.stage is Stage.AUTH and caught.value.temporary
    assert caught.value.reason == "refusing to send credentials without TLS"
    assert not [e for e in caught.value.transcript if e.stage is Stage.AUTH]


BINARY_PART = b"\0\x01\xff bare LF\n bare CR\r end\r\n"
BINARY_MESSAGE = (
    b"From: alice@example.test\r\nTo: bob@example.test\r\nSubject: binary\r\n"
    b'MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="b"\r\n\r\n'
    b"--b\r\nContent-Type: application/octet-stream\r\n"
    b"Content-Transfer-Encoding: binary\r\n\r\n" + BINARY_PART + b"\r\n--b--\r\n"
)


def test_binarymime_goes_octet_exact_over_bdat(server: InProcessServer) -> None:
    async def main():  # type: ignore[no-untyped-def]
        session = await OutboundSession.open(peer(server), settings(), NO_TLS)
        result = await session.send(
            message("alice@example.test", data=BINARY_MESSAGE, body_type=BodyType.BINARY_MIME)
        )
        await session.quit()
        return result

    result = run(main())
    assert result.recipients[0].delivered, result.recipients
    assert result.transcript[0].command.endswith(" BODY=BINARYMIME")
    assert result.transcript[-1].command == f"BDAT {len(BINARY_MESSAGE)} LAST"
    stored = server.maildir_messages(EXAMPLE, "alice")[0]
    assert BINARY_PART.replace(b"\r\n", b"\n") in stored
