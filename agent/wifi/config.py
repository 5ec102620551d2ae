"""The `[wifi]` section of the agent config: one sniffer, live or replaying a capture."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, model_validator

from agent.configbase import Identifier, Strict


class WifiConfig(Strict):
    """Wi-Fi probe sniffer settings; no ``interface`` and no ``pcap`` means no sniffer."""

    sniffer: Identifier = "front"
    interface: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_.:-]{1,15}$")
    channels: tuple[int, ...] = Field(default=(1, 6, 11), min_length=1)
    dwell_ms: int = Field(default=250, ge=50, le=10_000)
    # Replay a capture instead of sniffing (the demo); speed 0 replays as fast as possible.
    pcap: Path | None = None
    speed: float = Field(default=1.0, ge=0.0, le=10_000.0)
    visitor_rssi_dbm: int = Field(default=-70, ge=-100, le=0)
    visitor_dwell_s: int = Field(default=120, ge=0, le=86_400)
    visit_gap_s: int = Field(default=300, ge=30, le=86_400)
    fixed_fraction: float = Field(default=0.7, gt=0.0, le=1.0)
    fixed_horizon_h: float = Field(default=12.0, ge=1.0, le=72.0)
    calibration: Path | None = None
    stable_keys: bool = False
    # Local roll-ups and (stable mode) the seen-before identifiers are kept this many days.
    retention_days: int = Field(default=90, ge=1, le=3650)
    retry_max_s: float = Field(default=60.0, ge=1.0, le=3600.0)

    @model_validator(mode="after")
    def _one_source(self) -> WifiConfig:
        if self.interface is not None and self.pcap is not None:
            raise ValueError("set either wifi.interface (live capture) or wifi.pcap, not both")
        for channel in self.channels:
            if not (1 <= channel <= 14 or 32 <= channel <= 196):
                raise ValueError(f"wifi.channels: {channel} is not a 2.4/5 GHz channel")
        return self

    @property
    def enabled(self) -> bool:
        """True when a sniffer (live or replay) is configured."""
        return self.interface is not None or self.pcap is not None
