"""mailwright: a complete SMTP mail system."""

__version__ = "0.1.0"
