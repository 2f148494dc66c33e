"""``mailwright serve --listen ROLE=ADDR:PORT`` (repeatable) and ``--data-dir PATH``:
move the embedded default (or a config file's listeners and data folder) without
writing TOML, e.g. when 2525 is taken.  The real command runs in a subprocess; a
message sent with smtplib must land under the data folder given on the command line.
"""

from __future__ import annotations

import re
import smtplib
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from helpers.procs import wait_until
from helpers.servers import serve_command

EXIT_CONFIG = 2
START_TIMEOUT = 20.0
DELIVERY_TIMEOUT = 10.0
LISTENING = re.compile(r"mailwright: listening on (\S+):(\d+) \((\w+)\)")
READY_MARK = "mailwright: data in "


def mailwright(*args: str | Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mailwright", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=cwd,
        stdin=subprocess.DEVNULL,
    )


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    """``mailwright serve`` with the flags under test, on the embedded default."""
    data = tmp_path / "elsewhere" / "data"
    flags = ("--listen", "inbound=127.0.0.1:0", "--listen", "submission=[::1]:0")
    with serve_command(
        *flags, "--data-dir", str(data), cwd=tmp_path, stdout=tmp_path / "stdout.log"
    ) as proc:
        yield proc


def test_serve_listen_and_data_dir_move_the_embedded_default(
    serve: subprocess.Popen[bytes], tmp_path: Path
) -> None:
    out = tmp_path / "stdout.log"
    assert wait_until(lambda: READY_MARK in out.read_text("utf-8"), START_TIMEOUT), out.read_text()
    listening = LISTENING.findall(out.read_text("utf-8"))
    roles = {role: (address, int(port)) for address, port, role in listening}
    assert sorted(roles) == ["inbound", "submission"]  # replaced: no 2465 listener
    assert roles["submission"][0] == "::1"
    host, port = roles["inbound"]
    assert port not in (0, 2525)
    # local_hostname given: smtplib would otherwise look this machine's name up (DNS).
    with smtplib.SMTP(host, port, "client.test", timeout=10) as client:
        client.sendmail(
            "me@example.com", ["postmaster@localhost"], b"Subject: flags\r\n\r\nHi.\r\n"
        )
    new = tmp_path / "elsewhere" / "data" / "mail" / "localhost" / "postmaster" / "new"
    assert wait_until(lambda: new.is_dir() and any(new.iterdir()), DELIVERY_TIMEOUT)
    [message] = list(new.iterdir())
    assert b"Subject: flags" in message.read_bytes()
    assert not (tmp_path / "mailwright-data").exists()  # the default folder was not used


@pytest.mark.parametrize(
    ("flags", "line"),
    [
        (
            ("--listen", "mx=127.0.0.1:25"),
            "mailwright: --listen mx=127.0.0.1:25: unknown role 'mx' "
            "(one of inbound, submission, submissions)",
        ),
        (
            ("--listen", "inbound=::1:2525"),
            "mailwright: --listen inbound=::1:2525: write an IPv6 address in brackets, "
            "e.g. [::1]:2525",
        ),
        (
            ("--listen", "inbound=127.0.0.1:70000"),
            "mailwright: --listen inbound=127.0.0.1:70000: port '70000' is not a number "
            "from 0 to 65535",
        ),
        (
            ("--listen", "inbound=localhost:2525"),
            "mailwright: --listen inbound=localhost:2525: 'localhost' is not an IP address",
        ),
        (
            ("--listen", "inbound=127.0.0.1:2600", "--listen", "submission=127.0.0.1:2600"),
            "mailwright: command line: listener.1: two listeners share the same address "
            "and port (listener.0 and listener.1)",
        ),
    ],
    ids=["role", "ipv6-brackets", "port", "not-ip", "same-port"],
)
def test_serve_bad_listen_value_is_one_line_exit_2(
    tmp_path: Path, flags: tuple[str, ...], line: str
) -> None:
    done = mailwright("serve", *flags, cwd=tmp_path)
    assert done.returncode == EXIT_CONFIG, done
    assert done.stderr.splitlines() == [line]
    assert not (tmp_path / "mailwright-data").exists()
