"""Third-party peers for interop tests.

A peer that is missing, or installed without a capability a test needs (swaks without
its TLS modules), skips the test with a reason naming the Debian package(s) to install,
unless ``MAILWRIGHT_REQUIRE_INTEROP=1`` (``.ci/run`` sets it): then the test fails with
the same reason, so CI cannot pass by skipping.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
from typing import NoReturn

import pytest

REQUIRE_ENV = "MAILWRIGHT_REQUIRE_INTEROP"

# swaks' TLS needs the Perl module Net::SSLeay; Debian's swaks only *recommends* the
# packages, so `apt-get install --no-install-recommends swaks` has no TLS.
SWAKS_TLS_PACKAGES = ("libnet-ssleay-perl", "libio-socket-ssl-perl")
# `swaks --support` prints one line per feature: "=== TLS supported" on standard
# output when it can do TLS, "*** TLS not available: requires Net::SSLeay" on standard
# error when it cannot (exit status 0 either way, swaks 20201014 and 20240103).
SWAKS_TLS_SUPPORTED = "=== TLS supported"
# Bound on a capability probe (`swaks --support`, `python3 -c "import seccomp"`).
PROBE_TIMEOUT = 30.0


def missing(what: str, packages: tuple[str, ...]) -> NoReturn:
    """Skip (or, under ``MAILWRIGHT_REQUIRE_INTEROP=1``, fail) because ``what`` is
    missing; the reason names the Debian ``packages`` that provide it."""
    install = f"apt-get install {' '.join(packages)}"
    if os.environ.get(REQUIRE_ENV) == "1":
        pytest.fail(
            f"{what}, but {REQUIRE_ENV}=1 requires the interop tests (install: `{install}`)",
            pytrace=False,
        )
    pytest.skip(f"{what} (install: `{install}`)")


def require_root(what: str) -> None:
    """Skip (or, under ``MAILWRIGHT_REQUIRE_INTEROP=1``, fail) unless running as root:
    ``what`` (e.g. a private Postfix, whose daemons switch users) needs it."""
    if os.geteuid() == 0:
        return
    reason = f"{what} needs root"
    if os.environ.get(REQUIRE_ENV) == "1":
        pytest.fail(f"{reason}, but {REQUIRE_ENV}=1 requires the interop tests", pytrace=False)
    pytest.skip(reason)


def require_tool(name: str, package: str | None = None) -> str:
    """The path of executable ``name``.  If it is missing the test is skipped, unless
    ``MAILWRIGHT_REQUIRE_INTEROP=1``, in which case it fails saying what to install:
    Debian ``package`` (default: ``name``; they differ, e.g. systemd-analyze is in
    systemd)."""
    path = shutil.which(name)
    if path is not None:
        return path
    missing(f"{name} not installed", (package or name,))


def require_swaks_tls() -> str:
    """The path of a swaks that can do TLS (STARTTLS, ``-tlsc``); else skip or fail as
    ``require_tool`` does, naming the packages that give swaks its TLS."""
    path = require_tool("swaks")
    problem = _swaks_tls_problem(path)
    if problem is not None:
        missing(f"swaks cannot do TLS ({problem})", SWAKS_TLS_PACKAGES)
    return path


@functools.cache
def _swaks_tls_problem(path: str) -> str | None:
    """None when the swaks at ``path`` supports TLS, else what it said about TLS.
    Cached per path: the answer does not change during a run, and a stand-in swaks in
    a test has a path of its own."""
    done = subprocess.run(
        [path, "--support"],
        capture_output=True,
        text=True,
        errors="replace",
        timeout=PROBE_TIMEOUT,
        stdin=subprocess.DEVNULL,
    )
    if any(line.startswith(SWAKS_TLS_SUPPORTED) for line in done.stdout.splitlines()):
        return None
    said = [line.lstrip("*= ") for line in done.stderr.splitlines() if " TLS " in f" {line} "]
    return said[0] if said else f"`swaks --support` exited {done.returncode} without a TLS line"


def require_python_module(python: str, module: str, package: str) -> str:
    """The path of interpreter ``python`` if it can import ``module`` (from Debian
    ``package``: the system Python's modules, which the venv does not see); else skip
    or fail as ``require_tool`` does."""
    path = require_tool(python, package="python3")
    done = subprocess.run(
        [path, "-c", f"import {module}"],
        capture_output=True,
        timeout=PROBE_TIMEOUT,
        stdin=subprocess.DEVNULL,
    )
    if done.returncode != 0:
        missing(f"{path} cannot import {module}", (package,))
    return path
