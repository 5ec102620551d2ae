"""``storelink-sync``: run the sync daemon, or show its status from the agent database.

Exit codes: 0 success, 1 the daemon cannot run here (not enrolled, already running, database
unreadable), 2 bad usage or configuration.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import signal
import sqlite3
import sys
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path

import aiosqlite

from agent.config import AgentConfig, ConfigError, load_config
from agent.db import DB_FILE, DatabaseError
from agent.logs import setup_logging
from agent.replica import ReplicaError
from agent.storekey import StoreKeyError
from agent.sync.app import run_sync
from agent.sync.client import CannotStart
from agent.sync.settings import SyncSettings
from agent.sync.state import SyncStatus, read_status

log = logging.getLogger(__name__)


def _load(path: Path) -> AgentConfig:
    try:
        # The daemon never prints: printer profiles are the agent's to check.
        return load_config(path, printer_profiles=False)
    except ConfigError as err:
        print(f"configuration error:\n{err}", file=sys.stderr)
        raise SystemExit(2) from err


def _version() -> str:
    try:
        return metadata.version("storelink")
    except metadata.PackageNotFoundError:
        return "unknown"


async def _serve(config: AgentConfig, settings: SyncSettings) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    await run_sync(config, stop, settings)


def cmd_run(args: argparse.Namespace) -> int:
    """Run the daemon in the foreground until SIGINT or SIGTERM."""
    config = _load(args.config)
    setup_logging(config.store.id, args.verbose)
    try:
        asyncio.run(_serve(config, SyncSettings(version=_version())))
    except (CannotStart, DatabaseError, sqlite3.Error, StoreKeyError, ReplicaError) as err:
        log.error("cannot sync: %s", err)  # noqa: TRY400 - a clear sentence, no traceback
        return 1
    return 0


async def _read(db_path: Path) -> SyncStatus:
    # Read-only: status must never change what the daemon or the agent are doing.
    async with aiosqlite.connect(f"file:{db_path}?mode=ro", uri=True) as conn:
        return await read_status(conn)


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def _print(status: SyncStatus) -> None:
    print(f"store {status.store_id or '-'}")
    if status.cloud_url is None:
        print("  not enrolled: run `storelink-agent enroll --config FILE --cloud URL --token T`")
    else:
        print(f"  cloud: {status.cloud_url} (enrolled {status.enrolled_at or '-'})")
    print(f"  epoch: {status.epoch or '-'}; change cursor: {status.cursor}")
    if status.backlog:
        print(
            f"  backlog: {status.backlog} events unsent, the oldest from"
            f" {status.oldest_unsent_at} ({_age(status.oldest_unsent_age_s)} ago)"
        )
    else:
        print("  backlog: nothing unsent")
    print(f"  last success: {status.last_success_at or 'never'}")
    if status.last_error is None:
        print("  last error: none")
    else:
        print(f"  last error: {status.last_error} (at {status.last_error_at})")
    replica = ", ".join(f"{count} {table}" for table, count in status.replica.items())
    print(f"  replica: {replica}")
    for name, device in status.devices.items():
        state = "available" if device["available"] else "NOT AVAILABLE"
        print(f"  {name}: {state}: {device['detail']}")
    print(f"  rejected by the cloud: {status.rejected} events set aside")
    for event in status.rejected_events:
        print(f"    seq {event.seq} {event.kind} {event.event_id}: {event.reason}")
    if status.rejected > len(status.rejected_events):
        print(f"    ... and {status.rejected - len(status.rejected_events)} older ones")


def cmd_status(args: argparse.Namespace) -> int:
    """Show backlog, last success and error, rejected events, cursor, epoch and cloud."""
    config = _load(args.config)
    db_path = config.store.data_dir / DB_FILE
    if not db_path.exists():
        print(f"no agent database at {db_path} yet: enroll the store or start the agent")
        return 1
    try:
        status = asyncio.run(_read(db_path))
    except sqlite3.Error as err:
        print(f"cannot read the agent database {db_path}: {err}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(status.as_json(), indent=2))
    else:
        _print(status)
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The command-line interface."""
    parser = argparse.ArgumentParser(prog="storelink-sync", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run the sync daemon")
    run.add_argument("--config", type=Path, required=True, help="agent TOML config file")
    run.add_argument("--verbose", action="store_true", help="debug logging")
    run.set_defaults(func=cmd_run)
    status = sub.add_parser("status", help="show the sync status from the agent database")
    status.add_argument("--config", type=Path, required=True, help="agent TOML config file")
    status.add_argument("--json", action="store_true", help="machine-readable output")
    status.set_defaults(func=cmd_status)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``storelink-sync``."""
    args = build_parser().parse_args(argv)
    result: int = args.func(args)
    return result


if __name__ == "__main__":
    raise SystemExit(main())
