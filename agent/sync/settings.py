"""Tunables of the sync daemon; the defaults are what a store runs with."""

from __future__ import annotations

from dataclasses import dataclass

# The cloud refuses a batch over 5,000 events or 8 MiB of JSON (sync-protocol.md).
CLOUD_MAX_EVENTS = 5000
CLOUD_MAX_BYTES = 8 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class SyncSettings:
    """How big, how often and how patient the daemon is."""

    batch_events: int = CLOUD_MAX_EVENTS
    # Room left under the cloud's limit for the batch's own brackets and any estimate error.
    batch_bytes: int = CLOUD_MAX_BYTES - 64 * 1024
    # Batches in flight at once: the cloud checks one while it writes another, and the next
    # is read and compressed meanwhile.
    pipeline_depth: int = 3
    gzip_level: int = 1
    upload_poll_s: float = 1.0
    # An upload after this long without an answer in the stored epoch checks the epoch first.
    epoch_fresh_s: float = 15.0
    download_poll_s: float = 10.0
    changes_limit: int = 2000
    heartbeat_s: float = 30.0
    request_timeout_s: float = 30.0
    connect_timeout_s: float = 10.0
    backoff_base_s: float = 0.5
    backoff_cap_s: float = 60.0
    version: str = "unknown"
