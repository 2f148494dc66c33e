"""Helpers for the ``mailwright send`` tests: run the command (click's runner, in this
process) and mask the volatile parts of its transcript for golden comparisons."""

from __future__ import annotations

import re
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
    (re.compile(r"queued as [0-9A-Z]{16}"), "queued as QID"),
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
