"""Local recipients: accept known addresses of local domains, refuse unknown ones.

RFC 5321 §3.3 lets a server refuse a recipient at RCPT time; doing it there (550
5.1.1) rather than bouncing later is what avoids backscatter.  Recipients outside the
local domains get Continue, so the relay hooks (authenticated users, trusted
networks) may accept them; if none does, the pipeline refuses with 550 5.7.1.
"""

from __future__ import annotations

from mailwright.accounts.directory import LocalDirectory
from mailwright.policy.context import SessionContext
from mailwright.policy.verdict import Accept, Reject, Verdict
from mailwright.smtp import RcptTo, codes


class LocalRecipients:
    name = "local_recipients"

    def __init__(self, directory: LocalDirectory) -> None:
        self._directory = directory

    def on_rcpt(self, ctx: SessionContext, rcpt: RcptTo) -> Verdict | None:
        address = rcpt.address
        if address.domain and not self._directory.is_local_domain(address.domain):
            return None
        if self._directory.resolve(str(address)) is None:
            return Reject(codes.R550_NO_SUCH_USER, f"unknown local recipient {address}")
        return Accept()
