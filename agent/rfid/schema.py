"""The agent's SQLite tables for RFID (schema version 4 of agent/migrations.py).

``rfid_reads`` keeps raw reads in the store only (never sent to the cloud), aggregated per
second, reader, antenna and EPC: 4,400 reads/s become a few hundred rows a second, written in
one transaction. ``second`` is Unix time on the agent's clock (reader time mapped, see
agent/rfid/sessions.py). Rows older than ``raw_read_retention_days`` are pruned hourly.
"""

MIGRATION = """
    CREATE TABLE rfid_reads (
        second INTEGER NOT NULL,                -- Unix seconds, agent clock
        reader TEXT NOT NULL,
        antenna INTEGER NOT NULL,
        epc TEXT NOT NULL,                      -- uppercase hex
        reads INTEGER NOT NULL,                 -- tag reports received
        seen INTEGER NOT NULL,                  -- sum of the reports' TagSeenCount
        rssi_max REAL NOT NULL,                 -- dBm
        rssi_sum REAL NOT NULL,                 -- for the mean: rssi_sum / reads
        PRIMARY KEY (second, reader, antenna, epc)
    ) WITHOUT ROWID
"""
