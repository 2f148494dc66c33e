"""Stress mode: what changes when the open connections near ``smtp.max_connections``.

Postfix's smtpd switches to stress mode when a service reaches its process limit:
shorter timeouts (``smtpd_timeout`` 10 s) and a hard error limit of 1.  Here it starts a
little earlier, at ``STRESS_THRESHOLD`` of the cap, so that slots are freed before the
cap refuses anyone; and at the cap a new client is not refused while an idle session
(one that has not reached MAIL) holds a slot: the oldest such session is closed with
``421 4.7.0`` to make room (``ConnectionLimits.make_room``).

The connection counts live where connections are accepted: in the serving process, or
with session processes (``runtime.sessionpool``) in the main process, which tells the session
processes when stress mode starts and ends, and hands a connection admitted over the cap
over with the request to make room for it.
"""

from __future__ import annotations

# Stress mode while open connections >= this share of smtp.max_connections.
STRESS_THRESHOLD = 0.8
# Under stress, the error reply that reaches this count is 421 and closes (Postfix's
# stress smtpd_hard_error_limit = 1: one error is allowed, the next one disconnects).
STRESS_MAX_ERRORS = 2
# Connections admitted beyond the cap while idle sessions are closed to make room for
# them; each of those closes releases a slot within moments (at most the lingering
# close, inbound.LINGER_SECONDS).  Beyond it, new clients are refused as before.
MAX_EVICTIONS_IN_FLIGHT = 8
