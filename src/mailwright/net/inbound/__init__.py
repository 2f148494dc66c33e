"""The inbound SMTP session: one asyncio connection driving a ``smtp.ServerConnection``.

``session`` is the asyncio Protocol and its loop, and the one place that writes
replies, logs rejections and counts errors (DESIGN principle 5); ``handlers`` answer
commands, ``auth`` runs the AUTH exchange, ``starttls`` the TLS handshake,
``sessionlog`` and ``received`` say what a log line and a Received header hold.
"""
