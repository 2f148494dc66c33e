"""The probe's result: facts seen, findings, and the checks that could not run.

``to_json`` is the ``--json`` document, stable for scripts: ``findings`` carry their
``id``, ``severity`` (label), ``explanation``, ``fix`` and ``detail``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from mailwright.client.explain import short
from mailwright.client.probe.findings import Finding, Severity
from mailwright.smtp import Reply


@dataclass(slots=True)
class Report:
    target: str
    facts: dict[str, Any] = field(default_factory=dict)
    findings: list[Finding] = field(default_factory=list)
    # Checks that did not run or could not finish, and why (one line each).
    notes: list[str] = field(default_factory=list)
    # The probe could not talk to the server at all (no connection, no greeting).
    failed: str | None = None
    # Each refusal the report quotes -> what it means and what fixes it (client.explain).
    reply_notes: dict[str, str] = field(default_factory=dict)

    def add(self, *found: Finding) -> None:
        for item in found:
            if not any(f.id == item.id and f.detail == item.detail for f in self.findings):
                self.findings.append(item)

    def note_reply(self, *replies: Reply) -> None:
        """Explain the replies that were not plain successes, once each."""
        for reply in replies:
            if reply.code >= 300 and reply.code != 354:
                note = short(reply)
                if note:
                    self.reply_notes.setdefault(str(reply), note)

    def ids(self) -> list[str]:
        return [f.id for f in self.findings]

    def at_or_above(self, level: Severity) -> list[Finding]:
        return [f for f in self.findings if f.severity >= level]

    @property
    def worst(self) -> Severity | None:
        return max((f.severity for f in self.findings), default=None)

    def sorted_findings(self) -> list[Finding]:
        """Worst first; the order found within a severity."""
        return sorted(self.findings, key=lambda f: -f.severity)

    def to_json(self) -> dict[str, Any]:
        worst = self.worst
        return {
            "target": self.target,
            "failed": self.failed,
            "facts": self.facts,
            "findings": [
                {
                    "id": f.id,
                    "severity": f.severity.label,
                    "detail": f.detail,
                    "explanation": f.kind.explanation,
                    "fix": f.kind.fix,
                }
                for f in self.sorted_findings()
            ],
            "notes": self.notes,
            "reply_notes": self.reply_notes,
            "worst": worst.label if worst is not None else None,
        }
