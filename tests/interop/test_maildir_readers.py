"""Delivered Maildir files as the software that reads them sees them (issue 8 item 2).

* **s-nail** in batch mode (``-#``: no terminal, no rc files with ``-:/``, read-only
  with ``-R``) prints the message from the Maildir.  On a file with CRLF line endings
  it complains on stderr ("Not a header line, skipping: $'Hello.\\r'", "Malformed
  message: headers and body not separated (with empty line)") and prints the body as
  part of the header; on an LF file it prints headers, an empty line and the body, and
  says nothing on stderr.
* **Dovecot** (a private instance, ``helpers.dovecot``) serves the Maildir over IMAP:
  ``RFC822.SIZE`` must be the size of the message with CRLF line endings, the ``W=``
  of its name, and ``BODY[]`` the message in CRLF form, byte for byte.  Dovecot takes
  ``W=`` on trust: a wrong one shows up as a wrong RFC822.SIZE and, when it equals the
  file size, a BODY[] served with bare LFs.

The message is sent as the README's first dialog is typed into ``nc``: after the
greeting, the whole dialog in one write (the server offers PIPELINING).
"""

from __future__ import annotations

import imaplib
import re
from pathlib import Path

import pytest

from helpers.dovecot import PASSWORD, dovecot_imap
from helpers.servers import EXAMPLE, InProcessServer
from helpers.snail import print_first_message
from helpers.tools import require_tool
from helpers.wire import RawSMTP, queue_id_of

pytestmark = pytest.mark.interop

SENDER = "me@example.com"
RCPT = f"alice@{EXAMPLE}"
# Header and body lines a reader must keep apart and intact: a folded header, a line
# that was dot-stuffed on the wire, trailing spaces, an empty line inside the body.
HEADER_LINES = [
    f"From: Me <{SENDER}>",
    f"To: <{RCPT}>",
    "Subject: hello",
    "X-Folded: first part",
    "\tsecond part",
]
BODY_LINES = ["Hi there.", ".dot line", "trailing spaces   ", "", "Bye."]
MESSAGE = ("\r\n".join([*HEADER_LINES, "", *BODY_LINES]) + "\r\n").encode()
IMAP_TIMEOUT = 10.0  # seconds for each IMAP read
NAME_SIZES_RE = re.compile(r",S=(\d+),W=(\d+)$")


def stuffed(message: bytes) -> bytes:
    """The DATA form of ``message``: a line starting with "." gets one more."""
    return message.replace(b"\r\n.", b"\r\n..")


def deliver(server: InProcessServer) -> Path:
    """Send MESSAGE to alice as one write after the greeting; return its Maildir file."""
    with RawSMTP(server.host, server.port) as raw:
        raw.greeting()
        raw.send(
            f"EHLO client.test\r\nMAIL FROM:<{SENDER}>\r\nRCPT TO:<{RCPT}>\r\nDATA\r\n".encode()
            + stuffed(MESSAGE)
            + b".\r\nQUIT\r\n"
        )
        replies = raw.replies(6)  # EHLO, MAIL, RCPT, DATA, end of data, QUIT
        assert [r.code for r in replies] == [250, 250, 250, 354, 250, 221], replies
        queue_id = queue_id_of(replies[4].text)
    delivered = server.message_with_id(EXAMPLE, "alice", queue_id)
    [path] = server.message_files(EXAMPLE, "alice")
    assert path.read_bytes() == delivered
    return path


def test_snail_reads_delivered_message_cleanly(server: InProcessServer, tmp_path: Path) -> None:
    """s-nail separates headers and body of a delivered file and reports nothing."""
    exe = require_tool("s-nail")
    path = deliver(server)
    maildir = path.parent.parent
    done = print_first_message(exe, maildir, tmp_path)
    assert done.returncode == 0, done
    assert done.stderr == b"", done.stderr.decode("utf-8", "replace")
    out = done.stdout.decode("utf-8", "replace")
    assert "\r" not in out, out
    lines = out.split("\n")
    # s-nail prints a banner and a "From " line, then the header section as stored
    # (plus its own "Status:"), an empty line, and the body.
    start = lines.index(f"Return-Path: <{SENDER}>")
    assert lines[start + 1] == f"Delivered-To: {RCPT}"
    end = lines.index("", start)
    headers, body = lines[start:end], lines[end + 1 :]
    # s-nail unfolds the folded field.
    unfolded = [*HEADER_LINES[:3], "X-Folded: first part second part"]
    for line in unfolded:
        assert line in headers, out
    assert body[: len(BODY_LINES)] == BODY_LINES, out
    # Read-only: the file is where the server put it, unchanged.
    assert path.exists()


def fetch_size_and_body(host: str, port: int) -> tuple[int, bytes]:
    """LOGIN, SELECT INBOX, FETCH 1 (RFC822.SIZE BODY.PEEK[]) with imaplib."""
    imap = imaplib.IMAP4(host, port, timeout=IMAP_TIMEOUT)
    try:
        assert imap.login("alice", PASSWORD)[0] == "OK"
        status, count = imap.select("INBOX", readonly=True)
        assert (status, count) == ("OK", [b"1"]), count
        status, data = imap.fetch("1", "(RFC822.SIZE BODY.PEEK[])")
        assert status == "OK", data
    finally:
        imap.logout()
    [(envelope, literal), closing] = data
    assert isinstance(envelope, bytes) and isinstance(literal, bytes), data
    match = re.search(rb"RFC822\.SIZE (\d+)", envelope + bytes(closing))
    assert match, data
    return int(match[1]), literal


def test_dovecot_rfc822_size_matches_message(server: InProcessServer) -> None:
    """Dovecot reports the CRLF size (the W= of the name) and serves the CRLF message."""
    exe = require_tool("dovecot")
    path = deliver(server)
    stored = path.read_bytes()
    sizes = NAME_SIZES_RE.search(path.name)
    assert sizes, path.name
    file_size, crlf_size = int(sizes[1]), int(sizes[2])
    assert file_size == len(stored) == path.stat().st_size
    with dovecot_imap(exe, path.parent.parent) as dovecot:
        rfc822_size, body = fetch_size_and_body(dovecot.host, dovecot.port)
        log = dovecot.log.read_text("utf-8", "replace")
    assert " Error: " not in log and " Panic: " not in log, log
    # The message as sent, after our trace headers, with CRLF line endings.
    assert body.startswith(
        f"Return-Path: <{SENDER}>\r\nDelivered-To: {RCPT}\r\nReceived: from client.test".encode()
    ), body
    assert body.endswith(MESSAGE), body
    assert body == stored.replace(b"\n", b"\r\n")
    assert rfc822_size == crlf_size == len(body)
    # The file has no CR: with CRLF line endings it is one octet longer per LF.
    assert b"\r" not in stored and crlf_size == len(stored) + stored.count(b"\n")
