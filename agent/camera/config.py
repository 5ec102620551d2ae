"""The `[camera]` section of the agent config (placeholder until the Camera work fills it)."""

from __future__ import annotations

from agent.configbase import Strict


class CameraConfig(Strict):
    """Camera settings; empty means no Camera device."""
