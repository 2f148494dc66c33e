"""``mailwright send`` against a private Postfix (``postfix -c``, loopback port, its own
queue, virtual delivery into one Maildir): golden transcripts of the plain dialog,
STARTTLS verified against the test CA by name, implicit TLS, pipelining with DSN and
SMTPUTF8, BDAT, attachments parsed back, ``--quit-after`` at each stage, and Postfix's
own refusal (relay denied) as the RCPT exit status.  AUTH against a second private
Postfix whose SASL backend is a private Dovecot auth server: a golden transcript for
each mechanism (PLAIN, LOGIN, CRAM-MD5, SCRAM-SHA-256) after STARTTLS, secrets
redacted, the message read back with Postfix's ESMTPSA mark (RFC 3848), and a wrong
password as the AUTH exit status."""

from __future__ import annotations

from collections.abc import Iterator
from email import message_from_bytes, policy
from pathlib import Path

import pytest

from helpers.postfix import PrivatePostfix, private_postfix
from helpers.sendcli import send
from mailwright.client.outcome import EXIT_AUTH, EXIT_CONNECT, EXIT_RCPT

pytestmark = pytest.mark.interop

DOMAIN = "pf.example.test"  # the private Postfix's domain, host name and certificate name

EHLO = """\
T <-  220 pf.example.test ESMTP Postfix
T  -> EHLO client.test
T <-  250-pf.example.test
T <-  250-PIPELINING
T <-  250-SIZE 10240000
T <-  250-VRFY
T <-  250-ETRN
T <-  250-STARTTLS
T <-  250-ENHANCEDSTATUSCODES
T <-  250-8BITMIME
T <-  250-DSN
T <-  250-SMTPUTF8
T <-  250 CHUNKING"""
BODY = """\
Date: Thu, 01 Jan 2026 00:00:00 +0000
To: x@pf.example.test
From: a@client.test
Subject: golden
Message-Id: <golden@client.test>
X-Mailer: mailwright
Content-Type: text/plain; charset="utf-8"
Content-Transfer-Encoding: 7bit
MIME-Version: 1.0

This is a test mailing
."""
TLS_VERIFIED = """\
T === TLS started with TLSv1.3 TLS_AES_256_GCM_SHA384 (256 bits)
T === TLS peer subject: OU=Testing cert #ID,O=trustme v1.2.1
T === TLS peer issuer: OU=Testing CA #ID,O=trustme v1.2.1
T === TLS peer validity: DATES
T === TLS peer names: pf.example.test
T === TLS chain 0: OU=Testing cert #ID,O=trustme v1.2.1
T === TLS verification: ok: verified in the handshake, chain to a trusted CA and name \
pf.example.test"""


def body(mark: str) -> str:
    return "\n".join(f"T {mark} {line}".rstrip(" ") for line in BODY.splitlines())


@pytest.fixture(scope="module")
def pf() -> Iterator[PrivatePostfix]:
    with private_postfix(domain=DOMAIN, tls=True) as instance:
        yield instance


def server(pf: PrivatePostfix, port: int | None = None) -> tuple[str, ...]:
    return ("--server", f"127.0.0.1:{port or pf.port}", "--from", "a@client.test")


def test_plain_golden(pf: PrivatePostfix) -> None:
    run = send(*server(pf), "--to", "x@pf.example.test")
    expected = f"""\
T === Trying 127.0.0.1[127.0.0.1]:PORT...
{EHLO}
T  -> MAIL FROM:<a@client.test> SIZE=277
T <-  250 2.1.0 Ok
T  -> RCPT TO:<x@pf.example.test>
T <-  250 2.1.5 Ok
T  -> DATA
T <-  354 End data with <CR><LF>.<CR><LF>
{body(" ->")}
T <-  250 2.0.0 Ok: queued as QID
T  -> QUIT
T <-  221 2.0.0 Bye
T === Connection closed
ok via 127.0.0.1[127.0.0.1]:PORT: 1/1 recipient(s) accepted: 250 2.0.0 Ok: queued as QID"""
    assert run.status == 0, run
    assert run.lines() == expected.splitlines()
    qid = run.out.split("queued as ")[1].split()[0]
    stored = pf.message_with(f"id {qid}".encode())
    assert stored.endswith(b"\n\nThis is a test mailing\n")


def test_starttls_verified_by_name_golden(pf: PrivatePostfix) -> None:
    run = send(
        *server(pf), "--to", "x@pf.example.test", "--tls-verify",
        "--tls-ca", str(pf.ca_pem), "--tls-sni", "pf.example.test",
    )  # fmt: skip
    assert run.status == 0, run
    lines = run.lines()
    start = lines.index("T <-  220 2.0.0 Ready to start TLS") + 1
    assert lines[start : start + 7] == TLS_VERIFIED.splitlines()
    assert lines[start + 7] == "T  ~> EHLO client.test"
    assert "T <~  250 2.0.0 Ok: queued as QID" in lines
    assert run.lines()[-1].startswith("ok via 127.0.0.1[127.0.0.1]:PORT: 1/1 recipient(s)")


