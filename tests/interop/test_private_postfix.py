"""The private Postfix helper itself (``helpers/postfix.py``): a failed start names
Postfix's own complaint (the ``postfix`` command's via ``script``, the master's via
the maillog) instead of hanging or passing on a stranger's port; stop leaves no master
and no open port behind; a missing Postfix skips, or fails under ``.ci/run``."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from helpers import postfix
from helpers.postfix import private_postfix
from helpers.relaykit import accepts
from helpers.tools import REQUIRE_ENV

pytestmark = pytest.mark.interop


def test_a_bad_main_cf_value_is_named_by_the_failed_start() -> None:
    # postfix(1) rejects the host name before anything logs to the maillog: only its
    # terminal output (script) says why.
    with (
        pytest.raises(AssertionError, match=r"start failed") as failed,
        private_postfix(domain="pf.example.test", hostname="mx..pf.example.test"),
    ):
        pytest.fail("started with an invalid myhostname")
    assert "parameter myhostname: bad parameter value: mx..pf.example.test" in str(failed.value)


def test_a_port_in_use_is_named_by_the_failed_start() -> None:
    # Someone else listens on the port (and accepts connections, but never greets):
    # the master cannot bind it, and says so in the maillog.
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with (
            pytest.raises(AssertionError, match=r"start failed") as failed,
            private_postfix(port=port, domain="pf.example.test"),
        ):
            pytest.fail("started on a port someone else holds")
    assert f"fatal: bind 127.0.0.1 port {port}: Address already in use" in str(failed.value)


def test_stop_ends_the_master_and_closes_both_ports() -> None:
    with private_postfix(domain="pf.example.test", tls=True) as pf:
        assert pf.tls_port is not None
        ports = [pf.port, pf.tls_port]
        pid = int((pf.folder / "queue" / "pid" / "master.pid").read_text().split()[0])
        assert Path(f"/proc/{pid}").exists()
        assert all(accepts(pf.address, p) for p in ports)
    # No wait here: the helper's exit is what waited.
    assert not postfix._alive(pid)
    assert not any(accepts(pf.address, p) for p in ports)
    assert not pf.folder.exists()


def test_sasl_users_without_tls_is_refused() -> None:
    with (
        pytest.raises(ValueError, match="sasl_users needs tls"),
        private_postfix(domain="pf.example.test", sasl_users={"a": "b"}),
    ):
        pytest.fail("AUTH without TLS")


def test_missing_postfix_skips_and_fails_when_interop_is_required(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(postfix, "MASTER_CF", tmp_path / "master.cf")
    monkeypatch.delenv(REQUIRE_ENV, raising=False)
    with pytest.raises(pytest.skip.Exception, match=r"master.cf is missing.*install postfix`"):
        postfix.require_postfix()
    monkeypatch.setenv(REQUIRE_ENV, "1")
    with pytest.raises(pytest.fail.Exception, match=f"master.cf is missing.*{REQUIRE_ENV}=1"):
        postfix.require_postfix()
