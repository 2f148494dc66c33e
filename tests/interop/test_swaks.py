"""Interop with swaks, the SMTP test client operators use, against ``mailwright serve``.

The assertions read swaks' transcript (``<-`` expected reply, ``<**`` unexpected reply,
`` ->`` sent line) and the Maildir.  swaks is given ``--helo`` and ``--from`` so it
needs no name of its own, and ``--server`` so it does no MX lookup.

swaks 20201014 has no way to add MAIL FROM parameters, so it cannot send SMTPUTF8; the
SMTPUTF8 interop check against the same subprocess server uses stdlib smtplib (and the
swaks test checks the refusal a UTF-8 address gets *without* SMTPUTF8).
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from helpers.procs import wait_until
from helpers.servers import EXAMPLE, UTF8_BOX, SubprocessServer, in_maildir
from helpers.tools import require_tool
from helpers.wire import CLIENT_NAME, expect, queue_id_of, smtplib_client
from mailwright.smtp import codes

pytestmark = pytest.mark.interop

SENDER = "sender@remote.test"


@pytest.fixture(scope="module")
def mw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SubprocessServer]:
    """One ``mailwright serve`` for the module (start-up costs about a second); tests
    find their own message by queue id and check "nothing stored" in the mail log."""
    require_tool("swaks")
    server = SubprocessServer(tmp_path_factory.mktemp("swaks")).start()
    try:
        yield server
    finally:
        server.terminate()


def assert_nothing_accepted(server: SubprocessServer, before: int) -> None:
    """Once swaks's session has ended (its disconnect line), nothing more was stored."""
    assert wait_until(server.sessions_ended, 5), server.mail_log()
    assert server.accepted_count() == before


def swaks(server: SubprocessServer, *args: str | Path) -> tuple[int, str]:
    exe = require_tool("swaks")
    cmd = [
        exe,
        "--server",
        server.host,
        "--port",
        str(server.port),
        "--helo",
        CLIENT_NAME,
        "--from",
        SENDER,
        "--timeout",
        "10",
        *map(str, args),
    ]
    done = subprocess.run(cmd, capture_output=True, timeout=30, stdin=subprocess.DEVNULL)
    return done.returncode, (done.stdout + done.stderr).decode("utf-8", "replace")


def received(transcript: str) -> list[str]:
    """The server's lines as swaks shows them, expected (<-) and unexpected (<**)."""
    return [line for line in transcript.splitlines() if line.startswith(("<- ", "<**"))]


def sent(transcript: str) -> list[str]:
    return [line[4:] for line in transcript.splitlines() if line.startswith(" -> ")]


def queued_id(transcript: str) -> str:
    [line] = [r for r in received(transcript) if "queued as" in r]
    assert line.startswith("<-  250 2.0.0 Ok: queued as ")
    return queue_id_of(line)


def test_swaks_basic_send(mw: SubprocessServer):
    code, out = swaks(
        mw,
        "--to",
        "alice@example.test",
        "--data",
        "Subject: swaks basic\nX-Test: 1\n\nbody line\n.dot line\n",
    )
    assert code == 0, out
    lines = received(out)
    assert lines[0] == "<-  220 mx.example.test ESMTP mailwright"
    assert "<-  250 2.1.0 Ok" in lines and "<-  250 2.1.5 Ok" in lines
    assert "<-  354 End data with <CR><LF>.<CR><LF>" in lines
    assert lines[-1] == "<-  221 2.0.0 Bye"
    assert not [line for line in lines if line.startswith("<**")]
    queue_id = queued_id(out)
    msg = mw.message_with_id(EXAMPLE, "alice", queue_id)
    assert f"id {queue_id}\n\tfor <alice@example.test>;".encode() in msg
    # swaks dot-stuffed ".dot line" and turned LF into CRLF; we undid the stuffing,
    # and the Maildir file has LF line endings again.
    assert msg.endswith(b"Subject: swaks basic\nX-Test: 1\n\nbody line\n.dot line\n\n")


def test_swaks_pipeline(mw: SubprocessServer):
    code, out = swaks(
        mw,
        "--pipeline",
        "--to",
        "alice@example.test,nobody@example.test,bob@example.test",
        "--data",
        "Subject: pipelined\n\nhello\n",
    )
    assert code == 0, out  # one refused recipient out of three still sends the message
    # swaks sent the whole envelope before reading any reply ...
    commands = sent(out)
    start = commands.index("MAIL FROM:<sender@remote.test>")
    assert commands[start : start + 5] == [
        "MAIL FROM:<sender@remote.test>",
        "RCPT TO:<alice@example.test>",
        "RCPT TO:<nobody@example.test>",
        "RCPT TO:<bob@example.test>",
        "DATA",
    ]
    transcript = out.splitlines()
    assert transcript.index(" -> DATA") < transcript.index("<-  250 2.1.0 Ok")
    # ... and the replies came back in order.
    lines = received(out)
    start = lines.index("<-  250 2.1.0 Ok")
    assert lines[start : start + 5] == [
        "<-  250 2.1.0 Ok",
        "<-  250 2.1.5 Ok",
        f"<** {codes.R550_NO_SUCH_USER}",
        "<-  250 2.1.5 Ok",
        "<-  354 End data with <CR><LF>.<CR><LF>",
    ]
    queue_id = queued_id(out)
    for box in ("alice", "bob"):
        msg = mw.message_with_id(EXAMPLE, box, queue_id)
        assert f"id {queue_id};".encode() in msg and msg.endswith(b"\nhello\n\n")


