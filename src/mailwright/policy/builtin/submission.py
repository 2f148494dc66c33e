"""Submission rules (RFC 6409): AUTH before MAIL, and senders tied to their login.

* On a listener that requires AUTH (submission roles by default), MAIL before a
  successful AUTH is refused with 530 5.7.0 (RFC 4954 §6).
* With sender-login matching on, an authenticated user may only use its own
  addresses in MAIL FROM (553 5.7.1 otherwise, Postfix's
  ``reject_sender_login_mismatch``).  The null sender is allowed: it is how
  auto-replies and DSNs are sent.
"""

from __future__ import annotations

from typing import Protocol

from mailwright.policy.context import SessionContext
from mailwright.policy.verdict import Reject, Verdict
from mailwright.smtp import MailFrom, codes


class AddressOwners(Protocol):
    def owns_address(self, login: str, address: str) -> bool: ...


class RequireAuth:
    name = "require_auth"

    def on_mail(self, ctx: SessionContext, mail: MailFrom) -> Verdict | None:
        if ctx.auth_user is None and ctx.require_auth:
            return Reject(codes.R530_AUTH_REQUIRED, "MAIL before AUTH on a submission listener")
        return None


class SenderLoginMatch:
    name = "sender_login_match"

    def __init__(self, owners: AddressOwners) -> None:
        self._owners = owners

    def on_mail(self, ctx: SessionContext, mail: MailFrom) -> Verdict | None:
        if ctx.auth_user is None or not ctx.sender_login_match:
            return None
        if mail.address is None:
            return None
        if self._owners.owns_address(ctx.auth_user, str(mail.address)):
            return None
        return Reject(
            codes.R553_SENDER_NOT_OWNED, f"{ctx.auth_user} may not send as {mail.address}"
        )
