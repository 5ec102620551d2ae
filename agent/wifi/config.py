"""The `[wifi]` section of the agent config (placeholder until the Wi-Fi work fills it)."""

from __future__ import annotations

from agent.configbase import Strict


class WifiConfig(Strict):
    """Wi-Fi settings; empty means no Wi-Fi device."""
