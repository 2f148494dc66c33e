"""s-nail as a mail user's reader of a Maildir, in batch mode: no terminal (``-#``), no
rc files (``-:/``), read-only (``-R``); it prints the first message (``Print 1``)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

TOOL_TIMEOUT = 30.0  # seconds for one s-nail run (it reads one small message)


def print_first_message(exe: str, maildir: Path, home: Path) -> subprocess.CompletedProcess[bytes]:
    """Run s-nail (``exe``) on ``maildir`` with ``home`` as its HOME; what it printed."""
    return subprocess.run(
        [exe, "-#", "-:/", "-N", "-R", "-Y", "Print 1", "-Y", "quit", "-f", f"maildir://{maildir}"],
        capture_output=True,
        stdin=subprocess.DEVNULL,
        timeout=TOOL_TIMEOUT,
        env={"HOME": str(home), "PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C"},
    )
