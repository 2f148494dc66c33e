"""Run a command under a seccomp filter: ``python3 seccomp_exec.py SPEC.json CMD...``.

Run by the *system* Python (``/usr/bin/python3``), which has libseccomp's bindings
(Debian python3-seccomp); the filter survives ``execv``, so ``CMD`` (the venv's
``mailwright serve``) and every process it starts (the delivery worker) run under it,
as a systemd unit's processes run under its ``SystemCallFilter=``.  SPEC is what
``helpers.syscall_filter.seccomp_spec`` writes: ``{"default": action, "rules": {call:
action}}``, an action being "allow", "kill" (the whole process, SIGSYS, as systemd
does) or an errno number.  Calls this architecture does not have are skipped, as
systemd skips them.  Standard library and seccomp only: this is not the venv.
"""

import json
import os
import sys

import seccomp


def action(value):
    if value == "allow":
        return seccomp.ALLOW
    if value == "kill":
        return seccomp.KILL_PROCESS
    return seccomp.ERRNO(int(value))


def main(argv):
    if len(argv) < 3:
        print("usage: seccomp_exec.py SPEC.json COMMAND [ARG...]", file=sys.stderr)
        return 2
    with open(argv[1], encoding="utf-8") as spec_file:
        spec = json.load(spec_file)
    default = spec["default"]
    seccomp_filter = seccomp.SyscallFilter(action(default))
    for call, value in sorted(spec["rules"].items()):
        if value == default:
            continue  # libseccomp refuses a rule that repeats the default action
        if seccomp.resolve_syscall(seccomp.Arch.NATIVE, call) < 0:
            continue  # unknown, or not a system call on this architecture
        seccomp_filter.add_rule(action(value), call)
    seccomp_filter.load()
    os.execv(argv[2], argv[2:])


if __name__ == "__main__":
    sys.exit(main(sys.argv))
