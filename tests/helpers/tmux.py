"""A real terminal for interactive commands: a private tmux server (its own socket,
no user config) running one command in a pane of a fixed size.

``type``/``key`` go through ``tmux send-keys`` exactly as keystrokes; ``wait_for``
polls ``capture-pane -p`` until a pattern shows or a deadline passes (never a fixed
sleep).  The pane's command is wrapped so its exit status is printed and the pane
stays readable afterwards (``exit status N``).
"""

from __future__ import annotations

import re
import shlex
import subprocess
import time
from collections.abc import Mapping
from pathlib import Path

from helpers.tools import require_tool

PANE_WIDTH = 160
PANE_HEIGHT = 60
HISTORY_LINES = 2000  # scrollback kept, so a long dialog can be read back whole
POLL = 0.05
WAIT_TIMEOUT = 20.0  # a reply over loopback to a loaded 2-core machine, generously
EXIT_RE = re.compile(r"exit status (\d+)")


class Tmux:
    def __init__(self, workdir: Path) -> None:
        self.exe = require_tool("tmux")
        self.socket = Path(workdir) / "tmux.sock"
        self.target = "t"

    def _tmux(self, *args: str) -> str:
        done = subprocess.run(
            [self.exe, "-S", str(self.socket), *args],
            capture_output=True,
            text=True,
            errors="replace",
            timeout=10,
            stdin=subprocess.DEVNULL,
        )
        assert done.returncode == 0, f"tmux {args[0]} failed: {done.stderr}"
        return done.stdout

    def start(self, argv: list[str], env: Mapping[str, str]) -> None:
        exports = " ".join(f"{k}={shlex.quote(v)}" for k, v in env.items())
        # `exec cat` keeps the pane (and what it shows) after the command ended,
        # waiting on the terminal rather than on a timer.  The shell catches SIGINT
        # (a caught signal is reset to the default in the child, an ignored one would
        # be inherited) so a test's Ctrl-C reaches the command and the pane survives.
        shell = f'trap true INT; env {exports} {shlex.join(argv)}; echo "exit status $?"; exec cat'
        self._tmux(
            "-f", "/dev/null", "new-session", "-d", "-s", self.target,
            "-x", str(PANE_WIDTH), "-y", str(PANE_HEIGHT), "sh", "-c", shell,
        )  # fmt: skip
        self._tmux("set-option", "-t", self.target, "history-limit", str(HISTORY_LINES))

    def type(self, text: str) -> None:
        """``text`` as keystrokes, literally (no key-name lookup)."""
        self._tmux("send-keys", "-t", self.target, "-l", text)

    def key(self, *names: str) -> None:
        """Named keys: Enter, BSpace, C-d, Tab ..."""
        self._tmux("send-keys", "-t", self.target, *names)

    def capture(self) -> str:
        """The whole pane, scrollback included, without trailing blanks."""
        out = self._tmux("capture-pane", "-p", "-J", "-S", "-", "-t", self.target)
        return "\n".join(line.rstrip() for line in out.splitlines()).strip("\n")

    def wait_for(self, pattern: str, timeout: float = WAIT_TIMEOUT, count: int = 1) -> str:
        """The pane once ``pattern`` (a regex) occurs ``count`` times in it."""
        regex = re.compile(pattern, re.MULTILINE)
        deadline = time.monotonic() + timeout
        while True:
            screen = self.capture()
            if len(regex.findall(screen)) >= count:
                return screen
            if time.monotonic() >= deadline:
                raise AssertionError(
                    f"{pattern!r} (x{count}) not on the terminal within {timeout}s:\n{screen}"
                )
            time.sleep(POLL)

    def exit_status(self, timeout: float = WAIT_TIMEOUT) -> int:
        match = EXIT_RE.search(self.wait_for(EXIT_RE.pattern, timeout))
        assert match is not None
        return int(match.group(1))

    def kill(self) -> None:
        subprocess.run(
            [self.exe, "-S", str(self.socket), "kill-server"],
            capture_output=True,
            timeout=10,
            stdin=subprocess.DEVNULL,
        )
