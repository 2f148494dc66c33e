"""``mailwright session`` on the command line: usage errors are one line and exit
status 2 (before any connection, terminal or not), ``--help`` reads like a man page,
and ``--dns`` finds the host at the nameserver named (tmux: it needs a terminal)."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from helpers.servers import SubprocessServer
from helpers.tmux import Tmux
from session.test_terminal import command, enter, session_env

ZONE = """\
$ORIGIN example.test.
@    IN SOA ns.example.test. hostmaster.example.test. 1 3600 600 86400 60
mx   IN A 127.0.0.1
"""


def run(*args: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        command(*args),
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
        cwd=tmp_path,
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "XDG_STATE_HOME": str(tmp_path)},
    )


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (("127.0.0.1:99999",), "'127.0.0.1:99999': the port must be a number from 1 to 65535"),
        (("127.0.0.1:smtp",), "the port must be a number"),
        (("[::1",), "expected [IPv6]:PORT"),
        (("mx.example.test", "--dns", "ns.example.test"), "--dns ns.example.test: an IP address"),
        (("127.0.0.1:2525", "--helo", "two words"), "--helo 'two words': one domain name"),
        (("127.0.0.1:2525", "--transcript", "/nonexistent/t"), "/nonexistent/t: No such file"),
        (("127.0.0.1:2525",), "needs a terminal (for scripts, use mailwright send)"),
    ],
)  # fmt: skip
def test_usage_error_is_one_line_and_exit_status_2(
    args: tuple[str, ...], says: str, tmp_path: Path
) -> None:
    done = run(*args, tmp_path=tmp_path)
    assert done.returncode == 2, done
    assert done.stdout == ""
    [line] = done.stderr.splitlines()
    assert line.startswith("mailwright: session: ") and says in line


def test_help_reads_like_a_man_page(tmp_path: Path) -> None:
    done = run("--help", tmp_path=tmp_path)
    assert done.returncode == 0
    text = done.stdout
    for heading in ("PROMPTS AND HELPERS", "TRANSCRIPT MARKERS (", "EXIT STATUS\n", "EXAMPLES\n"):
        assert f"\n  {heading}" in text
    for status in ("0", "1", "2", "3", "130"):
        assert f"\n    {status} " in text
    assert "mailwright session 127.0.0.1:2525 --helo client.example.org" in text
    assert "--tls-on-connect" in text and "--dns IP[:PORT]" in text and "--no-history" in text


@pytest.fixture(scope="module")
def mw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SubprocessServer]:
    server = SubprocessServer(tmp_path_factory.mktemp("session-dns")).start()
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


def test_dns_option_finds_the_host_at_the_named_nameserver(
    mw: SubprocessServer, tmux: Tmux, tmp_path: Path, loopback_dns: object
) -> None:
    dns = loopback_dns(ZONE)  # type: ignore[operator]
    args = (f"mx.example.test:{mw.port}", "--dns", dns.nameserver, "--no-history")
    tmux.start(command(*args), session_env(tmp_path))
    tmux.wait_for(rf"^== connected to 127\.0\.0\.1:{mw.port}$")
    tmux.wait_for(r"^<- 220 ")
    enter(tmux, "QUIT")
    assert tmux.exit_status() == 0
    assert ("mx.example.test", "A") in dns.queries


def test_dns_option_name_not_found_is_one_line_and_exit_status_3(
    tmux: Tmux, tmp_path: Path, loopback_dns: object
) -> None:
    dns = loopback_dns(ZONE)  # type: ignore[operator]
    args = ("nowhere.example.test:2525", "--dns", dns.nameserver, "--no-history")
    tmux.start(command(*args), session_env(tmp_path))
    assert tmux.exit_status() == 3
    assert tmux.capture().splitlines() == [
        "mailwright: session: nowhere.example.test: no such domain (NXDOMAIN from 127.0.0.1)",
        "exit status 3",
    ]
