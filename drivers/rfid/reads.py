"""The one reading type every RFID module shares: a tag seen by one antenna of one reader."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class TagRead:
    """One tag report: a tag seen by one antenna of one reader."""

    reader: str  # reader name (from config)
    antenna: int  # 1-based antenna id
    epc: bytes  # EPC bank contents, e.g. 12 bytes for EPC-96
    rssi: float  # peak RSSI, dBm
    seen_at_us: int  # LastSeenTimestampUTC from the reader, µs since the Unix epoch
    count: int  # TagSeenCount (1 if absent)
