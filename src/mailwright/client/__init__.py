"""The test client behind ``mailwright send | mx | probe | explain | session``.

The logic lives here, below the command line (``cli`` only parses arguments and prints):
it speaks through the same client session as the outbound relay (``net.outbound``, on
the core's ``ClientConnection``) and looks names up through the same resolver
(``dns``), so the client can never disagree with the server about the wire."""
