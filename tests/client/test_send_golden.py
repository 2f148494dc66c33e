"""Golden transcripts of ``mailwright send`` against an in-process ``mailwright serve``.

Each test runs the command through click's runner, masks what changes between runs
(times, ports, queue ids, certificate dates, SASL challenges) and compares the whole
transcript line by line; the message is fixed (Date, Message-Id, Subject given) so
SIZE= and the body lines are stable.  Where mail is accepted, the message is read back
from the Maildir.
"""

from __future__ import annotations

import re

from helpers.secure import ALICE, BOB, PASSWORD
from helpers.sendcli import send
from helpers.servers import EXAMPLE, InProcessServer

EHLO_PLAIN = """\
T <-  220 mx.example.test ESMTP mailwright
T  -> EHLO client.test
T <-  250-mx.example.test
T <-  250-PIPELINING
T <-  250-SIZE 52428800
T <-  250-STARTTLS
T <-  250-ENHANCEDSTATUSCODES
T <-  250-8BITMIME
T <-  250-DSN
T <-  250-SMTPUTF8
T <-  250-CHUNKING
T <-  250 BINARYMIME"""

TLS_REPORT = """\
T === TLS started with TLSv1.3 TLS_AES_256_GCM_SHA384 (256 bits)
T === TLS peer subject: O=mailwright self-signed,CN=mx.example.test
T === TLS peer issuer: O=mailwright self-signed,CN=mx.example.test
T === TLS peer validity: DATES
T === TLS peer names: mx.example.test, localhost, 127.0.0.1, ::1
T === TLS chain 0: O=mailwright self-signed,CN=mx.example.test
T === TLS verification: failed for 127.0.0.1 (CA/B Forum profile): no chain to a trusted \
CA (self-signed or unknown issuer; validation failed: candidates exhausted: all candidates \
exhausted with no interior errors)"""

EHLO_TLS = """\
T  ~> EHLO client.test
T <~  250-mx.example.test
T <~  250-PIPELINING
T <~  250-SIZE 52428800
T <~  250-AUTH SCRAM-SHA-256 PLAIN LOGIN CRAM-MD5
T <~  250-ENHANCEDSTATUSCODES
T <~  250-8BITMIME
T <~  250-DSN
T <~  250-SMTPUTF8
T <~  250-CHUNKING
T <~  250 BINARYMIME"""


def body(to: str, sender: str, mark: str = " ->") -> str:
    lines = [
        "Date: Thu, 01 Jan 2026 00:00:00 +0000",
        f"To: {to}",
        f"From: {sender}",
        "Subject: golden",
        "Message-Id: <golden@client.test>",
        "X-Mailer: mailwright",
        'Content-Type: text/plain; charset="utf-8"',
        "Content-Transfer-Encoding: 7bit",
        "MIME-Version: 1.0",
        "",
        "This is a test mailing",
        ".",
    ]
    return "\n".join(f"T {mark} {line}".rstrip(" ") for line in lines)


def trying() -> str:
    return "T === Trying 127.0.0.1[127.0.0.1]:PORT..."


def ok_summary(n: int = 1) -> str:
    return (
        f"ok via 127.0.0.1[127.0.0.1]:PORT: {n}/{n} recipient(s) accepted: "
        "250 2.0.0 Ok: queued as QID"
    )


def queue_id(out: str) -> str:
    found = re.findall(r"queued as ([0-9A-Z]{16})", out)
    assert found, out
    return found[-1]


def test_plain_dialog_golden_and_delivered(mw: InProcessServer) -> None:
    run = send(
        "--server", f"127.0.0.1:{mw.ports['inbound']}",
        "--from", "a@client.test", "--to", "alice@example.test",
    )  # fmt: skip
    expected = f"""\
{trying()}
{EHLO_PLAIN}
T  -> MAIL FROM:<a@client.test> SIZE=278
T <-  250 2.1.0 Ok
T  -> RCPT TO:<alice@example.test>
T <-  250 2.1.5 Ok
T  -> DATA
T <-  354 End data with <CR><LF>.<CR><LF>
{body("alice@example.test", "a@client.test")}
T <-  250 2.0.0 Ok: queued as QID
T  -> QUIT
T <-  221 2.0.0 Bye
T === Connection closed
{ok_summary()}"""
    assert run.status == 0, run
    assert run.lines() == expected.splitlines()
    stored = mw.message_with_id(EXAMPLE, "alice", queue_id(run.out))
    assert b"This is a test mailing" in stored and b"X-Mailer: mailwright" in stored


