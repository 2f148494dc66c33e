"""The outbound SMTP/LMTP client session: the client half of the protocol core
(``smtp.ClientConnection``) over asyncio, used by the relay and by ``mailwright send``."""
