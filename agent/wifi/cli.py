"""`storelink-agent wifi ...` commands (placeholder until the Wi-Fi work fills it)."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the wifi commands to the agent's command line."""
