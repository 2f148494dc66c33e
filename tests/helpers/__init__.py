"""Shared fixtures and helpers for the integration, interop and config tests.

* ``servers``: an in-process server (``App`` on its own event loop in a thread) and a
  subprocess server (``mailwright serve``), both on 127.0.0.1 port 0 with a private
  data folder, and the Maildir/spool inspection helpers they share.
* ``wire``: a raw-socket SMTP client that sees exactly the bytes on the wire, and
  ``expect`` to compare a client's reply with a named reply from ``smtp.codes``.
* ``tools``: ``require_tool`` for interop tests that need a third-party peer, and
  ``require_swaks_tls`` for those that need swaks' TLS.
"""
