"""Byte-level tests of the sans-IO SMTP core (``mailwright.smtp``)."""
