"""Drop root after binding: ports 25/587/465 need root, nothing else does.

``[process] user``/``group`` name the account to run as.  The order is the classic
one: supplementary groups, then the group, then the user (after ``setuid`` we could
no longer change groups).  Data files created before the drop (spool, Maildirs, the
self-signed key) are handed to that user first so the server can still write them.
"""

from __future__ import annotations

import grp
import os
import pwd
from pathlib import Path

from mailwright.config import ProcessConfig


class PrivilegeError(Exception):
    """The configured user or group does not exist, or we may not switch to it."""


def account_ids(config: ProcessConfig) -> tuple[int, int] | None:
    """(uid, gid) the server runs as after the drop; None when no drop is configured."""
    if config.user is None and config.group is None:
        return None
    try:
        user = pwd.getpwnam(config.user) if config.user else None
    except KeyError:
        raise PrivilegeError(f"unknown user {config.user!r} (process.user)") from None
    try:
        group = grp.getgrnam(config.group) if config.group else None
    except KeyError:
        raise PrivilegeError(f"unknown group {config.group!r} (process.group)") from None
    gid = group.gr_gid if group else (user.pw_gid if user else os.getgid())
    uid = user.pw_uid if user else os.getuid()
    return uid, gid


def drop_privileges(config: ProcessConfig, data_dir: Path | None = None) -> None:
    if config.user is None and config.group is None:
        return
    if os.geteuid() != 0:
        raise PrivilegeError("process.user/group are set but mailwright is not running as root")
    ids = account_ids(config)
    assert ids is not None  # a user or a group is set
    uid, gid = ids
    if data_dir is not None:
        for root, dirs, files in os.walk(data_dir):
            for name in [*dirs, *files]:
                os.chown(os.path.join(root, name), uid, gid, follow_symlinks=False)
        os.chown(data_dir, uid, gid)
    os.setgroups([gid])
    os.setgid(gid)
    if config.user is not None:
        os.setuid(uid)
