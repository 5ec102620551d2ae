"""The agent's SQLite tables for Wi-Fi (one migration of agent/migrations.py)."""

MIGRATION = """
    -- placeholder until the Wi-Fi work adds its tables
    CREATE TABLE IF NOT EXISTS wifi_placeholder (x INTEGER)
"""
