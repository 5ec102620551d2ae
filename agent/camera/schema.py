"""The agent's SQLite tables for the entrance camera (one migration of agent/migrations.py).

Counts only, never images: today's totals and occupancy survive a restart, and the start of
the last window sent, so a restart within the same minute does not send that minute twice.
"""

MIGRATION = """
    CREATE TABLE camera_state (
        camera TEXT PRIMARY KEY,
        day TEXT NOT NULL,                      -- store-local date of the totals, YYYY-MM-DD
        in_count INTEGER NOT NULL,
        out_count INTEGER NOT NULL,
        occupancy INTEGER NOT NULL CHECK (occupancy >= 0),
        last_window_ms INTEGER,                 -- window_start of the last footfall.window
        updated_at TEXT NOT NULL
    )
"""
