"""Device telemetry events: their payloads (msgspec mirrors of the JSON Schemas) and their rows.

Three kinds come from a store's devices, each already aggregated at the edge (raw reads, MACs
and frames never leave the store; config/schemas/*.json, docs in sync-protocol.md):

- ``tryon`` v1 (tryon.v1.json): one completed fitting-room session → a ``tryons`` row;
- ``wifi.window`` v1 (wifi-window.v1.json): one minute of the probe sniffer → ``wifi_windows``;
- ``footfall.window`` v1 (footfall-window.v1.json): one minute of an entrance camera →
  ``footfall_windows``.

:mod:`cloud.ingest` decodes them with :data:`DECODERS` and inserts the rows made here in the
batch's transaction, for the events that were new; the tables' keys (the event id for try-ons,
plus the agent's session id; store, device and window start for windows) make a repeat
harmless. This module does no I/O.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

import msgspec

MAX_INT32 = 2**31 - 1
WINDOW_S = 60
DWELL_BUCKETS = 6

Time = Annotated[datetime, msgspec.Meta(tz=True)]
Count = Annotated[int, msgspec.Meta(ge=0, le=MAX_INT32)]
# A name from the agent's config (reader, room, sniffer, camera).
Name = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
# "\Z", not "$": Python's "$" also matches before a final newline, JSON Schema's does not.
UpperEpc = Annotated[str, msgspec.Meta(pattern=r"^(?:[0-9A-F]{2}){4,32}\Z")]
SessionId = Annotated[str, msgspec.Meta(pattern=r"^[0-9a-f]{32}\Z")]
Gtin14 = Annotated[str, msgspec.Meta(pattern=r"^[0-9]{14}\Z")]


class _Strict(msgspec.Struct, forbid_unknown_fields=True, frozen=True, gc=False):
    """Unknown fields are errors (as in cloud.ingest)."""


class TryonPayload(_Strict, frozen=True):
    """tryon.v1.json: one completed fitting-room try-on session."""

    session_id: SessionId
    reader: Name
    room: Name
    epc: UpperEpc
    gtin: Gtin14 | None
    sku: Annotated[str, msgspec.Meta(min_length=1, max_length=64)] | None
    started_at: Time
    ended_at: Time
    dwell_s: Annotated[float, msgspec.Meta(ge=0, le=MAX_INT32)]
    closed_by: Literal["left", "max_duration", "shutdown"]

    def __post_init__(self) -> None:
        if self.ended_at < self.started_at:
            raise ValueError("ended_at: earlier than started_at")


class WifiWindowPayload(_Strict, frozen=True):
    """wifi-window.v1.json: one 60-second window of a Wi-Fi probe sniffer."""

    window_start: Time
    window_s: Literal[60]
    sniffer: Name
    devices: Count
    visitors: Count
    passers_by: Count
    occupancy: Annotated[float, msgspec.Meta(ge=0, le=MAX_INT32)]
    dwell_hist: Annotated[
        list[Count], msgspec.Meta(min_length=DWELL_BUCKETS, max_length=DWELL_BUCKETS)
    ]
    new_devices: Count | None
    repeat_devices: Count | None
    fixed_excluded: Count
    frames: Count
    malformed: Count


class FootfallWindowPayload(_Strict, frozen=True):
    """footfall-window.v1.json: one 60-second window of an entrance camera."""

    window_start: Time
    window_s: Literal[60]
    camera: Name
    in_: Count = msgspec.field(name="in")  # "in" is a Python keyword
    out: Count
    occupancy: Count


TelemetryPayload = TryonPayload | WifiWindowPayload | FootfallWindowPayload

# (kind, v) -> decoder of its payload; cloud.ingest.PAYLOAD_DECODERS includes these.
DECODERS: dict[tuple[str, int], msgspec.json.Decoder[Any]] = {
    ("tryon", 1): msgspec.json.Decoder(TryonPayload),
    ("wifi.window", 1): msgspec.json.Decoder(WifiWindowPayload),
    ("footfall.window", 1): msgspec.json.Decoder(FootfallWindowPayload),
}

# How a writer wants a UTC time in its rows (cloud.ingest.Writer.time).
TimeFormat = Callable[[datetime], Any]
Row = tuple[Any, ...]


def tryon_row(store_id: str, event_id: str, p: TryonPayload, time: TimeFormat) -> Row:
    """A ``tryons`` row, in the table's column order."""
    return (
        store_id,
        event_id,
        p.session_id,
        p.reader,
        p.room,
        p.epc,
        p.gtin,
        p.sku,
        time(p.started_at.astimezone(UTC)),
        time(p.ended_at.astimezone(UTC)),
        float(p.dwell_s),
        p.closed_by,
    )


def wifi_row(store_id: str, event_id: str, p: WifiWindowPayload, time: TimeFormat) -> Row:
    """A ``wifi_windows`` row, in the table's column order."""
    return (
        store_id,
        p.sniffer,
        time(p.window_start.astimezone(UTC)),
        event_id,
        p.window_s,
        p.devices,
        p.visitors,
        p.passers_by,
        float(p.occupancy),
        msgspec.json.encode(p.dwell_hist).decode("ascii"),
        p.new_devices,
        p.repeat_devices,
        p.fixed_excluded,
        p.frames,
        p.malformed,
    )


def footfall_row(store_id: str, event_id: str, p: FootfallWindowPayload, time: TimeFormat) -> Row:
    """A ``footfall_windows`` row, in the table's column order."""
    return (
        store_id,
        p.camera,
        time(p.window_start.astimezone(UTC)),
        event_id,
        p.window_s,
        p.in_,
        p.out,
        p.occupancy,
    )