def test_implicit_tls_golden_head(pf: PrivatePostfix) -> None:
    run = send(
        *server(pf, pf.tls_port), "--to", "x@pf.example.test", "--tls-on-connect",
        "--tls-verify", "--tls-ca", str(pf.ca_pem), "--tls-sni", "pf.example.test",
    )  # fmt: skip
    assert run.status == 0, run
    lines = run.lines()
    assert lines[1:9] == [*TLS_VERIFIED.splitlines(), "T <~  220 pf.example.test ESMTP Postfix"]
    assert "T  ~> STARTTLS" not in lines
    assert "T <~  250 2.0.0 Ok: queued as QID" in lines


def test_pipelining_dsn_smtputf8(pf: PrivatePostfix) -> None:
    run = send(
        *server(pf), "--to", "ü@pf.example.test", "--pipeline", "--smtputf8",
        "--dsn-notify", "FAILURE", "--dsn-ret", "HDRS", "--envid", "E42",
        "--header", "Message-Id: <utf8@client.test>",
    )  # fmt: skip
    assert run.status == 0, run
    lines = run.lines()
    mail = "T  -> MAIL FROM:<a@client.test> SIZE=276 BODY=8BITMIME SMTPUTF8 RET=HDRS ENVID=E42"
    head = lines.index(mail)
    assert lines[head + 1 : head + 6] == [
        "T  -> RCPT TO:<ü@pf.example.test> NOTIFY=FAILURE",
        "T  -> DATA",
        "T <-  250 2.1.0 Ok",
        "T <-  250 2.1.5 Ok",
        "T <-  354 End data with <CR><LF>.<CR><LF>",
    ]
    stored = pf.message_with(b"<utf8@client.test>")
    assert "To: ü@pf.example.test".encode() in stored


def test_bdat_and_attachments_parse_back(pf: PrivatePostfix, tmp_path: Path) -> None:
    data = tmp_path / "data.bin"
    data.write_bytes(bytes(range(256)) * 300)
    run = send(
        *server(pf), "--to", "x@pf.example.test", "--bdat", "4000",
        "--header", "Message-Id: <bdat@client.test>", "--attach", str(data),
        "--body", "see attachment", "--quiet",
    )  # fmt: skip
    assert run.status == 0, run
    msg = message_from_bytes(pf.message_with(b"<bdat@client.test>"), policy=policy.default)
    parts = list(msg.iter_parts())
    assert parts[0].get_content().strip() == "see attachment"
    (attached,) = list(msg.iter_attachments())
    assert attached.get_filename() == "data.bin"
    assert attached.get_content_type() == "application/octet-stream"
    assert attached.get_content() == data.read_bytes()


@pytest.mark.parametrize("stage", ["connect", "banner", "ehlo", "tls", "mail", "rcpt", "data"])
def test_quit_after_each_stage(pf: PrivatePostfix, stage: str) -> None:
    run = send(*server(pf), "--to", "x@pf.example.test", "--tls", "--quit-after", stage)
    assert run.status == 0, run
    lines = run.lines()
    assert lines[-1].endswith("(--quit-after)") or "connection dropped" in lines[-1]
    sent = [line for line in lines if line[2:5] in (" ->", " ~>")]
    last = {
        "connect": None,
        "banner": "T  -> QUIT",
        "ehlo": "T  ~> QUIT",  # with --tls the last EHLO is the one inside TLS
        "tls": "T  ~> QUIT",
        "mail": "T  ~> QUIT",
        "rcpt": "T  ~> QUIT",
        "data": "T  ~> DATA",
    }[stage]
    assert (sent[-1] if sent else None) == last, lines


def test_relay_denied_is_the_rcpt_status(pf: PrivatePostfix) -> None:
    run = send(*server(pf), "--to", "x@elsewhere.test")
    assert run.status == EXIT_RCPT, run
    assert "T <-  554 5.7.1 <x@elsewhere.test>: Relay access denied" in run.lines()
    assert "(exit 24, no recipient accepted)" in run.lines()[-1]


def test_nobody_listening_is_the_connection_status(pf: PrivatePostfix) -> None:
    run = send("--server", f"127.0.0.2:{pf.port}", "--to", "x@pf.example.test")
    assert run.status == EXIT_CONNECT, run  # Postfix listens on 127.0.0.1 only


