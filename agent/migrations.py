"""Schema of the agent's SQLite file, one script per version (``PRAGMA user_version``).

Append new versions; never edit a released one. Statements are separated by ``;`` at the
end of a line. Each device keeps its tables' script beside its code (``agent/*/schema.py``).
"""

from agent.camera.schema import MIGRATION as CAMERA
from agent.rfid.schema import MIGRATION as RFID
from agent.wifi.schema import MIGRATION as WIFI

MIGRATIONS: tuple[str, ...] = (
    # 1: outbox, sales, print jobs, printer status, store metadata.
    """
    CREATE TABLE store_meta (
        key TEXT PRIMARY KEY,
        value TEXT NOT NULL
    );
    CREATE TABLE outbox (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,  -- the per-store sequence; never reused
        event_id BLOB NOT NULL UNIQUE,          -- UUIDv7, 16 bytes
        kind TEXT NOT NULL,
        schema_version INTEGER NOT NULL,
        occurred_at_ms INTEGER NOT NULL,        -- Unix time in milliseconds, UTC
        payload BLOB NOT NULL,                  -- JSON object, UTF-8
        sent_at TEXT                            -- set with the cloud's acknowledgement
    );
    CREATE INDEX outbox_unsent ON outbox (seq) WHERE sent_at IS NULL;
    CREATE TABLE sales (
        sale_id TEXT PRIMARY KEY,
        receipt_seq INTEGER NOT NULL UNIQUE,
        receipt_no TEXT NOT NULL UNIQUE,
        request_hash TEXT NOT NULL,             -- to tell a retry from a conflicting reuse
        body TEXT NOT NULL,                     -- the validated sale, JSON
        receipt_url TEXT NOT NULL,
        event_seq INTEGER NOT NULL REFERENCES outbox (seq),
        created_at TEXT NOT NULL
    );
    CREATE TABLE print_jobs (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        sale_id TEXT REFERENCES sales (sale_id),
        printer TEXT NOT NULL,
        kind TEXT NOT NULL CHECK (kind IN ('receipt', 'reprint')),
        state TEXT NOT NULL CHECK (state IN ('queued', 'printing', 'done', 'failed')),
        copy INTEGER NOT NULL DEFAULT 0,        -- 1: print marked as a copy
        attempts INTEGER NOT NULL DEFAULT 0,
        last_error TEXT,
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL,
        printed_at TEXT
    );
    CREATE INDEX print_jobs_pending ON print_jobs (printer, id)
        WHERE state IN ('queued', 'printing');
    CREATE INDEX print_jobs_sale ON print_jobs (sale_id);
    CREATE TABLE printer_status (
        name TEXT PRIMARY KEY,
        available INTEGER NOT NULL,
        detail TEXT NOT NULL,
        checked_at TEXT NOT NULL
    )
    """,
    # 2: sync state, events the cloud refused, the replica of the store's slice, receipt offers.
    """
    -- Events the cloud refused as invalid: set aside, out of the backlog, shown in status.
    ALTER TABLE outbox ADD COLUMN rejected_at TEXT;
    ALTER TABLE outbox ADD COLUMN rejected_reason TEXT;
    CREATE INDEX outbox_rejected ON outbox (seq) WHERE rejected_at IS NOT NULL;
    CREATE TABLE sync_state (
        key TEXT PRIMARY KEY,
        value TEXT NOT NULL
    );
    CREATE TABLE members (
        id TEXT PRIMARY KEY,
        sealed BLOB NOT NULL,                   -- AES-GCM of name, phone, consent, tags (JSON)
        home_store TEXT,
        associate_id TEXT,
        segments TEXT NOT NULL,                 -- JSON array of segment ids
        updated_at TEXT NOT NULL
    );
    CREATE INDEX members_associate ON members (associate_id);
    CREATE TABLE catalogue (
        sku TEXT PRIMARY KEY,
        gtin TEXT,
        name TEXT NOT NULL,
        price INTEGER NOT NULL,
        currency TEXT NOT NULL,
        category TEXT NOT NULL
    );
    CREATE INDEX catalogue_gtin ON catalogue (gtin);
    CREATE TABLE staff (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        active INTEGER NOT NULL
    );
    CREATE TABLE segments (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        kind TEXT NOT NULL,
        high_value INTEGER NOT NULL
    );
    CREATE TABLE offers (
        id TEXT PRIMARY KEY,
        text TEXT NOT NULL,
        segments TEXT NOT NULL,                 -- JSON array of segment ids; [] is everyone
        clearance INTEGER NOT NULL,
        priority INTEGER NOT NULL,
        active INTEGER NOT NULL
    );
    -- The footer offer chosen at checkout, so a reprint shows the same one.
    ALTER TABLE sales ADD COLUMN offer TEXT
    """,
    # 3: device availability (printers keep printer_status) and scheduled jobs' last runs.
    """
    CREATE TABLE device_status (
        kind TEXT NOT NULL,                     -- 'rfid', 'wifi', 'camera'
        name TEXT NOT NULL,
        available INTEGER NOT NULL,
        detail TEXT NOT NULL,
        checked_at TEXT NOT NULL,
        PRIMARY KEY (kind, name)
    );
    CREATE TABLE job_runs (
        name TEXT PRIMARY KEY,
        started_at TEXT NOT NULL,
        finished_at TEXT,
        outcome TEXT NOT NULL CHECK (outcome IN ('running', 'ok', 'failed')),
        detail TEXT NOT NULL DEFAULT '',
        runs INTEGER NOT NULL DEFAULT 0,
        failures INTEGER NOT NULL DEFAULT 0
    )
    """,
    # 4: RFID raw reads (kept in the store only) and try-on session state.
    RFID,
    # 5: Wi-Fi device state (hashed identifiers only) and windows.
    WIFI,
    # 6: camera footfall state.
    CAMERA,
)
