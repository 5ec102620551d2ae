"""``storelink-agent doctor``: each check gives a plain verdict and, when it fails, a fix hint."""

from __future__ import annotations

import os
import shutil
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass

from agent.config import AgentConfig, PrinterConfig
from agent.db import DB_FILE
from agent.receipt import find_cjk_font
from drivers.printer.connection import PrinterConnection
from drivers.printer.errors import PrinterError

MIN_FREE_BYTES = 200 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class CheckResult:
    """One check's verdict."""

    name: str
    ok: bool
    detail: str
    hint: str = ""

    def line(self) -> str:
        """The check as one line of output."""
        verdict = "ok  " if self.ok else "FAIL"
        hint = f"\n       fix: {self.hint}" if self.hint and not self.ok else ""
        return f"[{verdict}] {self.name}: {self.detail}{hint}"


def check_data_dir(config: AgentConfig) -> CheckResult:
    """The data directory exists, is writable and has free space."""
    path = config.store.data_dir
    name = "data directory"
    if not path.is_dir():
        return CheckResult(name, False, f"{path} does not exist", "start the agent once, or mkdir")
    if not os.access(path, os.W_OK):
        return CheckResult(name, False, f"{path} is not writable", "chown it to the agent's user")
    free = shutil.disk_usage(path).free
    if free < MIN_FREE_BYTES:
        return CheckResult(
            name, False, f"only {free // 2**20} MiB free in {path}", "free disk space"
        )
    return CheckResult(name, True, f"{path}, {free // 2**20} MiB free")


def check_database(config: AgentConfig) -> CheckResult:
    """The database opens and passes SQLite's quick check."""
    path = config.store.data_dir / DB_FILE
    if not path.exists():
        return CheckResult("database", False, f"{path} not created yet", "start the agent once")
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            (verdict,) = conn.execute("PRAGMA quick_check").fetchone()
        finally:
            conn.close()
    except sqlite3.Error as err:
        return CheckResult("database", False, str(err), "restore the data directory from backup")
    return CheckResult("database", verdict == "ok", f"{path}: {verdict}", "restore from backup")


def check_store_key(config: AgentConfig) -> CheckResult:
    """The store key exists with owner-only permissions."""
    path = config.store.data_dir / "store_key.pem"
    if not path.exists():
        return CheckResult("store key", False, "no store key yet", "start the agent once")
    mode = path.stat().st_mode & 0o777
    if mode & 0o077:
        return CheckResult("store key", False, f"{path} has mode {mode:o}", f"chmod 600 {path}")
    return CheckResult("store key", True, f"{path} (mode {mode:o})")


def check_cjk_font(config: AgentConfig) -> CheckResult:
    """A CJK font exists for printers that cannot print GB18030 text."""
    font = config.receipt.cjk_font or find_cjk_font()
    if font is None or not font.exists():
        return CheckResult(
            "CJK font",
            False,
            "no CJK font: Chinese names print as '?' on non-GB18030 printers",
            "apt-get install fonts-wqy-microhei, or set [receipt] cjk_font",
        )
    return CheckResult("CJK font", True, str(font))


def check_printer(printer: PrinterConfig) -> CheckResult:
    """The printer answers and is ready (paper, cover, online)."""
    name = f"printer {printer.name}"
    try:
        with PrinterConnection(printer.parsed_uri, printer.timeout_s) as conn:
            status = conn.query_status()
    except PrinterError as err:
        return CheckResult(name, False, str(err), f"check power, cable and {printer.uri}")
    if status is None:
        return CheckResult(name, True, f"{printer.uri} opened (status not readable)")
    if not status.ready:
        return CheckResult(name, False, status.describe(), "load paper / close the cover")
    return CheckResult(name, True, f"{printer.uri}: {status.describe()}")


def run_checks(config: AgentConfig) -> list[CheckResult]:
    """Run every check in order."""
    checks: list[Callable[[], CheckResult]] = [
        lambda: CheckResult("config", True, "valid"),
        lambda: check_data_dir(config),
        lambda: check_database(config),
        lambda: check_store_key(config),
        lambda: check_cjk_font(config),
    ]
    checks += [lambda p=p: check_printer(p) for p in config.printers]  # type: ignore[misc]
    return [check() for check in checks]
