"""The agent's SQLite tables for Camera (one migration of agent/migrations.py)."""

MIGRATION = """
    -- placeholder until the Camera work adds its tables
    CREATE TABLE IF NOT EXISTS camera_placeholder (x INTEGER)
"""
