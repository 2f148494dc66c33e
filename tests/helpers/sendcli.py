"""Helpers for the ``mailwright send`` tests: run the command (click's runner, in this
process) and mask the volatile parts of its transcript for golden comparisons."""

from __future__ import annotations

import re
import socket
import threading
from dataclasses import dataclass

from click.testing import CliRunner

from mailwright.cli.main import cli

CLIENT = "client.test"
# A fixed message: Date, Message-Id and Subject given, so SIZE= and the body are stable.
FIXED = (
    "--helo",
    CLIENT,
    "--header",
    "Date: Thu, 01 Jan 2026 00:00:00 +0000",
    "--header",
    "Message-Id: <golden@client.test>",
    "--subject",
    "golden",
    "--timeout",
    "10",
)

_MASKS = [
    (re.compile(r"^ *\d+\.\d{3} ", re.M), "T "),
    (re.compile(r"\]:\d+"), "]:PORT"),
    (re.compile(r"(Connect call failed \('[^']+', )\d+\)"), r"\1PORT)"),
    (re.compile(r"queued as [0-9A-Z]{16}"), "queued as QID"),
    (re.compile(r"queued as [0-9A-F]{8,12}\b"), "queued as QID"),  # Postfix's short ids
    (re.compile(r"(trustme v[\d.]+|#)[\w-]{16}"), r"\1ID"),  # trustme's random serials
    (re.compile(r"(TLS peer validity: ).*"), r"\1DATES"),
    # SASL challenges are random (CRAM-MD5 timestamp, SCRAM nonce and salt).
    (re.compile(r"^(T <~  334 )\S{16,}$", re.M), r"\1CHALLENGE"),
    (re.compile(r"^(T <-  334 )\S{16,}$", re.M), r"\1CHALLENGE"),
]


def mask(text: str) -> str:
    for pattern, repl in _MASKS:
        text = pattern.sub(repl, text)
    return text


@dataclass
class Run:
    status: int
    out: str
    err: str

    @property
    def golden(self) -> str:
        return mask(self.out)

    def lines(self) -> list[str]:
        return self.golden.splitlines()


def send(*args: str, env: dict[str, str] | None = None, fixed: bool = True) -> Run:
    runner = CliRunner()
    result = runner.invoke(
        cli, ["send", *(FIXED if fixed else ()), *args], env=env, catch_exceptions=False
    )
    return Run(result.exit_code, result.stdout, result.stderr)


class ScriptedPeer:
    """A one-connection SMTP peer on a loopback port, for what no real server does on
    request (a refusing greeting, a refused BDAT): answers each command by its verb
    from ``replies`` ("CONNECT" is the greeting), 250 otherwise; reads a DATA body to
    the lone dot and a BDAT chunk by its size, as RFC 5321/3030 frame them."""

    def __init__(self, replies: dict[str, str]) -> None:
        self.replies = {"CONNECT": "220 scripted.test ESMTP", **replies}
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.sock.settimeout(10)
        self.port = self.sock.getsockname()[1]
        self.commands: list[str] = []
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _reply(self, conn: socket.socket, verb: str, default: str = "250 2.0.0 Ok") -> str:
        reply = self.replies.get(verb, default)
        conn.sendall(reply.encode() + b"\r\n")
        return reply

    def _serve(self) -> None:
        try:
            conn, _ = self.sock.accept()
        except OSError:
            return
        with conn, conn.makefile("rb") as rfile:
            conn.settimeout(10)
            if not self._reply(conn, "CONNECT").startswith("220"):
                rfile.readline()  # the client's QUIT
                return
            while line := rfile.readline():
                text = line.decode("utf-8", "replace").rstrip("\r\n")
                self.commands.append(text)
                verb = text.split(" ", 1)[0].upper()
                if verb == "EHLO":
                    ehlo = "250-scripted.test\r\n250-PIPELINING\r\n250 CHUNKING"
                    self._reply(conn, "EHLO", ehlo)
                elif verb == "DATA":
                    if self._reply(conn, "DATA", "354 go ahead").startswith("354"):
                        while rfile.readline() not in (b".\r\n", b""):
                            pass
                        self._reply(conn, ".")
                elif verb == "BDAT":
                    rfile.read(int(text.split()[1]))
                    self._reply(conn, "BDAT")
                elif verb == "QUIT":
                    self._reply(conn, "QUIT", "221 2.0.0 Bye")
                    return
                else:
                    self._reply(conn, verb)

    def close(self) -> None:
        self.sock.close()
        self.thread.join(10)
