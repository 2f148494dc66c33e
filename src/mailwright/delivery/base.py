"""The delivery seam: ``deliver(message, recipients) -> {address: DeliveryResult}``.

The protocol and result type live in ``queue.agent`` (the queue runner calls agents;
imports go ``delivery`` -> ``queue``); they are re-exported here for the agents.
"""

from __future__ import annotations

from mailwright.queue.agent import ClosableAgent, DeliveryAgent, DeliveryResult

__all__ = ["ClosableAgent", "DeliveryAgent", "DeliveryResult"]
