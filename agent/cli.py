"""``storelink-agent``: run the agent and the store-IT commands around it.

Exit codes: 0 success, 1 a check or device failed, 2 bad usage or configuration.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sqlite3
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from agent.app import StartupError, prepare_data_dir, serve_until_signalled
from agent.camera import cli as camera_cli
from agent.config import AgentConfig, ConfigError, load_config
from agent.db import DB_FILE, DatabaseError
from agent.discovery import DiscoveryError, browse, config_lines, reachable_uri
from agent.enroll import EnrollError, enroll
from agent.jobs import ALIVE_KEY, JOB_RUNS_SQL
from agent.logs import setup_logging
from agent.outbox import BACKLOG_SQL, ms_to_iso
from agent.printing import PENDING_JOBS_SQL, jobs_by_printer, profile_of
from agent.qrtoken import issue_token
from agent.receipt import render_test_page
from agent.replica import ReplicaError
from agent.rfid import cli as rfid_cli
from agent.storekey import StoreKeyError, load_or_create_store_key
from agent.wifi import cli as wifi_cli
from config.receipt_token import ReceiptClaims, receipt_url
from drivers.printer.connection import print_job
from drivers.printer.errors import PrinterError

log = logging.getLogger(__name__)


def _load(path: Path) -> AgentConfig:
    try:
        return load_config(path)
    except ConfigError as err:
        print(f"configuration error:\n{err}", file=sys.stderr)
        raise SystemExit(2) from err


def cmd_run(args: argparse.Namespace) -> int:
    """Run the agent in the foreground."""
    config = _load(args.config)
    setup_logging(config.store.id, args.verbose)
    try:
        asyncio.run(serve_until_signalled(config))
    except (StartupError, StoreKeyError, ReplicaError, DatabaseError) as err:
        log.error("cannot start: %s", err)  # noqa: TRY400 - a clear sentence, no traceback
        return 2
    return 0


def _read_status(config: AgentConfig) -> dict[str, Any]:
    db_path = config.store.data_dir / DB_FILE
    if not db_path.exists():
        return {"store_id": config.store.id, "database": "not created yet (agent never ran)"}
    conn = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    try:
        unsent, oldest_ms = conn.execute(BACKLOG_SQL).fetchone()
        oldest = ms_to_iso(oldest_ms) if oldest_ms is not None else None
        jobs = jobs_by_printer(conn.execute(PENDING_JOBS_SQL))
        health = {
            row[0]: {"available": bool(row[1]), "detail": row[2], "checked_at": row[3]}
            for row in conn.execute(
                "SELECT name, available, detail, checked_at FROM printer_status"
            )
        }
        sales = conn.execute("SELECT count(*), max(receipt_no) FROM sales").fetchone()
        alive = conn.execute("SELECT value FROM store_meta WHERE key = ?", (ALIVE_KEY,)).fetchone()
        job_runs = [dict(zip(_JOB_FIELDS, row, strict=True)) for row in conn.execute(JOB_RUNS_SQL)]
        devices = [
            {"kind": kind, "name": name, "available": bool(up), "detail": detail, "checked_at": at}
            for kind, name, up, detail, at in conn.execute(
                "SELECT kind, name, available, detail, checked_at FROM device_status"
                " ORDER BY kind, name"
            )
        ]
    finally:
        conn.close()
    return {
        "store_id": config.store.id,
        "agent_alive_at": alive[0] if alive else None,
        "sales": {"count": sales[0], "last_receipt_no": sales[1]},
        "outbox": {"unsent": unsent, "oldest_unsent_at": oldest},
        "printers": [
            {
                "name": p.name,
                "uri": p.uri,
                **health.get(p.name, {"available": None, "detail": "not checked yet"}),
                "jobs": jobs.get(p.name, {}),
            }
            for p in config.printers
        ],
        "devices": devices,
        "jobs": job_runs,
    }


_JOB_FIELDS = ("name", "started_at", "finished_at", "outcome", "detail", "runs", "failures")


def _ago(iso: str | None, now: datetime) -> str:
    if not iso:
        return "never"
    seconds = (now - datetime.fromisoformat(iso.replace("Z", "+00:00"))).total_seconds()
    return f"{iso} ({max(seconds, 0):.0f} s ago)"


def _print_status(status: dict[str, Any]) -> None:
    now = datetime.now(UTC)
    sales, outbox = status["sales"], status["outbox"]
    print(f"  agent last alive: {_ago(status['agent_alive_at'], now)}")
    print(f"  sales: {sales['count']} (last receipt {sales['last_receipt_no'] or '-'})")
    print(f"  outbox: {outbox['unsent']} unsent (oldest {outbox['oldest_unsent_at'] or '-'})")
    print("  devices:")
    for p in status["printers"]:
        state = {True: "available", False: "NOT AVAILABLE", None: "unknown"}[p["available"]]
        queued = ", ".join(f"{k} {v}" for k, v in sorted(p["jobs"].items())) or "no jobs waiting"
        print(f"    printer {p['name']} ({p['uri']}): {state}: {p['detail']}; {queued}")
    for d in status["devices"]:
        state = "available" if d["available"] else "NOT AVAILABLE"
        print(f"    {d['kind']} {d['name']}: {state}: {d['detail']} (checked {d['checked_at']})")
    if not status["printers"] and not status["devices"]:
        print("    none configured")
    print("  jobs:")
    for job in status["jobs"]:
        outcome = job["outcome"].upper() if job["outcome"] == "failed" else job["outcome"]
        when = job["finished_at"] or job["started_at"]
        failures = f", {job['failures']} failed" if job["failures"] else ""
        print(
            f"    {job['name']}: {outcome} at {when}: {job['detail'] or '-'}"
            f" ({job['runs']} runs{failures})"
        )
    if not status["jobs"]:
        print("    none has run yet")


def cmd_status(args: argparse.Namespace) -> int:
    """Show outbox depth, queued print jobs and printer health from the database."""
    config = _load(args.config)
    try:
        status = _read_status(config)
    except sqlite3.Error as err:
        print(f"cannot read the agent database: {err}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(status, indent=2))
        return 0
    print(f"store {status['store_id']}")
    if "database" in status:
        print(f"  database: {status['database']}")
        return 0
    _print_status(status)
    return 0


def cmd_enroll(args: argparse.Namespace) -> int:
    """Register the store's public key with the cloud using a one-time token."""
    config = _load(args.config)
    try:
        enrolled = asyncio.run(enroll(config, args.cloud, args.token))
    except EnrollError as err:
        print(f"enrollment failed: {err}", file=sys.stderr)
        return 1
    print(f"store {enrolled.store_id} enrolled with {enrolled.cloud_url} (epoch {enrolled.epoch})")
    print(f"public key: {enrolled.public_key}")
    print("restart storelink-sync if it runs, so it syncs with this enrollment")
    if enrolled.cloud_url != config.cloud.url:
        print(f"note: receipt QR codes point at [cloud] url = {config.cloud.url} in {args.config}")
    return 0


