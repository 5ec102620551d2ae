"""``storelink-cloud``: run the API, manage stores and users, export data.

Every command validates the config file first (exit 2 with the offending key's name), opens
the database (migrating it to the current schema) and prints one-time tokens on the last
line of stdout, so scripts can take them with ``tail -n 1``.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Awaitable, Callable, Sequence
from datetime import timedelta
from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncEngine

from cloud import auth, db
from cloud.app import serve
from cloud.config import CloudConfig, ConfigError, load_config
from cloud.export import DATASETS, ENCODERS, ExportError, export_to_file, make_window
from cloud.fieldcrypt import FieldCryptError

log = logging.getLogger(__name__)

EXIT_FAILED = 1
EXIT_USAGE = 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="storelink-cloud", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)

    def with_config(sub: argparse.ArgumentParser) -> argparse.ArgumentParser:
        sub.add_argument("--config", type=Path, required=True, help="cloud.toml")
        return sub

    with_config(commands.add_parser("run", help="serve the cloud API"))

    stores = commands.add_parser("stores", help="add or revoke stores").add_subparsers(
        dest="action", required=True
    )
    add = with_config(stores.add_parser("add", help="add a store; prints its enrollment token"))
    add.add_argument("--id", required=True)
    add.add_argument("--name", required=True)
    add.add_argument("--region", required=True)
    revoke = with_config(stores.add_parser("revoke", help="revoke a store's key"))
    revoke.add_argument("--id", required=True)

    users = commands.add_parser("users", help="add API users").add_subparsers(
        dest="action", required=True
    )
    user = with_config(users.add_parser("add", help="add a user; prints their API token"))
    user.add_argument("--name", required=True)
    user.add_argument("--role", required=True, choices=["hq", "regional"])
    user.add_argument("--region")

    exporter = with_config(commands.add_parser("export", help="export a dataset"))
    exporter.add_argument("dataset", choices=sorted(DATASETS))
    exporter.add_argument("--format", required=True, choices=list(ENCODERS))
    exporter.add_argument("--from", dest="start", metavar="ISO", help="from (inclusive, UTC)")
    exporter.add_argument("--to", dest="end", metavar="ISO", help="to (exclusive, UTC)")
    exporter.add_argument("--out", required=True, help="output file, or - for stdout")

    with_config(
        commands.add_parser(
            "rotate-epoch",
            help="give the database a new epoch after restoring a backup (cloud stopped)",
        )
    )
    return parser


async def _with_engine(config: CloudConfig, work: Callable[[AsyncEngine], Awaitable[None]]) -> None:
    async with db.open_database(config) as engine:
        await work(engine)


def _command(
    args: argparse.Namespace, config: CloudConfig
) -> Callable[[AsyncEngine], Awaitable[None]]:
    """The work of an administrative command, given the open database."""
    if args.command == "stores" and args.action == "add":
        ttl = timedelta(hours=config.security.enrollment_ttl_hours)

        async def add_store(engine: AsyncEngine) -> None:
            token = await auth.add_store(engine, args.id, args.name, args.region, ttl)
            print(f"store {args.id} ({args.name}, region {args.region}) is ready to enroll.")
            print(f"one-time enrollment token, valid {ttl.total_seconds() / 3600:.0f} h:")
            print(token)

        return add_store
    if args.command == "stores":

        async def revoke_store(engine: AsyncEngine) -> None:
            await auth.revoke_store(engine, args.id)
            print(f"store {args.id} revoked: its requests and receipts are refused from now on.")

        return revoke_store
    if args.command == "users":

        async def add_user(engine: AsyncEngine) -> None:
            token = await auth.add_user(engine, args.name, args.role, args.region)
            scope = "every store" if args.role == "hq" else f"region {args.region}"
            print(f"user {args.name} ({args.role}, sees {scope}). API token, shown once:")
            print(token)

        return add_user
    if args.command == "export":
        window = make_window(args.start, args.end)

        async def run_export(engine: AsyncEngine) -> None:
            count = await export_to_file(
                engine, args.dataset, args.format, window, args.out, config
            )
            log.info("exported %d %s rows", count, args.dataset)

        return run_export

    async def rotate(engine: AsyncEngine) -> None:
        epoch = await db.rotate_epoch(engine)
        print(f"new epoch {epoch}: stores will resync and re-upload what the cloud lacks.")

    return rotate


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``storelink-cloud``."""
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if args.command != "run":
        # One-shot commands (export, stores, users): their output is the point; the
        # migration check every run does is not news.
        logging.getLogger("alembic").setLevel(logging.WARNING)
    try:
        config = load_config(args.config)
    except ConfigError as err:
        print(f"storelink-cloud: {err}", file=sys.stderr)
        return EXIT_USAGE
    try:
        if args.command == "run":
            asyncio.run(serve(config))
        else:
            asyncio.run(_with_engine(config, _command(args, config)))
    except (auth.AccountError, ExportError) as err:
        print(f"storelink-cloud: {err}", file=sys.stderr)
        return EXIT_USAGE
    except (db.DatabaseError, FieldCryptError, OSError) as err:
        # OSError: the port is taken, the export file cannot be written, stdout was closed.
        print(f"storelink-cloud: {err}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        return EXIT_FAILED
    return 0
