"""The TLS policy decider as the configuration describes it (called by the
composition root with the process's resolver)."""

from __future__ import annotations

from pathlib import Path

from mailwright.config import Config
from mailwright.delivery.tlspolicy.cache import CACHE_DIR_NAME, PolicyCache
from mailwright.delivery.tlspolicy.decide import TlsPolicyDecider
from mailwright.delivery.tlspolicy.discover import MtaSts
from mailwright.delivery.tlspolicy.fetch import (
    HttpsPolicyFetcher,
    PolicyFetcher,
    ResolverConnector,
)
from mailwright.dns.types import Resolver
from mailwright.net.outbound.tlspolicy import TlsMode


def build_decider(
    config: Config,
    resolver: Resolver,
    *,
    fetcher: PolicyFetcher | None = None,
    extra_ca_file: Path | None = None,
) -> TlsPolicyDecider:
    """DANE and MTA-STS on (policies cached in ``data_dir/mta-sts``), plus every
    ``[[tls_policy]]``.  ``fetcher`` replaces the HTTPS fetcher (which otherwise
    connects to addresses from ``resolver`` and trusts the system CAs, plus
    ``extra_ca_file``)."""
    if fetcher is None:
        fetcher = HttpsPolicyFetcher(ResolverConnector(resolver), extra_ca_file=extra_ca_file)
    cache = PolicyCache(config.data_dir / CACHE_DIR_NAME)
    configured = {entry.domain: TlsMode(entry.mode) for entry in config.tls_policies}
    return TlsPolicyDecider(resolver, MtaSts(resolver, fetcher, cache), configured)
