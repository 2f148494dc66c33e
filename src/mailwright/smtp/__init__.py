"""mailwright's sans-IO SMTP protocol core (grows in this package; no I/O imports)."""

from mailwright.smtp._replies import Reply

__all__ = ["Reply"]