USER = "alice@pf.example.test"
PASSWORD = "Corr3ct-h0rse-battery"
EHLO_AUTH = """\
T  ~> EHLO client.test
T <~  250-pf.example.test
T <~  250-PIPELINING
T <~  250-SIZE 10240000
T <~  250-VRFY
T <~  250-ETRN
T <~  250-AUTH PLAIN LOGIN CRAM-MD5 SCRAM-SHA-256
T <~  250-ENHANCEDSTATUSCODES
T <~  250-8BITMIME
T <~  250-DSN
T <~  250-SMTPUTF8
T <~  250 CHUNKING"""
# The AUTH exchange of each mechanism as the transcript shows it: secrets redacted,
# random challenges masked; LOGIN's prompts are Postfix's base64 "Username:" and
# "Password:".
AUTH_EXCHANGES = {
    "PLAIN": """\
T  ~> AUTH PLAIN ********
T <~  235 2.7.0 Authentication successful""",
    "LOGIN": """\
T  ~> AUTH LOGIN
T <~  334 VXNlcm5hbWU6
T  ~> ********
T <~  334 UGFzc3dvcmQ6
T  ~> ********
T <~  235 2.7.0 Authentication successful""",
    "CRAM-MD5": """\
T  ~> AUTH CRAM-MD5
T <~  334 CHALLENGE
T  ~> ********
T <~  235 2.7.0 Authentication successful""",
    "SCRAM-SHA-256": """\
T  ~> AUTH SCRAM-SHA-256 ********
T <~  334 CHALLENGE
T  ~> ********
T <~  334 CHALLENGE
T  ~> ********
T <~  235 2.7.0 Authentication successful""",
}


@pytest.fixture(scope="module")
def pf_sasl() -> Iterator[PrivatePostfix]:
    with private_postfix(domain=DOMAIN, tls=True, sasl_users={USER: PASSWORD}) as instance:
        yield instance


def auth_args(pf: PrivatePostfix, mechanism: str) -> tuple[str, ...]:
    return (
        "--server", f"127.0.0.1:{pf.port}", "--from", USER, "--to", "x@pf.example.test",
        "--tls", "--tls-verify", "--tls-ca", str(pf.ca_pem), "--tls-sni", "pf.example.test",
        "--auth", mechanism, "--user", USER, "--password-env", "PW",
    )  # fmt: skip


@pytest.mark.parametrize("mechanism", list(AUTH_EXCHANGES))
def test_auth_each_mechanism_golden(pf_sasl: PrivatePostfix, mechanism: str) -> None:
    run = send(*auth_args(pf_sasl, mechanism), env={"PW": PASSWORD})
    expected = f"""\
T === Trying 127.0.0.1[127.0.0.1]:PORT...
{EHLO}
T  -> STARTTLS
T <-  220 2.0.0 Ready to start TLS
{TLS_VERIFIED}
{EHLO_AUTH}
{AUTH_EXCHANGES[mechanism]}
T  ~> MAIL FROM:<{USER}> SIZE=285
T <~  250 2.1.0 Ok
T  ~> RCPT TO:<x@pf.example.test>
T <~  250 2.1.5 Ok
T  ~> DATA
T <~  354 End data with <CR><LF>.<CR><LF>
{body(" ~>").replace("From: a@client.test", f"From: {USER}")}
T <~  250 2.0.0 Ok: queued as QID
T  ~> QUIT
T <~  221 2.0.0 Bye
T === Connection closed
ok via 127.0.0.1[127.0.0.1]:PORT: 1/1 recipient(s) accepted: 250 2.0.0 Ok: queued as QID"""
    assert run.status == 0, run
    assert run.lines() == expected.splitlines()
    assert PASSWORD not in run.out and PASSWORD not in run.err
    qid = run.out.split("queued as ")[1].split()[0]
    stored = pf_sasl.message_with(f"id {qid}".encode())
    # RFC 3848: "ESMTPSA" is Postfix's mark of mail received over TLS after AUTH.
    assert f"with ESMTPSA id {qid}".encode() in stored
    assert stored.endswith(b"\n\nThis is a test mailing\n")


def test_auth_wrong_password_is_the_auth_status(pf_sasl: PrivatePostfix) -> None:
    run = send(*auth_args(pf_sasl, "PLAIN"), env={"PW": "not-the-password"})
    assert run.status == EXIT_AUTH, run
    lines = run.lines()
    refusal = "535 5.7.8 Error: authentication failed: (reason unavailable)"
    start = lines.index("T  ~> AUTH PLAIN ********")
    assert lines[start:] == [
        "T  ~> AUTH PLAIN ********",
        f"T <~  {refusal}",
        "T  ~> QUIT",
        f"T *** auth: AUTH PLAIN refused: {refusal}",
        "== why: Authentication credentials invalid -- check the user name and password "
        "(and the mechanism the account allows)",
        "failed (exit 28, authentication failed) via 127.0.0.1[127.0.0.1]:PORT: "
        f"auth: AUTH PLAIN refused: {refusal}",
    ]
    assert "not-the-password" not in run.out
