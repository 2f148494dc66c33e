"""A systemd unit's system-call filter as a seccomp filter a test can apply.

``unit_filter`` reads the ``SystemCallFilter=`` and ``SystemCallErrorNumber=`` lines
of a unit's ``[Service]`` section; ``seccomp_spec`` resolves them, as systemd does
(systemd.exec(5)), into a default action and per-call rules, expanding the ``@sets``
with what ``systemd-analyze syscall-filter`` prints for this systemd.
``seccomp_exec.py`` (run by the system Python, which has Debian's python3-seccomp)
loads that filter and execs the server under it.

The semantics mirrored:

* the first ``SystemCallFilter=`` decides the mode: an allow list (everything else is
  killed with SIGSYS, or fails with ``SystemCallErrorNumber=``) or, with ``~``, a deny
  list.  In allow mode systemd adds ``@default`` and the calls exec needs itself;
* each later line adds names to the set if it is of the first line's kind and removes
  them if not; an empty assignment resets the filter;
* ``name:errno`` in a deny list makes that call fail with the errno instead.
"""

from __future__ import annotations

import errno
import json
import re
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypedDict

# Always allowed in allow-list mode (systemd.exec(5), SystemCallFilter=): "execve(),
# exit(), exit_group(), getrlimit(), rt_sigreturn(), sigreturn() and the system calls
# for querying time and sleeping" (the latter are in @default, which systemd adds).
IMPLICIT_ALLOW = (
    "@default",
    "execve",
    "exit",
    "exit_group",
    "getrlimit",
    "rt_sigreturn",
    "sigreturn",
)
KILL = "kill"
ALLOW = "allow"
SYSTEMD_ANALYZE_TIMEOUT = 30.0

_DIRECTIVE = re.compile(r"^(SystemCallFilter|SystemCallErrorNumber)=(.*)$")


Action = str | int  # "allow", "kill" or an errno number


class SeccompSpec(TypedDict):
    default: Action
    rules: dict[str, Action]


@dataclass
class UnitFilter:
    """The filter lines of a unit, in order, and its ``SystemCallErrorNumber=``."""

    filters: list[str] = field(default_factory=list)
    error_number: str | None = None


def unit_filter(unit_text: str) -> UnitFilter:
    found = UnitFilter()
    section = ""
    for raw in unit_text.splitlines():
        line = raw.strip()
        if line.startswith("[") and line.endswith("]"):
            section = line
            continue
        match = _DIRECTIVE.match(line)
        if section != "[Service]" or match is None:
            continue
        key, value = match.group(1), match.group(2).strip()
        if key == "SystemCallFilter":
            found.filters.append(value)
        else:
            found.error_number = value or None
    return found


def syscall_sets(systemd_analyze: str) -> dict[str, list[str]]:
    """Every ``@set`` and its entries (names and nested ``@sets``) as this systemd's
    ``systemd-analyze syscall-filter`` prints them."""
    done = subprocess.run(
        [systemd_analyze, "syscall-filter"],
        capture_output=True,
        text=True,
        check=True,
        timeout=SYSTEMD_ANALYZE_TIMEOUT,
    )
    sets: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in done.stdout.splitlines():
        if line.startswith("@"):
            current = sets.setdefault(line.strip(), [])
        elif current is not None and line.strip() and not line.strip().startswith("#"):
            current.append(line.strip())
    return sets


def _expand(entry: str, sets: dict[str, list[str]]) -> set[str]:
    if not entry.startswith("@"):
        return {entry}
    if entry not in sets:
        raise ValueError(f"unknown system call set {entry}")
    names: set[str] = set()
    for item in sets[entry]:
        names |= _expand(item, sets)
    return names


def _errno(value: str) -> int:
    """``EPERM`` or ``1`` -> 1."""
    return int(value) if value.isdigit() else int(getattr(errno, value))


def seccomp_spec(unit: UnitFilter, sets: dict[str, list[str]]) -> SeccompSpec:
    """``{"default": action, "rules": {call: action}}``, an action being "allow",
    "kill" or an errno number: what ``seccomp_exec.py`` loads."""
    refused: Action = KILL if unit.error_number in (None, KILL) else _errno(unit.error_number)
    allow_mode: bool | None = None
    chosen: dict[str, Action] = {}  # allow mode: allowed calls; deny mode: denied ones
    for value in unit.filters:
        if not value:
            allow_mode, chosen = None, {}
            continue
        invert = value.startswith("~")
        entries = value.lstrip("~").split()
        if allow_mode is None:
            allow_mode = not invert
            if allow_mode:
                for entry in IMPLICIT_ALLOW:
                    chosen.update(dict.fromkeys(_expand(entry, sets), ALLOW))
        for entry in entries:
            name, _, suffix = entry.partition(":")
            adds = invert != allow_mode  # a line of the first line's kind adds
            for call in _expand(name, sets):
                if not adds:
                    chosen.pop(call, None)
                elif allow_mode:
                    chosen[call] = ALLOW
                elif not suffix:
                    chosen[call] = refused
                else:
                    chosen[call] = KILL if suffix == KILL else _errno(suffix)
    if allow_mode is None:
        return {"default": ALLOW, "rules": {}}
    if allow_mode:
        return {"default": refused, "rules": chosen}
    return {"default": ALLOW, "rules": chosen}


def write_spec(path: Path, spec: SeccompSpec) -> Path:
    path.write_text(json.dumps(spec, sort_keys=True, indent=1), "utf-8")
    return path
