"""File-system primitives that know nothing of mail: durable writes (``durable``).

A neutral package below every user of it (spool, delivery, accounts, TLS), so none of
them imports another's internals to reach it.
"""
