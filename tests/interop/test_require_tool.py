"""``require_tool``: interop tests skip when their peer is missing, unless the run
demands them (``MAILWRIGHT_REQUIRE_INTEROP=1``, as CI does), where they fail loudly."""

from __future__ import annotations

import os
import sys

import pytest

from helpers import tools
from helpers.tools import REQUIRE_ENV, require_python_module, require_swaks_tls, require_tool

MISSING = "mailwright-no-such-peer"


def test_present_tool_returns_its_path():
    assert require_tool("sh").endswith("/sh")


def test_missing_tool_skips(monkeypatch):
    monkeypatch.delenv(REQUIRE_ENV, raising=False)
    with pytest.raises(pytest.skip.Exception, match=f"{MISSING} not installed"):
        require_tool(MISSING)


def test_missing_tool_fails_when_interop_is_required(monkeypatch):
    monkeypatch.setenv(REQUIRE_ENV, "1")
    with pytest.raises(pytest.fail.Exception, match=f"{MISSING} not installed.*{REQUIRE_ENV}=1"):
        require_tool(MISSING)


def test_swaks_missing_from_path_is_a_skip(monkeypatch):
    monkeypatch.delenv(REQUIRE_ENV, raising=False)
    monkeypatch.setattr(tools.shutil, "which", lambda name: None)
    with pytest.raises(pytest.skip.Exception, match="swaks not installed"):
        require_tool("swaks")


def test_missing_tool_reason_names_its_debian_package(monkeypatch):
    monkeypatch.delenv(REQUIRE_ENV, raising=False)
    with pytest.raises(pytest.skip.Exception, match=r"apt-get install no-such-package`"):
        require_tool(MISSING, package="no-such-package")


# What swaks 20201014 prints for `swaks --support` when Perl cannot load Net::SSLeay
# (seen with the module hidden from @INC): the supported features on standard output,
# the missing ones on standard error, exit status 0.
SWAKS_WITHOUT_TLS = """#!/bin/sh
if [ "$1" != "--support" ]; then
    echo '*** TLS not available: requires Net::SSLeay.  Exiting' >&2
    exit 10
fi
echo '=== AUTH CRAM-MD5 supported'
echo '=== Basic AUTH supported'
echo '=== Socket Transport supported'
echo '*** IPv6 not available: requires IO::Socket::INET6' >&2
echo '*** TLS not available: requires Net::SSLeay' >&2
exit 0
"""
SWAKS_WITH_TLS = """#!/bin/sh
echo '=== Socket Transport supported'
echo '=== TLS supported'
"""


def stand_in_swaks(tmp_path, monkeypatch, script: str) -> str:
    """A fake ``swaks`` first on PATH; returns its path."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    swaks = bin_dir / "swaks"
    swaks.write_text(script)
    swaks.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return str(swaks)


def test_swaks_without_tls_skips_naming_the_packages(tmp_path, monkeypatch):
    stand_in_swaks(tmp_path, monkeypatch, SWAKS_WITHOUT_TLS)
    monkeypatch.delenv(REQUIRE_ENV, raising=False)
    with pytest.raises(pytest.skip.Exception) as skipped:
        require_swaks_tls()
    reason = str(skipped.value)
    assert "swaks cannot do TLS (TLS not available: requires Net::SSLeay)" in reason
    assert "apt-get install libnet-ssleay-perl libio-socket-ssl-perl" in reason


def test_swaks_without_tls_fails_when_interop_is_required(tmp_path, monkeypatch):
    stand_in_swaks(tmp_path, monkeypatch, SWAKS_WITHOUT_TLS)
    monkeypatch.setenv(REQUIRE_ENV, "1")
    with pytest.raises(pytest.fail.Exception) as failed:
        require_swaks_tls()
    message = str(failed.value)
    assert "swaks cannot do TLS (TLS not available: requires Net::SSLeay)" in message
    assert f"{REQUIRE_ENV}=1 requires the interop tests" in message
    assert "apt-get install libnet-ssleay-perl libio-socket-ssl-perl" in message


def test_swaks_with_tls_is_returned(tmp_path, monkeypatch):
    swaks = stand_in_swaks(tmp_path, monkeypatch, SWAKS_WITH_TLS)
    monkeypatch.setenv(REQUIRE_ENV, "1")
    assert require_swaks_tls() == swaks


def test_system_python_without_the_module_skips_naming_the_package(monkeypatch):
    monkeypatch.delenv(REQUIRE_ENV, raising=False)
    with pytest.raises(pytest.skip.Exception) as skipped:
        require_python_module(sys.executable, "mailwright_no_such_module", "python3-no-such")
    reason = str(skipped.value)
    assert f"{sys.executable} cannot import mailwright_no_such_module" in reason
    assert "apt-get install python3-no-such`" in reason


def test_system_python_without_the_module_fails_when_interop_is_required(monkeypatch):
    monkeypatch.setenv(REQUIRE_ENV, "1")
    with pytest.raises(pytest.fail.Exception, match=r"cannot import .*apt-get install python3-x`"):
        require_python_module(sys.executable, "mailwright_no_such_module", "python3-x")


def test_system_python_with_the_module_is_returned(monkeypatch):
    monkeypatch.setenv(REQUIRE_ENV, "1")
    assert require_python_module(sys.executable, "json", "python3") == sys.executable


def test_not_root_skips_and_fails_when_interop_is_required(monkeypatch):
    """A private Postfix needs root: a non-root run skips, but under .ci/run it fails
    (a silent skip there once hid a missing peer)."""
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    monkeypatch.delenv(REQUIRE_ENV, raising=False)
    with pytest.raises(pytest.skip.Exception, match="needs root"):
        tools.require_root("a private Postfix instance")
    monkeypatch.setenv(REQUIRE_ENV, "1")
    with pytest.raises(pytest.fail.Exception, match="needs root"):
        tools.require_root("a private Postfix instance")
