"""The frame every benchmark script runs in: measure, always clean up, then publish.

``measure`` runs the script's cells; a failure of the machinery (a server that does
not start, a tool that dies) is recorded in the results instead of a traceback, and
whatever happens every server is stopped and the temporary folder removed (unless
``--keep``).  ``publish`` writes the JSON (and optionally the Markdown) next to the
other results and prints the report.  ``exit_status`` is the same for every script:
2 when a run failed or was not verified, 1 when ``--check-targets`` finds a missed
target, else 0.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from _servers import ServerError, stop_all

Result = dict[str, Any]

# What a benchmark may meet that ends the run with a report rather than a traceback.
MACHINERY_ERRORS: tuple[type[BaseException], ...] = (
    ServerError,
    OSError,
    RuntimeError,
    subprocess.SubprocessError,
)


def measure(
    data: Result,
    started: datetime,
    tmp: Path,
    body: Callable[[], bool],
    *,
    keep: bool,
    errors: Iterable[type[BaseException]] = (),
    cleanup: Callable[[], None] | None = None,
) -> bool:
    """Run ``body`` (True when something it ran failed); True when the run failed."""
    failed = False
    try:
        failed = body()
    except (*MACHINERY_ERRORS, *errors) as exc:
        print(f"benchmark failed: {exc}", file=sys.stderr)
        failed = True
        data["error"] = f"{type(exc).__name__}: {exc}"
    finally:
        if cleanup is not None:
            cleanup()
        stop_all()
        if not keep:
            shutil.rmtree(tmp, ignore_errors=True)
    data["machine"]["loadavg_end"] = os.getloadavg()
    data["seconds"] = round((datetime.now(UTC) - started).total_seconds(), 1)
    return failed


def publish(
    data: Result,
    out: Path,
    stem: str,
    report: Callable[[Result], str],
    *,
    kept: str,
    keep_md: bool = False,
) -> None:
    """Write ``<stem>.json`` (and ``<stem>.md`` when ``keep_md``) into ``out``, print
    the report (which names the JSON file) and where the temporary data went."""
    out.mkdir(parents=True, exist_ok=True)
    json_path = out / f"{stem}.json"
    data["json_path"] = str(json_path)
    text = report(data)
    json_path.write_text(json.dumps(data, indent=2, default=str) + "\n")
    if keep_md:
        (out / f"{stem}.md").write_text(text + "\n")
    print(text)
    print(f"(total {data['seconds']} s; temporary data {kept})")


def kept_note(tmp: Path, keep: bool) -> str:
    return f"kept in {tmp}" if keep else "removed"


def exit_status(failed: bool, targets: list[dict[str, Any]], check_targets: bool) -> int:
    if failed:
        return 2
    if check_targets and not all(t["met"] for t in targets):
        return 1
    return 0
