"""What every configuration model shares: frozen, no unknown fields; small validators.

A model is frozen (components share it and cannot change it under each other) and
forbids unknown fields (a misspelt setting is an error, never silently ignored).
"""

from __future__ import annotations

import ipaddress

from pydantic import BaseModel, ConfigDict

from mailwright.smtp import limits as smtp_limits


class Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


def ip_networks(value: list[str]) -> list[str]:
    """Validate a list of CIDR networks; the error names the bad entry."""
    for network in value:
        try:
            ipaddress.ip_network(network, strict=False)
        except ValueError:
            raise ValueError(f"{network!r} is not an IP network (CIDR)") from None
    return value


def domain_name(value: str) -> str:
    """A configured domain name, compared case-insensitively and without the root's
    trailing dot; at most 255 octets (RFC 5321 §4.5.3.1.2)."""
    value = value.strip().rstrip(".").lower()
    if not value or len(value) > smtp_limits.MAX_DOMAIN_LENGTH:
        raise ValueError("domain name is empty or longer than 255 octets")
    return value
