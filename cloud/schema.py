"""The cloud database's tables (SQLAlchemy Core), portable between SQLite and PostgreSQL.

Alembic migrations in ``cloud/migrations/versions`` create and evolve these tables; this module
is what queries are written against. Times are stored as timezone-aware ``DateTime``; JSON
columns use the portable ``JSON`` type. Every row a store writes carries its ``store_id``.
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(column_0_label)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

Time = DateTime(timezone=True)
StoreId = String(32)

# Key/value facts about this database: 'epoch' (random, set when the database is created).
meta = Table(
    "meta",
    metadata,
    Column("key", String(64), primary_key=True),
    Column("value", Text, nullable=False),
)

stores = Table(
    "stores",
    metadata,
    Column("id", StoreId, primary_key=True),
    Column("name", String(200), nullable=False),
    Column("region", String(64), nullable=False, index=True),
    # Raw Ed25519 public key, base64url; NULL until enrolled.
    Column("public_key", String(64)),
    Column("status", String(16), nullable=False),  # pending | active | revoked
    Column("created_at", Time, nullable=False),
    Column("enrolled_at", Time),
    Column("revoked_at", Time),
)

enrollment_tokens = Table(
    "enrollment_tokens",
    metadata,
    Column("token_hash", String(64), primary_key=True),  # SHA-256 hex of the token
    Column("store_id", StoreId, ForeignKey("stores.id"), nullable=False),
    Column("created_at", Time, nullable=False),
    Column("expires_at", Time, nullable=False),
    Column("used_at", Time),
)

users = Table(
    "users",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(200), nullable=False),
    Column("role", String(16), nullable=False),  # hq | regional
    Column("region", String(64)),  # required for regional users
    Column("token_hash", String(64), nullable=False, unique=True),
    Column("created_at", Time, nullable=False),
    Column("revoked_at", Time),
)

# Signature nonces seen, per store: a replayed request reuses one. Purged after the skew window.
request_nonces = Table(
    "request_nonces",
    metadata,
    Column("store_id", StoreId, primary_key=True),
    Column("nonce", String(128), primary_key=True),
    Column("seen_at", Time, nullable=False, index=True),
)

# Every accepted event, once: the primary key is the exactly-once guarantee.
events = Table(
    "events",
    metadata,
    Column("store_id", StoreId, primary_key=True),
    Column("event_id", String(36), primary_key=True),
    Column("seq", BigInteger, nullable=False),
    Column("kind", String(64), nullable=False),
    Column("v", Integer, nullable=False),
    Column("at", Time, nullable=False),
    Column("payload", JSON, nullable=False),
    Column("received_at", Time, nullable=False),
    Index("ix_events_store_seq", "store_id", "seq"),
)

sales = Table(
    "sales",
    metadata,
    Column("store_id", StoreId, primary_key=True),
    Column("sale_id", String(36), primary_key=True),
    Column("event_id", String(36), nullable=False),
    Column("receipt_no", String(64), nullable=False),
    Column("receipt_seq", BigInteger, nullable=False),
    Column("register_id", String(32), nullable=False),
    Column("staff_id", String(32)),
    Column("member_id", String(64), index=True),
    Column("total", BigInteger, nullable=False),
    Column("currency", String(3), nullable=False),
    Column("occurred_at", Time, nullable=False, index=True),
    Column("receipt_url", Text, nullable=False),
    UniqueConstraint("store_id", "receipt_seq", name="uq_sales_store_receipt_seq"),
)

# Try-on conversion looks for a store's sales in a time range.
Index("ix_sales_store_occurred", sales.c.store_id, sales.c.occurred_at)

sale_lines = Table(
    "sale_lines",
    metadata,
    Column("store_id", StoreId, primary_key=True),
    Column("sale_id", String(36), primary_key=True),
    Column("line_no", Integer, primary_key=True),
    Column("gtin", String(14)),
    Column("sku", String(64)),
    Column("epc", String(64)),
    Column("name", String(200), nullable=False),
    Column("qty", Integer, nullable=False),
    Column("unit_price", BigInteger, nullable=False),
    Column("discount", BigInteger, nullable=False),
)

sale_payments = Table(
    "sale_payments",
    metadata,
    Column("store_id", StoreId, primary_key=True),
    Column("sale_id", String(36), primary_key=True),
    Column("idx", Integer, primary_key=True),
    Column("method", String(32), nullable=False),
    Column("amount", BigInteger, nullable=False),
)

# Events a store sent that the cloud refused, kept for HQ to look at.
rejected_events = Table(
    "rejected_events",
    metadata,
    Column("store_id", StoreId, primary_key=True),
    Column("event_id", String(64), primary_key=True),
    Column("reason", Text, nullable=False),
    Column("received_at", Time, nullable=False),
)

staff = Table(
    "staff",
    metadata,
    Column("store_id", StoreId, ForeignKey("stores.id"), primary_key=True),
    Column("staff_id", String(32), primary_key=True),
    Column("name", String(200), nullable=False),
    Column("active", Boolean, nullable=False),
    Column("updated_at", Time, nullable=False),
)

catalogue = Table(
    "catalogue",
    metadata,
    Column("sku", String(64), primary_key=True),
    Column("gtin", String(14), index=True),
    Column("name", String(200), nullable=False),
    Column("price", BigInteger, nullable=False),
    Column("currency", String(3), nullable=False),
    Column("category", String(100), nullable=False),
    Column("updated_at", Time, nullable=False),
)

members = Table(
    "members",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("name", String(200), nullable=False),
    # Phone: AES-GCM ciphertext (key in the cloud's data_dir) plus a keyed hash for lookups.
    Column("phone_enc", LargeBinary),
    Column("phone_hash", String(64), index=True),
    Column("consent", Boolean, nullable=False),
    Column("home_store", StoreId, index=True),
    Column("associate_id", String(32)),
    Column("created_at", Time, nullable=False),
    Column("updated_at", Time, nullable=False),
)

# Tag operations from every store and from HQ; the member's tags are derived from them.
member_tag_ops = Table(
    "member_tag_ops",
    metadata,
    Column("op_id", String(64), primary_key=True),
    Column("member_id", String(64), nullable=False),
    Column("tag", String(40), nullable=False),
    Column("op", String(6), nullable=False),  # add | remove
    Column("at", Time, nullable=False),
    Column("store_id", StoreId),  # NULL when HQ made the change
    Index("ix_member_tag_ops_member_tag", "member_id", "tag"),
)

# Current tags: the winner of each (member, tag) under last-writer-wins by (at, op_id).
member_tags = Table(
    "member_tags",
    metadata,
    Column("member_id", String(64), primary_key=True),
    Column("tag", String(40), primary_key=True),
    Column("present", Boolean, nullable=False),
    Column("op_at", Time, nullable=False),
    Column("op_id", String(64), nullable=False),
)

segments = Table(
    "segments",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("name", String(200), nullable=False),
    Column("kind", String(8), nullable=False),  # rfm | tags
    # rfm: {"cells": ["555", "554", ...]}; tags: {"any": ["vip"], "all": [], "none": []}
    Column("rule", JSON, nullable=False),
    Column("high_value", Boolean, nullable=False),
    Column("updated_at", Time, nullable=False),
)

member_segments = Table(
    "member_segments",
    metadata,
    Column("member_id", String(64), primary_key=True),
    Column("segment_id", String(64), primary_key=True),
)

member_rfm = Table(
    "member_rfm",
    metadata,
    Column("member_id", String(64), primary_key=True),
    Column("recency_days", Integer, nullable=False),
    Column("frequency", Integer, nullable=False),
    Column("monetary", BigInteger, nullable=False),
    Column("cell", String(3), nullable=False),  # R, F, M scores 1-5, e.g. "545"
    Column("computed_at", Time, nullable=False),
)

offers = Table(
    "offers",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("text", String(300), nullable=False),
    Column("segments", JSON, nullable=False),  # segment ids it targets; [] = everyone
    Column("clearance", Boolean, nullable=False),  # never shown to high-value members
    Column("priority", Integer, nullable=False),
    Column("active", Boolean, nullable=False),
    Column("updated_at", Time, nullable=False),
)

# The change feed stores pull. store_id NULL: relevant to every store (within its slice).
changes = Table(
    "changes",
    metadata,
    Column("cursor", BigInteger().with_variant(Integer, "sqlite"), primary_key=True),
    Column("entity", String(16), nullable=False),
    Column("entity_id", String(64), nullable=False),
    Column("store_id", StoreId),
    Column("op", String(8), nullable=False),  # upsert | delete
    Column("at", Time, nullable=False),
    # A store's page: its own rows and the shared (NULL) rows, each an index range by cursor.
    Index("ix_changes_store_cursor", "store_id", "cursor"),
    # Recording a change drops the older rows it supersedes, found through this index.
    Index("ix_changes_entity_id", "entity", "entity_id", "store_id"),
)

# Which stores hold a member in their slice (home store, or bought there recently).
member_stores = Table(
    "member_stores",
    metadata,
    Column("member_id", String(64), primary_key=True),
    Column("store_id", StoreId, primary_key=True),
    # Indexed for the hourly sweep that drops links older than the slice window.
    Column("last_seen_at", Time, nullable=False, index=True),
)

receipt_claims = Table(
    "receipt_claims",
    metadata,
    Column("store_id", StoreId, primary_key=True),
    Column("receipt_seq", BigInteger, primary_key=True),
    Column("member_id", String(64), nullable=False),
    Column("claimed_at", Time, nullable=False),
)

heartbeats = Table(
    "heartbeats",
    metadata,
    Column("store_id", StoreId, primary_key=True),
    Column("at", Time, nullable=False),
    Column("backlog", BigInteger, nullable=False),
    Column("oldest_unsent_age_s", Integer),
    Column("last_success_at", Time),
    Column("last_error", Text),
    Column("rejected", Integer, nullable=False),
    Column("devices", JSON, nullable=False),
    Column("version", String(32)),
)

# EPCs a sale line carried (its "epcs" list and its single "epc"), upper-case hex: how a try-on
# of that very garment is matched to its purchase.
sale_line_epcs = Table(
    "sale_line_epcs",
    metadata,
    # Key order: a try-on's EPC is looked up within its store.
    Column("store_id", StoreId, primary_key=True),
    Column("epc", String(64), primary_key=True),
    Column("sale_id", String(36), primary_key=True),
    Column("line_no", Integer, primary_key=True),
)

# One completed fitting-room try-on session per row ("tryon" events).
tryons = Table(
    "tryons",
    metadata,
    Column("store_id", StoreId, primary_key=True),
    Column("event_id", String(36), primary_key=True),
    Column("session_id", String(32), nullable=False),
    Column("reader", String(64), nullable=False),
    Column("room", String(64), nullable=False),
    Column("epc", String(64), nullable=False),
    Column("gtin", String(14)),
    Column("sku", String(64)),
    Column("started_at", Time, nullable=False),
    Column("ended_at", Time, nullable=False),
    Column("dwell_s", Float, nullable=False),
    Column("closed_by", String(16), nullable=False),  # left | max_duration | shutdown
    # The agent's session id is unique too: a session re-sent under another event id is one.
    UniqueConstraint("store_id", "session_id", name="uq_tryons_store_session"),
    Index("ix_tryons_store_started", "store_id", "started_at"),
    Index("ix_tryons_store_epc", "store_id", "epc"),
)

# One 60-second window of a Wi-Fi probe sniffer ("wifi.window" events): aggregates only.
wifi_windows = Table(
    "wifi_windows",
    metadata,
    Column("store_id", StoreId, primary_key=True),
    Column("sniffer", String(64), primary_key=True),
    Column("window_start", Time, primary_key=True),
    Column("event_id", String(36), nullable=False),
    Column("window_s", Integer, nullable=False),
    Column("devices", Integer, nullable=False),
    Column("visitors", Integer, nullable=False),
    Column("passers_by", Integer, nullable=False),
    Column("occupancy", Float, nullable=False),
    # Six counts as JSON text, "[0,1,0,0,0,0]": visits that ended in the window by dwell
    # (<1, 1-5, 5-15, 15-30, 30-60, >=60 min).
    Column("dwell_hist", Text, nullable=False),
    Column("new_devices", Integer),
    Column("repeat_devices", Integer),
    Column("fixed_excluded", Integer, nullable=False),
    Column("frames", Integer, nullable=False),
    Column("malformed", Integer, nullable=False),
    Index("ix_wifi_windows_window_start", "window_start"),
)

# One 60-second window of an entrance camera ("footfall.window" events).
footfall_windows = Table(
    "footfall_windows",
    metadata,
    Column("store_id", StoreId, primary_key=True),
    Column("camera", String(64), primary_key=True),
    Column("window_start", Time, primary_key=True),
    Column("event_id", String(36), nullable=False),
    Column("window_s", Integer, nullable=False),
    Column("in", Integer, nullable=False),
    Column("out", Integer, nullable=False),
    Column("occupancy", Integer, nullable=False),
    Index("ix_footfall_windows_window_start", "window_start"),
)
