"""Every command's ``--help`` reads like a man page: what it does, its exit statuses
and examples (issue 11: "``--help`` of every command reads like a man page, with
examples")."""

from __future__ import annotations

import subprocess
import sys

import pytest

COMMANDS = ["send", "mx", "probe", "explain", "session", "queue", "sendmail"]


@pytest.mark.parametrize("command", COMMANDS)
def test_help_has_exit_statuses_and_examples(command: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "mailwright", command, "--help"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    page = done.stdout.lower()
    assert "exit status" in page, done.stdout
    assert "example" in page, done.stdout
    assert f"{command} " in page or "sendmail" in page
