"""``storelink-agent rfid ...`` commands: the LLRP reader simulator (integrators, the demo)."""

from __future__ import annotations

import argparse

from drivers.rfid import simulator


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the rfid commands to the agent's command line."""
    rfid = sub.add_parser("rfid", help="RFID fitting-room reader tools")
    rfid_sub = rfid.add_subparsers(dest="rfid_command", required=True)
    simulate = rfid_sub.add_parser(
        "simulate",
        help="run an LLRP reader simulator (scripted fitting-room scenario)",
        description=simulator.DESCRIPTION,
    )
    simulator.add_arguments(simulate, listen_required=True)
    simulate.set_defaults(func=simulator.run)
