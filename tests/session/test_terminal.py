"""``mailwright session`` in a real terminal: tmux runs it against ``mailwright serve``
(a subprocess), ``send-keys`` types the seeds' classic telnet dialog, and the pane
shows what a user sees.  The Maildir holds the message that was typed."""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from helpers.servers import EXAMPLE, SubprocessServer
from helpers.tmux import Tmux
from mailwright.client.explain import short
from mailwright.client.interactive.display import EXPLANATION_PREFIX

pytestmark = pytest.mark.interop

SENDER = "sender@remote.test"


@pytest.fixture(scope="module")
def mw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SubprocessServer]:
    server = SubprocessServer(tmp_path_factory.mktemp("session-serve")).start()
    try:
        yield server
    finally:
        server.terminate()


@pytest.fixture
def tmux(tmp_path: Path) -> Iterator[Tmux]:
    term = Tmux(tmp_path)
    try:
        yield term
    finally:
        term.kill()


def session_env(tmp_path: Path) -> dict[str, str]:
    return {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(tmp_path / "home"),
        "XDG_STATE_HOME": str(tmp_path / "state"),
        "PYTHONPATH": os.environ.get("PYTHONPATH", ""),
    }


def command(*args: str) -> list[str]:
    return [sys.executable, "-m", "mailwright", "session", *args]


def enter(term: Tmux, line: str) -> None:
    term.type(line)
    term.key("Enter")


def explained(screen: str, reply_line: str) -> None:
    """``reply_line`` is on the terminal, followed by its short explanation."""
    lines = screen.splitlines()
    index = lines.index(f"<- {reply_line}")
    assert lines[index + 1] == EXPLANATION_PREFIX + short(reply_line), lines[index : index + 2]


def test_classic_dialog_typed_in_a_terminal_arrives_in_the_maildir(
    mw: SubprocessServer, tmux: Tmux, tmp_path: Path
) -> None:
    tmux.start(command(f"{mw.host}:{mw.port}"), session_env(tmp_path))
    tmux.wait_for(r"^<- 220 ")
    tmux.wait_for(r"^smtp>$")

    enter(tmux, "HELO client.example.test")
    tmux.wait_for(r"^<- 250 ", count=1)
    # A typo corrected with Backspace, which telnet would have sent as ^H.
    tmux.type(f"MAIL FROM:<{SENDER[:-1]}x")
    tmux.key("BSpace")
    enter(tmux, f"{SENDER[-1]}>")
    tmux.wait_for(rf"^-> MAIL FROM:<{SENDER}>$")
    tmux.wait_for(r"^<- 250 2\.1\.0 ")
    enter(tmux, f"RCPT TO:<nobody@{EXAMPLE}>")
    tmux.wait_for(r"^<- 550 5\.1\.1 ")
    enter(tmux, f"RCPT TO:<alice@{EXAMPLE}>")
    tmux.wait_for(r"^<- 250 2\.1\.5 ")
    enter(tmux, "DATA")
    tmux.wait_for(r"^<- 354 ")
    tmux.wait_for(r"^data>$")
    enter(tmux, "Subject: typed in tmux")
    enter(tmux, "")
    enter(tmux, "Hello from a real terminal.")
    enter(tmux, ".leading dot, stuffed on the wire")
    enter(tmux, ".")
    tmux.wait_for(r"^<- 250 2\.0\.0 .*queued as")
    enter(tmux, "QUIT")
    tmux.wait_for(r"^<- 221 ")
    assert tmux.exit_status() == 0

    screen = tmux.capture()
    greeting = re.search(r"^<- (220 .*)$", screen, re.MULTILINE)
    queued = re.search(r"^<- (250 2\.0\.0 .*queued as.*)$", screen, re.MULTILINE)
    assert greeting and queued
    for reply in (
        greeting.group(1),
        "250 2.1.0 Ok",
        "550 5.1.1 Recipient address rejected: user unknown",
        "250 2.1.5 Ok",
        "354 End data with <CR><LF>.<CR><LF>",
        queued.group(1),
        "221 2.0.0 Bye",
    ):
        explained(screen, reply)
    assert "-> ..leading dot, stuffed on the wire" in screen  # the wire form is shown
    [message] = mw.maildir_messages(EXAMPLE, "alice")
    assert b"Subject: typed in tmux\n" in message
    assert b"\nHello from a real terminal.\n.leading dot, stuffed on the wire\n" in message
    assert message.startswith(f"Return-Path: <{SENDER}>\n".encode())  # the corrected one
    assert f"from=<{SENDER}>" in mw.mail_log()
    # Commands are kept in the history file; message lines are not.
    history = (tmp_path / "state" / "mailwright" / "session_history").read_text()
    assert f"+MAIL FROM:<{SENDER}>" in history.splitlines()
    assert "+HELO client.example.test" in history.splitlines()
    assert "typed in tmux" not in history


def test_history_recalls_the_last_sessions_commands(mw: SubprocessServer, tmp_path: Path) -> None:
    env = session_env(tmp_path)  # both sessions share XDG_STATE_HOME
    first, second = Tmux(tmp_path / "first"), Tmux(tmp_path / "second")
    for term in (first, second):
        term.socket.parent.mkdir()
    try:
        first.start(command(f"{mw.host}:{mw.port}"), env)
        first.wait_for(r"^smtp>$")
        enter(first, "NOOP first session")
        first.wait_for(r"^<- 250 ")
        enter(first, "QUIT")
        assert first.exit_status() == 0

        second.start(command(f"{mw.host}:{mw.port}"), env)
        second.wait_for(r"^smtp>$")
        second.key("Up", "Up")  # back past QUIT to the NOOP
        second.wait_for(r"^smtp> NOOP first session$")
        second.key("Enter")
        second.wait_for(r"^-> NOOP first session$")
        second.wait_for(r"^<- 250 ")
        enter(second, "QUIT")
        assert second.exit_status() == 0
    finally:
        first.kill()
        second.kill()
