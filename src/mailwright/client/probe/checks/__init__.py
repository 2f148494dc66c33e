"""The probe's checks, one module each; ``client.probe.run`` calls them in order.

Each check gets the ``Context`` (target, settings, report) and adds facts, findings and
notes to the report; none raises for what the server or the network does.
"""
