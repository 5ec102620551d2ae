"""`storelink-agent camera ...` commands (placeholder until the Camera work fills it)."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the camera commands to the agent's command line."""
