"""The agent's SQLite tables for RFID (one migration of agent/migrations.py)."""

MIGRATION = """
    -- placeholder until the RFID work adds its tables
    CREATE TABLE IF NOT EXISTS rfid_placeholder (x INTEGER)
"""
