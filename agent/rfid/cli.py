"""`storelink-agent rfid ...` commands (placeholder until the RFID work fills it)."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the rfid commands to the agent's command line."""
