"""Free space on the spool file system (Postfix queue_minfree), on the real disk."""

from __future__ import annotations

import os
from pathlib import Path

from mailwright.policy.builtin.freespace import FreeSpace, free_bytes
from mailwright.policy.context import SessionContext
from mailwright.policy.verdict import TempFail
from mailwright.smtp import Bdat, Data, MailFrom, MailParams, codes

# Far beyond any real disk: a floor that can never be met.
UNREACHABLE = 2**62


def ctx() -> SessionContext:
    return SessionContext(
        session_id="s1",
        peer_ip="192.0.2.1",
        peer_port=25000,
        role="inbound",
        require_auth=False,
        sender_login_match=False,
        from_header_match=False,
    )


def test_free_bytes_is_what_statvfs_gives_unprivileged_users(tmp_path: Path) -> None:
    stat = os.statvfs(tmp_path)
    assert abs(free_bytes(tmp_path) - stat.f_bavail * stat.f_frsize) < 64 * 1024 * 1024


def test_data_and_bdat_are_refused_below_the_floor(tmp_path: Path) -> None:
    hook = FreeSpace(tmp_path, UNREACHABLE)
    for event in (Data(), Bdat(10)):
        verdict = hook.on_data(ctx(), event)
        assert isinstance(verdict, TempFail)
        assert verdict.reply == codes.R452_INSUFFICIENT_STORAGE
        assert str(tmp_path) in verdict.reason  # the log says where, the peer does not
    assert FreeSpace(tmp_path, 0).on_data(ctx(), Data()) is None


def test_mail_needs_the_floor_plus_the_declared_size(tmp_path: Path) -> None:
    free = free_bytes(tmp_path)
    margin = 1024 * 1024 * 1024  # other writers on the disk may move it a little
    floor = max(free - margin, 0)
    hook = FreeSpace(tmp_path, floor)
    assert hook.on_mail(ctx(), MailFrom(None)) is None
    assert hook.on_mail(ctx(), MailFrom(None, MailParams(size=1000))) is None
    refused = hook.on_mail(ctx(), MailFrom(None, MailParams(size=2 * margin)))
    assert isinstance(refused, TempFail)
    assert refused.reply == codes.R452_INSUFFICIENT_STORAGE
