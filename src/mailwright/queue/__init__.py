"""The queue: what happens to stored mail.  The runner (due times, bounded concurrent
delivery, leases), the retry schedule, bounces (RFC 3464) and delivery events.

Storage is ``spool`` (the ``SpoolStore`` protocol and its backends); this package only
uses that protocol, so the same runner drives every backend.  Imports go one way:
``delivery`` -> ``queue`` -> ``spool``; the agent seam the runner calls is defined here
(``queue.agent``) and implemented by ``delivery``.
"""
