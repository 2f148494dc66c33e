"""The README's first minutes, as a newcomer types them (issue 8, Done-when): the
classic dialog piped through ``nc`` in one write, before the greeting has arrived,
to ``mailwright serve`` on the embedded default (moved off 2525 with ``--listen`` and
``--data-dir``, as the README says to when 2525 is taken); the message lands in
postmaster's Maildir and s-nail reads it without a complaint.

Both ways netcat-openbsd ends its input: plain ``nc`` keeps the connection open until
the server closes it after the 221, ``nc -N`` half-closes it as soon as the dialog is
written (as ncat does), before the server has answered anything.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from helpers.procs import wait_until
from helpers.servers import serve_command
from helpers.snail import print_first_message
from helpers.tools import require_tool

pytestmark = pytest.mark.interop

START_TIMEOUT = 20.0
DELIVERY_TIMEOUT = 10.0
TOOL_TIMEOUT = 30.0
LISTENING = re.compile(r"mailwright: listening on 127\.0\.0\.1:(\d+) \(inbound\)")
# The README's dialog, every line as typed, sent in one write.
DIALOG = (
    b"EHLO me\r\n"
    b"MAIL FROM:<me@example.com>\r\n"
    b"RCPT TO:<postmaster@localhost>\r\n"
    b"DATA\r\n"
    b"Subject: hello\r\n"
    b"\r\n"
    b"Hi there.\r\n"
    b".\r\n"
    b"QUIT\r\n"
)


@pytest.fixture
def embedded_default(tmp_path: Path) -> Iterator[tuple[int, Path]]:
    """``mailwright serve`` with no configuration, inbound on a free loopback port;
    (port, the data folder)."""
    out = tmp_path / "stdout.log"
    data = tmp_path / "data"
    flags = ("--listen", "inbound=127.0.0.1:0", "--data-dir", str(data))
    with serve_command(*flags, cwd=tmp_path, stdout=out):
        assert wait_until(lambda: LISTENING.search(out.read_text("utf-8")), START_TIMEOUT), (
            out.read_text("utf-8")
        )
        match = LISTENING.search(out.read_text("utf-8"))
        assert match is not None
        yield int(match.group(1)), data


@pytest.mark.parametrize("flags", [[], ["-N"]], ids=["nc", "nc-N"])
def test_dialog_piped_through_nc_lands_and_reads_cleanly_in_snail(
    embedded_default: tuple[int, Path], flags: list[str], tmp_path: Path
) -> None:
    nc = require_tool("nc", package="netcat-openbsd")
    snail = require_tool("s-nail")
    port, data = embedded_default
    done = subprocess.run(
        [nc, *flags, "127.0.0.1", str(port)],
        input=DIALOG,
        capture_output=True,
        timeout=TOOL_TIMEOUT,
    )
    codes = [line[:3] for line in done.stdout.split(b"\r\n") if line[3:4] == b" "]
    assert codes == [b"220", b"250", b"250", b"250", b"354", b"250", b"221"], done.stdout
    new = data / "mail" / "localhost" / "postmaster" / "new"
    assert wait_until(lambda: new.is_dir() and any(new.iterdir()), DELIVERY_TIMEOUT)
    [path] = list(new.iterdir())
    assert b"\r" not in path.read_bytes()
    read = print_first_message(snail, path.parent.parent, tmp_path)
    assert read.returncode == 0, read
    assert read.stderr == b"", read.stderr.decode("utf-8", "replace")
    lines = read.stdout.decode("utf-8", "replace").split("\n")
    assert "Subject: hello" in lines
    blank = lines.index("", lines.index("Subject: hello"))
    assert lines[blank + 1] == "Hi there."
