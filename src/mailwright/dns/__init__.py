"""One asynchronous DNS interface for everything that looks names up (routing, MTA-STS,
DANE, sender authentication).  Callers depend on the ``Resolver`` protocol in
``dns.types``; the composition root builds the one implementation from ``[dns]``."""