def cmd_print_test(args: argparse.Namespace) -> int:
    """Print a test receipt with a signed QR on every printer; report each one."""
    config = _load(args.config)
    if not config.printers:
        print("no printers configured")
        return 1
    try:
        prepare_data_dir(config.store.data_dir)
        key = load_or_create_store_key(config.store.data_dir)
    except (StartupError, StoreKeyError) as err:
        print(f"cannot load the store key: {err}", file=sys.stderr)
        return 2
    now = datetime.now(UTC)
    # receipt_seq 0 marks a test receipt: it verifies at the cloud but is no sale.
    claims = ReceiptClaims(config.store.id, 0, int(now.timestamp()), 0, "XXX", None)
    url = receipt_url(config.cloud.url, issue_token(claims, key))
    failures = 0
    for printer in config.printers:
        profile = profile_of(printer)
        data = render_test_page(
            config.store.name or config.store.id,
            printer.name,
            profile,
            url,
            now,
            cjk_font=config.receipt.cjk_font,
        )
        try:
            uri = reachable_uri(printer.parsed_uri, config.discovery.interfaces)
            status = print_job(uri, data, printer.timeout_s)
        except (PrinterError, DiscoveryError) as err:
            failures += 1
            print(f"{printer.name}: FAILED: {err}")
            continue
        state = status.describe() if status is not None else "status not readable"
        print(f"{printer.name}: printed test receipt ({len(data)} bytes); printer {state}")
    print(f"QR: {url}")
    return 1 if failures else 0


