"""``storelink-agent rfid ...`` commands: the LLRP reader simulator (integrators, the demo)."""

from __future__ import annotations

import argparse


def cmd_simulate(args: argparse.Namespace) -> int:
    """Run one LLRP reader simulator playing a scripted scenario until Ctrl-C (or --duration)."""
    from drivers.rfid.simulator import main as simulator_main

    argv = ["--listen", args.listen]
    for option in ("scenario", "reader", "seed", "speed", "duration"):
        value = getattr(args, option)
        if value is not None:
            argv += [f"--{option}", str(value)]
    return simulator_main(argv)


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the rfid commands to the agent's command line."""
    rfid = sub.add_parser("rfid", help="RFID fitting-room reader tools")
    rfid_sub = rfid.add_subparsers(dest="rfid_command", required=True)
    simulate = rfid_sub.add_parser(
        "simulate", help="run an LLRP reader simulator (scripted fitting-room scenario)"
    )
    simulate.add_argument("--listen", required=True, help="HOST:PORT to listen on")
    simulate.add_argument("--scenario", help="fitting-rooms (default), throughput or restart")
    simulate.add_argument("--reader", help="which of the scenario's readers to play")
    simulate.add_argument("--seed", type=int, help="scenario random seed")
    simulate.add_argument("--speed", type=float, help="scenario seconds per wall-clock second")
    simulate.add_argument("--duration", type=float, help="stop after this many seconds")
    simulate.set_defaults(func=cmd_simulate)
