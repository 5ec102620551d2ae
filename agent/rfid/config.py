"""The `[rfid]` section of the agent config (placeholder until the RFID work fills it)."""

from __future__ import annotations

from agent.configbase import Strict


class RfidConfig(Strict):
    """RFID settings; empty means no RFID device."""