def cmd_doctor(args: argparse.Namespace) -> int:
    """Check the installation, the cloud and every device; exit 1 if anything failed."""
    from agent.doctor import CheckResult, Verdict, run_checks

    try:
        config = load_config(args.config)
    except ConfigError as err:
        result = CheckResult("config", Verdict.FAIL, str(err), f"edit {args.config}")
        print(json.dumps([result.as_json()], indent=2) if args.json else result.line())
        return 2
    results = asyncio.run(run_checks(config))
    if args.json:
        print(json.dumps([r.as_json() for r in results], indent=2))
    else:
        for result in results:
            print(result.line())
        bad = sum(not r.ok for r in results)
        print(f"{bad} check(s) failed" if bad else "all checks passed")
    return 0 if all(r.ok for r in results) else 1


def cmd_discover(args: argparse.Namespace) -> int:
    """Browse the LAN for printers, LLRP readers and agents; print config lines to paste."""
    interfaces = args.interface or []
    where = ", ".join(interfaces) or "all interfaces"
    print(f"# listening for {args.seconds:g} s on {where} ...", file=sys.stderr)
    try:
        found = asyncio.run(browse(interfaces, args.seconds))
    except (DiscoveryError, OSError) as err:
        print(f"cannot browse the LAN: {err}", file=sys.stderr)
        return 1
    for line in config_lines(found):
        print(line)
    return 0


def cmd_printer_emulate(args: argparse.Namespace) -> int:
    """Run the ESC/POS printer emulator (for the demo and integrators)."""
    from drivers.printer.emulator import main as emulator_main

    argv = ["--listen", args.listen, "--width", str(args.width)]
    if args.out:
        argv += ["--out", str(args.out)]
    return emulator_main(argv)


def build_parser() -> argparse.ArgumentParser:
    """The command-line interface."""
    parser = argparse.ArgumentParser(prog="storelink-agent", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    def with_config(name: str, help_text: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text)
        p.add_argument("--config", type=Path, required=True, help="agent TOML config file")
        return p

    run = with_config("run", "run the agent")
    run.add_argument("--verbose", action="store_true", help="debug logging")
    run.set_defaults(func=cmd_run)
    status = with_config("status", "show printers, outbox depth and queued jobs")
    status.add_argument("--json", action="store_true", help="machine-readable output")
    status.set_defaults(func=cmd_status)
    enroll_cmd = with_config("enroll", "register the store's key with the cloud (one-time token)")
    enroll_cmd.add_argument(
        "--cloud", required=True, help="the cloud's URL, e.g. https://cloud.example.com"
    )
    enroll_cmd.add_argument(
        "--token", required=True, help="token printed by `storelink-cloud stores add`"
    )
    enroll_cmd.set_defaults(func=cmd_enroll)
    with_config("print-test", "print a test receipt on every printer").set_defaults(
        func=cmd_print_test
    )
    doctor = with_config("doctor", "check the installation, the cloud and the devices")
    doctor.add_argument("--json", action="store_true", help="machine-readable output")
    doctor.set_defaults(func=cmd_doctor)
    discover = sub.add_parser(
        "discover", help="find printers, RFID readers and agents on the LAN (mDNS)"
    )
    discover.add_argument(
        "--seconds", type=float, default=5.0, help="how long to listen (default 5)"
    )
    discover.add_argument(
        "--interface",
        action="append",
        metavar="ADDR",
        help="IP address of the interface to browse on (repeatable; default: all)",
    )
    discover.set_defaults(func=cmd_discover)

    printer = sub.add_parser("printer", help="printer tools")
    printer_sub = printer.add_subparsers(dest="printer_command", required=True)
    emulate = printer_sub.add_parser("emulate", help="run the ESC/POS printer emulator")
    emulate.add_argument("--listen", default="127.0.0.1:9100", help="HOST:PORT to listen on")
    emulate.add_argument("--out", type=Path, help="write each job as a PNG into this folder")
    emulate.add_argument("--width", type=int, default=512, help="paper width in dots")
    emulate.set_defaults(func=cmd_printer_emulate)
    rfid_cli.register(sub)
    wifi_cli.register(sub)
    camera_cli.register(sub)
    return parser


def _glue_token(argv: Sequence[str]) -> list[str]:
    """``--token T`` as ``--token=T``, so a token starting with "-" is not taken for an option."""
    out = list(argv)
    for i, arg in enumerate(out[:-1]):
        if arg == "--token":
            out[i : i + 2] = [f"--token={out[i + 1]}"]
            break
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``storelink-agent``."""
    args = build_parser().parse_args(_glue_token(sys.argv[1:] if argv is None else argv))
    result: int = args.func(args)
    return result


if __name__ == "__main__":
    raise SystemExit(main())
