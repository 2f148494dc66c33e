"""A raw-socket SMTP client that sees exactly the bytes on the wire, and reply checks.

``RawSMTP`` sends what it is given, byte for byte (no dot-stuffing, no line-ending
fixes), and parses replies strictly: every line must be ``ddd[ -]text CRLF``.  All
reads have a timeout, so a server that does not answer fails the test instead of
hanging it.
"""

from __future__ import annotations

import contextlib
import smtplib
import socket
import time
from dataclasses import dataclass

from helpers.servers import QUEUED_RE
from mailwright.smtp import Reply

READ_TIMEOUT = 5.0


@dataclass(frozen=True)
class WireReply:
    code: int
    lines: tuple[str, ...]  # text after "ddd-" / "ddd ", without CRLF
    raw: bytes

    @property
    def text(self) -> str:
        return "\n".join(self.lines)

    @property
    def enhanced(self) -> str:
        first = self.lines[0].split(" ", 1)[0] if self.lines else ""
        return first if first[:1].isdigit() and first.count(".") == 2 else ""

    def matches(self, expected: Reply) -> bool:
        return self.raw == expected.to_bytes()


class RawSMTP:
    def __init__(self, host: str, port: int, timeout: float = READ_TIMEOUT) -> None:
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.settimeout(timeout)
        self.buf = b""

    def __enter__(self) -> RawSMTP:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _fill(self) -> bool:
        try:
            chunk = self.sock.recv(65536)
        except ConnectionResetError:
            chunk = b""
        self.buf += chunk
        return bool(chunk)

    def reply(self) -> WireReply:
        """One complete (possibly multiline) reply; AssertionError on EOF or bad syntax."""
        lines: list[str] = []
        start = 0
        raw = b""
        while True:
            end = self.buf.find(b"\r\n", start)
            if end < 0:
                if not self._fill():
                    raise AssertionError(
                        f"connection closed in the middle of a reply: {self.buf!r}"
                    )
                continue
            line = self.buf[start:end]
            assert len(line) >= 3 and line[:3].isdigit(), f"bad reply line {line!r}"
            assert len(line) == 3 or line[3:4] in (b" ", b"-"), f"bad reply line {line!r}"
            lines.append(line[4:].decode("utf-8"))
            start = end + 2
            if line[3:4] != b"-":
                raw, self.buf = self.buf[:start], self.buf[start:]
                return WireReply(int(line[:3]), tuple(lines), raw)

    def replies(self, n: int) -> list[WireReply]:
        return [self.reply() for _ in range(n)]

    def cmd(self, line: str | bytes) -> WireReply:
        data = line.encode("utf-8") if isinstance(line, str) else line
        self.send(data + b"\r\n")
        return self.reply()

    def greeting(self) -> WireReply:
        reply = self.reply()
        assert reply.code == 220, reply
        return reply

    def ehlo(self, name: str = "client.test") -> WireReply:
        reply = self.cmd(f"EHLO {name}")
        assert reply.code == 250, reply
        return reply

    def closed_by_peer(self, timeout: float = READ_TIMEOUT) -> bool:
        """True if the server closes the connection (EOF) within ``timeout`` seconds,
        after any data still unread has been drained (and kept in ``self.buf``)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.sock.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                if not self._fill():
                    return True
            except TimeoutError:
                return False
            except OSError:
                return True
        return False


def expect(reply: tuple[int, bytes], expected: Reply) -> None:
    """Assert an ``smtplib``-style ``(code, message)`` reply equals a named reply.

    smtplib joins multiline text with "\\n" and strips the code; the enhanced status
    code stays at the start of each line.
    """
    code, message = reply
    prefix = f"{expected.enhanced} " if expected.enhanced else ""
    text = "\n".join(f"{prefix}{line}".rstrip(" ") for line in expected.lines)
    assert (code, message.decode("utf-8")) == (expected.code, text)


def queue_id_of(message: bytes | str) -> str:
    """The queue id from a ``250 2.0.0 Ok: queued as <ID>`` reply text."""
    data = message.encode() if isinstance(message, str) else message
    match = QUEUED_RE.search(data)
    assert match, f"no queue id in {data!r}"
    return match.group(1).decode()


CLIENT_NAME = "client.test"  # given explicitly: smtplib would otherwise ask DNS (getfqdn)


def smtplib_client(host: str, port: int, timeout: float = READ_TIMEOUT) -> smtplib.SMTP:
    """A stdlib client that never resolves its own name."""
    return smtplib.SMTP(host, port, local_hostname=CLIENT_NAME, timeout=timeout)


def message(subject: str = "test", body: bytes = b"Hello.\r\n", extra: bytes = b"") -> bytes:
    """A small RFC 5322 message with CRLF line ends."""
    return (
        b"From: Sender <sender@remote.test>\r\n"
        b"To: someone@example.test\r\n"
        + f"Subject: {subject}\r\n".encode()
        + b"Message-ID: <"
        + subject.encode("ascii", "replace")
        + b"@remote.test>\r\n"
        + extra
        + b"\r\n"
        + body
    )
