"""Suite-wide fixtures: real servers for the integration, interop and config tests.

``tests/`` is on ``sys.path`` (pytest's rootdir-relative conftest import), so test
modules import shared code as ``helpers.*``.
"""

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
