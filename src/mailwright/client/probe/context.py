"""What every check receives: the target, the settings and the report to fill."""

from __future__ import annotations

from dataclasses import dataclass

from mailwright.client.probe.certs import server_name_for
from mailwright.client.probe.dialog import ProbeSettings, Target
from mailwright.client.probe.report import Report


@dataclass(slots=True)
class Context:
    target: Target
    settings: ProbeSettings
    report: Report

    @property
    def cert_name(self) -> str | None:
        """The name the certificate must carry: ``--tls-name``, else the host when it
        is a name (an IP target has no name to check against)."""
        return self.settings.tls_name or server_name_for(self.target.host)