def test_starttls_and_auth_plain_golden_secret_redacted(mw: InProcessServer) -> None:
    run = send(
        "--server", f"127.0.0.1:{mw.ports['submission']}", "--tls",
        "--auth", "PLAIN", "--user", ALICE, "--password-env", "PW",
        "--from", ALICE, "--to", "bob@example.test",
        env={"PW": PASSWORD},
    )  # fmt: skip
    expected = f"""\
{trying()}
{EHLO_PLAIN}
T  -> STARTTLS
T <-  220 2.0.0 Ready to start TLS
{TLS_REPORT}
{EHLO_TLS}
T  ~> AUTH PLAIN ********
T <~  235 2.7.0 Authentication successful
T  ~> MAIL FROM:<alice@example.test> SIZE=281
T <~  250 2.1.0 Ok
T  ~> RCPT TO:<bob@example.test>
T <~  250 2.1.5 Ok
T  ~> DATA
T <~  354 End data with <CR><LF>.<CR><LF>
{body("bob@example.test", ALICE, " ~>")}
T <~  250 2.0.0 Ok: queued as QID
T  ~> QUIT
T <~  221 2.0.0 Bye
T === Connection closed
{ok_summary()}"""
    assert run.status == 0, run
    assert run.lines() == expected.splitlines()
    assert PASSWORD not in run.out
    stored = mw.message_with_id(EXAMPLE, "bob", queue_id(run.out))
    assert b"Subject: golden" in stored


def test_implicit_tls_scram_golden(mw: InProcessServer) -> None:
    run = send(
        "--server", f"127.0.0.1:{mw.ports['submissions']}", "--tls-on-connect",
        "--auth", "SCRAM-SHA-256", "--user", ALICE, "--password-env", "PW",
        "--from", ALICE, "--to", "bob@example.test",
        env={"PW": PASSWORD},
    )  # fmt: skip
    expected = f"""\
{trying()}
{TLS_REPORT}
T <~  220 mx.example.test ESMTP mailwright
{EHLO_TLS}
T  ~> AUTH SCRAM-SHA-256 ********
T <~  334 CHALLENGE
T  ~> ********
T <~  334 CHALLENGE
T  ~> ********
T <~  235 2.7.0 Authentication successful
T  ~> MAIL FROM:<alice@example.test> SIZE=281
T <~  250 2.1.0 Ok
T  ~> RCPT TO:<bob@example.test>
T <~  250 2.1.5 Ok
T  ~> DATA
T <~  354 End data with <CR><LF>.<CR><LF>
{body("bob@example.test", ALICE, " ~>")}
T <~  250 2.0.0 Ok: queued as QID
T  ~> QUIT
T <~  221 2.0.0 Bye
T === Connection closed
{ok_summary()}"""
    assert run.status == 0, run
    assert run.lines() == expected.splitlines()


AUTH_LINES = {
    "PLAIN": ["T  ~> AUTH PLAIN ********", "T <~  235 2.7.0 Authentication successful"],
    "LOGIN": [
        "T  ~> AUTH LOGIN",
        "T <~  334 VXNlcm5hbWU6",
        "T  ~> ********",
        "T <~  334 UGFzc3dvcmQ6",
        "T  ~> ********",
        "T <~  235 2.7.0 Authentication successful",
    ],
    "CRAM-MD5": [
        "T  ~> AUTH CRAM-MD5",
        "T <~  334 CHALLENGE",
        "T  ~> ********",
        "T <~  235 2.7.0 Authentication successful",
    ],
    "SCRAM-SHA-256": [
        "T  ~> AUTH SCRAM-SHA-256 ********",
        "T <~  334 CHALLENGE",
        "T  ~> ********",
        "T <~  334 CHALLENGE",
        "T  ~> ********",
        "T <~  235 2.7.0 Authentication successful",
    ],
}


