"""The process model: how ``mailwright serve`` is built and run as processes.

``compose`` is the one composition root: it builds the main process (``server``), each
session process (``sessions``) and the delivery worker (``worker``) from the validated
config.  ``children`` is the one supervisor of the child processes (``workerlink`` and
``sessionpool`` are the main process's sides of them), and ``control`` the one typed
control channel they speak.  ``startup`` holds the start-up checks and the wording of
start-up failures; ``privileges`` and ``fdlimit`` the process's identity and limits.
"""
