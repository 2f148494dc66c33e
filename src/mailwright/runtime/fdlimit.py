"""The open-file limit (RLIMIT_NOFILE) against ``smtp.max_connections``.

Many systems start services with a soft limit of 1024 descriptors.  Past it, accept()
fails with EMFILE and clients see their connection closed without a word (1,100
connections gave 99 such closes), long before ``max_connections`` refuses anyone with
``421 4.7.0``.  So at start-up the soft limit is raised towards what the cap needs,
as far as the hard limit allows (no privilege is needed for that), and if it is still
too low the server says so, with the numbers.  Session processes and the delivery
worker inherit the raised limit.
"""

from __future__ import annotations

import logging
import resource

log = logging.getLogger(__name__)

# Descriptors per connection: its socket, and the spool file its message is written to
# while in DATA/BDAT.
FDS_PER_CONNECTION = 2
# Besides connections: listening sockets, the spool database and its journal, the mail
# log, the session processes' and the delivery worker's control sockets and pipes, TLS
# files read on reload (Postfix leaves a similar reserve to each smtpd process).
FD_MARGIN = 64


def fds_needed(max_connections: int) -> int:
    return max_connections * FDS_PER_CONNECTION + FD_MARGIN


def ensure_fd_limit(max_connections: int) -> int:
    """Raise the soft RLIMIT_NOFILE to what ``max_connections`` needs, up to the hard
    limit; log a warning if it stays below.  Returns the soft limit in force."""
    needed = fds_needed(max_connections)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft >= needed:
        return soft
    target = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
    if target > soft:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (ValueError, OSError) as exc:
            log.warning("cannot raise the open file limit from %d to %d: %s", soft, target, exc)
        else:
            log.info("open file limit raised from %d to %d", soft, target)
            soft = target
    if soft < needed:
        log.warning(
            "open file limit is %d (hard limit %s), below the %d that smtp.max_connections = "
            "%d needs (%d per connection + %d): clients beyond about %d connections will be "
            "closed without a reply; raise the limit (ulimit -n, systemd LimitNOFILE=) or "
            "lower smtp.max_connections",
            soft,
            "unlimited" if hard == resource.RLIM_INFINITY else hard,
            needed,
            max_connections,
            FDS_PER_CONNECTION,
            FD_MARGIN,
            max(0, (soft - FD_MARGIN) // FDS_PER_CONNECTION),
        )
    return soft