def test_swaks_8bit_data_is_delivered_byte_exact(mw: SubprocessServer, tmp_path: Path):
    data = (
        b"Subject: 8bit\r\nContent-Type: text/plain; charset=latin1\r\n"
        b"Content-Transfer-Encoding: 8bit\r\n\r\n"
        + bytes(range(0x80, 0x100))
        + b"\r\nGr\xfc\xdfe \xe9t\xe9\r\n"
    )
    path = tmp_path / "8bit.eml"
    path.write_bytes(data)
    code, out = swaks(mw, "--to", "bob@example.test", "--data", f"@{path}")
    assert code == 0, out
    msg = mw.message_with_id(EXAMPLE, "bob", queued_id(out))
    assert msg.endswith(in_maildir(data + b"\r\n"))  # swaks adds a line break before "."


def test_swaks_8bit_body(mw: SubprocessServer):
    code, out = swaks(mw, "--to", "alice@example.test", "--body", "Grüße aus Köln — 日本語")
    assert code == 0, out
    msg = mw.message_with_id(EXAMPLE, "alice", queued_id(out))
    assert "\n\nGrüße aus Köln — 日本語\n".encode() in msg


def test_swaks_esmtp_dialog(mw: SubprocessServer):
    before = mw.accepted_count()
    code, out = swaks(
        mw, "--protocol", "ESMTP", "--to", "alice@example.test", "--quit-after", "RCPT"
    )
    assert code == 0, out
    assert "EHLO client.test" in sent(out)
    lines = received(out)
    ehlo = lines[lines.index("<-  250-mx.example.test") :]
    keywords = []
    for line in ehlo:
        keywords.append(line[8:])
        if line.startswith("<-  250 "):
            break
    assert keywords[0] == "mx.example.test"
    # (STARTTLS and AUTH join this list with the secure-sessions work.)
    assert {
        "PIPELINING",
        "SIZE 52428800",
        "ENHANCEDSTATUSCODES",
        "8BITMIME",
        "DSN",
        "SMTPUTF8",
        "CHUNKING",
        "BINARYMIME",
    } <= set(keywords[1:])
    assert lines[lines.index("<-  250 2.1.0 Ok") + 1] == "<-  250 2.1.5 Ok"
    assert lines[-1] == "<-  221 2.0.0 Bye"
    assert_nothing_accepted(mw, before)  # quit after RCPT: no message


def test_swaks_smtp_dialog_uses_helo(mw: SubprocessServer):
    code, out = swaks(
        mw,
        "--protocol",
        "SMTP",
        "--to",
        "bob@example.test",
        "--data",
        "Subject: plain smtp\n\nhi\n",
    )
    assert code == 0, out
    assert "HELO client.test" in sent(out)
    assert "<-  250 mx.example.test" in received(out)
    queue_id = queued_id(out)
    msg = mw.message_with_id(EXAMPLE, "bob", queue_id)
    # RFC 3848: a HELO session is recorded "with SMTP".
    assert re.search(rf"with SMTP id {queue_id}\n".encode(), msg)


def test_swaks_sees_refusals(mw: SubprocessServer):
    before = mw.accepted_count()
    code, out = swaks(mw, "--to", "alice@elsewhere.test")
    assert code != 0
    assert f"<** {codes.R550_RELAY_DENIED}" in received(out)
    code, out = swaks(mw, "--to", f"{UTF8_BOX}@example.test", "--quit-after", "RCPT")
    assert code != 0
    assert f"<** {codes.R553_UTF8_NOT_ALLOWED}" in received(out)
    assert_nothing_accepted(mw, before)


def test_smtputf8_address_with_smtplib(mw: SubprocessServer):
    """SMTPUTF8 interop (swaks cannot send it; see the module docstring)."""
    rcpt = f"{UTF8_BOX}@example.test"
    msg = f"From: {SENDER}\r\nTo: {rcpt}\r\nSubject: 你好\r\n\r\n正文\r\n".encode()
    with smtplib_client(mw.host, mw.port) as client:
        client.ehlo()
        assert client.has_extn("smtputf8")
        expect(client.mail(SENDER, ["SMTPUTF8", "BODY=8BITMIME"]), codes.R250_SENDER_OK)
        expect(client.rcpt(rcpt), codes.R250_RECIPIENT_OK)
        code, text = client.data(msg)
        assert code == 250, text
        queue_id = queue_id_of(text)
    delivered = mw.message_with_id(EXAMPLE, UTF8_BOX, queue_id)
    assert delivered.startswith(f"Return-Path: <{SENDER}>\nDelivered-To: {rcpt}\n".encode())
    assert f"with UTF8SMTP id {queue_id}\n\tfor <{rcpt}>;".encode() in delivered
    assert delivered.endswith(in_maildir(msg))
