"""The agent's SQLite tables for Wi-Fi (one migration of agent/migrations.py).

Only aggregates and keyed hashes are stored: never a MAC address, never an SSID.
"""

MIGRATION = """
    -- Roll-ups of the one-minute windows (10 minutes and hours) for the status page.
    CREATE TABLE wifi_windows (
        sniffer TEXT NOT NULL,
        period_s INTEGER NOT NULL,              -- 600 or 3600
        start_ms INTEGER NOT NULL,
        devices INTEGER NOT NULL,
        visitors INTEGER NOT NULL,
        passers_by INTEGER NOT NULL,
        occupancy REAL NOT NULL,                -- mean of the period's minutes
        dwell_hist TEXT NOT NULL,               -- JSON array of 6 counts
        fixed_excluded INTEGER NOT NULL,
        frames INTEGER NOT NULL,
        malformed INTEGER NOT NULL,
        minutes INTEGER NOT NULL,
        PRIMARY KEY (sniffer, period_s, start_ms)
    );
    -- Non-rotating tags (keyed hashes) of devices learned to be the store's own.
    CREATE TABLE wifi_fixed_devices (
        tag BLOB PRIMARY KEY,
        first_day TEXT NOT NULL,
        last_day TEXT NOT NULL,
        days INTEGER NOT NULL
    );
    -- Stable-key mode only: device identifiers seen before, for new versus repeat visits.
    CREATE TABLE wifi_seen_devices (
        device BLOB PRIMARY KEY,
        first_day TEXT NOT NULL,
        last_day TEXT NOT NULL
    )
"""
