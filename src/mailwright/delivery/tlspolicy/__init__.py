"""Outbound TLS policy: which ``TlsPolicy`` (``mailwright.net.outbound.tlspolicy``) a
delivery to one MX host must meet — DANE (RFC 7672), MTA-STS (RFC 8461), the
per-domain ``[[tls_policy]]`` configuration, or opportunistic STARTTLS.

Modules, one concern each: ``mtasts`` (RFC 8461 records, policies, MX patterns),
``fetch`` (the HTTPS policy fetcher), ``cache`` (policies on disk), ``discover`` (the
§5.1 control flow over those three), ``certs`` and ``dane`` (TLSA and the peer check),
``decide`` (precedence; what the relay calls), ``build`` (from the configuration).
"""

from mailwright.delivery.tlspolicy.build import build_decider
from mailwright.delivery.tlspolicy.decide import DomainPlan, MxFilter, TlsPolicyDecider

__all__ = ["DomainPlan", "MxFilter", "TlsPolicyDecider", "build_decider"]
