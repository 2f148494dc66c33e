"""Suite-wide fixtures: real servers for the integration, interop and config tests.

``tests/`` is on ``sys.path`` (pytest's rootdir-relative conftest import), so test
modules import shared code as ``helpers.*``.
"""

from collections.abc import Iterator

import pytest

from helpers import dnsguard
from helpers.dnsserver import loopback_dns
from helpers.fixtures import (
    make_server,
    make_subprocess_server,
    server,
    subprocess_server,
)

__all__ = [
    "loopback_dns",
    "make_server",
    "make_subprocess_server",
    "server",
    "subprocess_server",
]


@pytest.fixture(scope="session", autouse=True)
def no_system_resolver() -> Iterator[None]:
    """Every name lookup and DNS query stays on this host (``helpers.dnsguard``)."""
    uninstall = dnsguard.install()
    yield
    uninstall()


@pytest.fixture(autouse=True)
def no_system_resolver_in_test(no_system_resolver: None) -> Iterator[None]:
    """Fail the test that asked the system resolver, even if its code caught the error."""
    yield from dnsguard.check()
