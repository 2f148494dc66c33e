"""TLS: the server's certificates (``[tls]``) and the outbound policy table (``[[tls_policy]]``).

Inbound: STARTTLS (RFC 3207) and implicit TLS (RFC 8314) with certificates chosen by
SNI.  Outbound: per-domain requirements as Postfix's smtp_tls_policy_maps.  Both
sections only name files and levels; ``mailwright.net.tls`` and
``mailwright.delivery.tlspolicy`` act on them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from mailwright.config.base import Frozen, domain_name


class CertificateConfig(Frozen):
    """One certificate: ``cert`` is the PEM chain (leaf first), ``key`` its PEM private key.

    Relative paths are taken relative to the config file's directory (``parse_config``),
    like ``data_dir``; files are read by ``mailwright.net.tls.TlsManager`` at start-up and
    on reload, so a missing file is reported there, with its path.
    """

    cert: Path
    key: Path

    @model_validator(mode="before")
    @classmethod
    def _both_files(cls, data: Any) -> Any:
        if isinstance(data, dict):
            for name in ("cert", "key"):
                if not data.get(name):
                    raise ValueError(
                        f"{name} is missing: each certificate needs cert (the PEM "
                        "certificate chain file) and key (the PEM private key file)"
                    )
        return data

    def resolved(self, base: Path) -> CertificateConfig:
        return CertificateConfig(cert=base / self.cert, key=base / self.key)


class TlsConfig(Frozen):
    """TLS for STARTTLS (RFC 3207) and implicit TLS (RFC 8314).

    ``certificates`` are chosen by SNI; the first is the default for clients that send
    no (or an unknown) server name.  With none configured and ``self_signed`` on, a
    self-signed certificate for ``smtp.hostname`` is generated in ``data_dir/tls`` on
    first start.  With none and ``self_signed`` off, TLS is disabled (``enabled``).
    ``min_version`` defaults to TLS 1.2 (RFC 8996 deprecates 1.0/1.1; RFC 8314 §4.1).
    """

    certificates: list[CertificateConfig] = Field(default_factory=list)
    min_version: Literal["TLSv1.2", "TLSv1.3"] = "TLSv1.2"
    self_signed: bool = True

    @field_validator("certificates")
    @classmethod
    def _no_duplicates(cls, value: list[CertificateConfig]) -> list[CertificateConfig]:
        seen = set()
        for cert in value:
            if cert.cert in seen:
                raise ValueError(f"certificate {cert.cert} is listed twice")
            seen.add(cert.cert)
        return value

    @property
    def enabled(self) -> bool:
        return bool(self.certificates) or self.self_signed

    def resolved(self, base: Path) -> TlsConfig:
        """A copy with relative certificate paths made relative to ``base``."""
        certs = [c.resolved(base) for c in self.certificates]
        return self.model_copy(update={"certificates": certs})


class TlsPolicyConfig(Frozen):
    """One ``[[tls_policy]]`` entry: the TLS an outbound delivery to ``domain`` must
    meet, as Postfix's smtp_tls_policy_maps: ``none`` (never STARTTLS), ``may``
    (opportunistic), ``encrypt`` (TLS required), ``verify`` (TLS with a certificate
    valid for the MX host name).  DANE and an enforced MTA-STS policy take precedence
    (``mailwright.delivery.tlspolicy.decide``)."""

    domain: str
    mode: Literal["none", "may", "encrypt", "verify"]

    @field_validator("domain")
    @classmethod
    def _lower_domain(cls, value: str) -> str:
        return domain_name(value)