def test_each_auth_mechanism_redacted_and_shown_on_request(mw: InProcessServer) -> None:
    for mechanism, lines in AUTH_LINES.items():
        user = BOB if mechanism == "CRAM-MD5" else ALICE  # CRAM-MD5 is bob's opt-in
        args = [
            "--server", f"127.0.0.1:{mw.ports['submission']}", "--tls",
            "--auth", mechanism, "--user", user, "--password-env", "PW",
            "--from", user, "--to", "alice@example.test", "--quit-after", "auth",
        ]  # fmt: skip
        run = send(*args, env={"PW": PASSWORD})
        assert run.status == 0, (mechanism, run)
        got = run.lines()
        start = got.index(lines[0])
        assert got[start : start + len(lines)] == lines, mechanism
        assert PASSWORD not in run.out
        shown = send(*args, "--show-secrets", env={"PW": PASSWORD})
        assert shown.status == 0
        assert "********" not in shown.out, mechanism
        if mechanism == "LOGIN":
            assert "T  ~> Q29ycjNjdC1oMHJzZS1iYXR0ZXJ5" in shown.lines()  # base64(PASSWORD)


def test_pipelining_bdat_dsn_golden(mw: InProcessServer) -> None:
    run = send(
        "--server", f"127.0.0.1:{mw.ports['inbound']}", "--pipeline", "--bdat", "100",
        "--from", "a@client.test", "--to", "alice@example.test,bob@example.test",
        "--dsn-notify", "SUCCESS,FAILURE", "--dsn-ret", "HDRS", "--envid", "E1",
    )  # fmt: skip
    expected = f"""\
{trying()}
{EHLO_PLAIN}
T  -> MAIL FROM:<a@client.test> SIZE=296 RET=HDRS ENVID=E1
T  -> RCPT TO:<alice@example.test> NOTIFY=SUCCESS,FAILURE
T  -> RCPT TO:<bob@example.test> NOTIFY=SUCCESS,FAILURE
T <-  250 2.1.0 Ok
T <-  250 2.1.5 Ok
T <-  250 2.1.5 Ok
T  -> BDAT 100
T  -> Date: Thu, 01 Jan 2026 00:00:00 +0000
T  -> To: alice@example.test, bob@example.test
T  -> From: a@client.test
T  -> BDAT 100
T  ->
T  -> Subject: golden
T  -> Message-Id: <golden@client.test>
T  -> X-Mailer: mailwright
T  -> Content-Type: text/plain;
T  -> BDAT 96 LAST
T  ->  charset="utf-8"
T  -> Content-Transfer-Encoding: 7bit
T  -> MIME-Version: 1.0
T  ->
T  -> This is a test mailing
T <-  250 2.0.0 100 octets received
T <-  250 2.0.0 100 octets received
T <-  250 2.0.0 Ok: queued as QID
T  -> QUIT
T <-  221 2.0.0 Bye
T === Connection closed
{ok_summary(2)}"""
    assert run.status == 0, run
    assert run.lines() == expected.splitlines()
    qid = queue_id(run.out)
    for box in ("alice", "bob"):
        stored = mw.message_with_id(EXAMPLE, box, qid)
        assert stored.endswith(b"This is a test mailing\n")


def test_smtputf8_envelope_and_8bitmime(mw: InProcessServer) -> None:
    run = send(
        "--server", f"127.0.0.1:{mw.ports['inbound']}", "--smtputf8", "--8bitmime",
        "--from", "a@client.test", "--to", "用户@example.test", "--body", "Grüße\n",
    )  # fmt: skip
    assert run.status == 0, run
    sent = [line for line in run.lines() if line.startswith("T  -> MAIL")]
    assert sent == ["T  -> MAIL FROM:<a@client.test> SIZE=264 BODY=8BITMIME SMTPUTF8"]
    assert "T  -> RCPT TO:<用户@example.test>" in run.lines()
    stored = mw.message_with_id(EXAMPLE, "用户", queue_id(run.out))
    assert "To: 用户@example.test".encode() in stored
    assert stored.endswith("\n\nGrüße\n".encode())  # 8bit, as sent
