"""scripts/install-agent and scripts/uninstall-agent into a scratch root.

The scripts run for real (as root, which this container is): useradd --root creates the
user in the scratch root's /etc/passwd, pip builds and installs storelink from this source
tree into the scratch venv. ``--no-deps`` keeps it offline and fast; every other step is the
one a store PC runs.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import stat
import tomllib
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from agent.config import parse_config
from agent.db import DB_FILE, Database, Durability
from agent.outbox import NewEvent, Outbox, epoch_ms
from tests.ops.scratch import copy_of, run_script

REPO = Path(__file__).resolve().parents[2]
INSTALL = REPO / "scripts" / "install-agent"
UNINSTALL = REPO / "scripts" / "uninstall-agent"
SITE = "opt/storelink/venv/lib/python3.11/site-packages"


@dataclass(frozen=True)
class Entry:
    mode: int
    uid: int
    gid: int
    digest: str | None  # of a file's bytes; None for a directory


def snapshot(root: Path) -> dict[str, Entry]:
    """Every path under root with its mode, owner and content hash."""
    entries = {}
    for path in [root, *root.rglob("*")]:
        info = path.lstat()
        digest = None
        if stat.S_ISREG(info.st_mode):
            digest = hashlib.sha256(path.read_bytes()).hexdigest()
        entries[str(path.relative_to(root))] = Entry(info.st_mode, info.st_uid, info.st_gid, digest)
    return entries


def storelink_ids(root: Path) -> tuple[int, int]:
    for line in (root / "etc/passwd").read_text().splitlines():
        name, _, uid, gid, *_ = line.split(":")
        if name == "storelink":
            return int(uid), int(gid)
    raise AssertionError("no storelink user in the scratch root")


def test_install_creates_the_user_venv_config_data_dir_and_units(installed: Path) -> None:
    root = installed
    uid, gid = storelink_ids(root)
    assert uid != 0
    assert "storelink:!:" in (root / "etc/group").read_text()

    def owner_mode(path: str) -> tuple[int, int, str]:
        info = (root / path).stat()
        return info.st_uid, info.st_gid, oct(stat.S_IMODE(info.st_mode))

    assert owner_mode("etc/storelink") == (0, gid, "0o750")
    assert owner_mode("etc/storelink/agent.toml") == (0, gid, "0o640")
    assert owner_mode("var/lib/storelink") == (uid, gid, "0o700")
    # The code belongs to root: the services cannot rewrite what they run.
    assert owner_mode("opt/storelink/venv/bin/python")[:2] == (0, 0)
    assert owner_mode(f"{SITE}/agent/app.py") == (0, 0, "0o644")
    for command in ("storelink-agent", "storelink-sync", "storelink-cloud"):
        assert os.access(root / "opt/storelink/venv/bin" / command, os.X_OK)
    assert (root / SITE / "agent/app.py").read_bytes() == (REPO / "agent/app.py").read_bytes()
    for unit in ("storelink-agent.service", "storelink-sync.service"):
        installed_unit = root / "etc/systemd/system" / unit
        assert installed_unit.read_bytes() == (REPO / "systemd" / unit).read_bytes()
        assert owner_mode(f"etc/systemd/system/{unit}") == (0, 0, "0o644")
    # The store PC runs no cloud.
    assert not (root / "etc/systemd/system/storelink-cloud.service").exists()


def test_the_config_is_the_example_with_a_random_pos_key(installed: Path) -> None:
    text = (installed / "etc/storelink/agent.toml").read_text()
    example = (REPO / "config/agent.example.toml").read_text()
    changed = [
        (a, b) for a, b in zip(example.splitlines(), text.splitlines(), strict=True) if a != b
    ]
    assert len(changed) == 1
    assert changed[0][1].startswith('key = "')
    config = parse_config(tomllib.loads(text), "agent.toml")
    key = config.api.key.get_secret_value()
    assert len(key) >= 40
    assert "change-me" not in key
    assert config.store.data_dir == Path("/var/lib/storelink")


def test_a_second_run_upgrades_the_code_and_changes_nothing_else(
    installed: Path, tmp_path: Path
) -> None:
    root = copy_of(installed, tmp_path)
    config = root / "etc/storelink/agent.toml"
    # What store IT did after the first run: edited the config; the agent wrote its data.
    config.write_text(config.read_text().replace('id = "S001"', 'id = "S042"'))
    data = root / "var/lib/storelink"
    (data / DB_FILE).write_bytes(b"not really a database, but bytes that must survive")
    (data / "store.key").write_bytes(b"k" * 32)
    os.chmod(data / "store.key", 0o600)
    code = root / SITE / "agent/app.py"
    code.write_text("# an older release\n")
    before = snapshot(root)

    result = run_script(INSTALL, root, "--no-deps")

    assert result.returncode == 0, result.stderr
    assert "keeping" in result.stdout
    after = snapshot(root)
    changed = {p for p in before.keys() | after.keys() if before.get(p) != after.get(p)}
    assert changed, "the second run installed nothing"
    assert all(p.startswith("opt/storelink/venv/") for p in changed), sorted(changed)[:10]
    assert code.read_bytes() == (REPO / "agent/app.py").read_bytes()
    assert 'id = "S042"' in config.read_text()


async def _unsent_outbox(data_dir: Path) -> None:
    async with Database(data_dir / DB_FILE) as db:
        outbox = Outbox(db)
        at = epoch_ms(datetime(2026, 11, 27, 9, 30, tzinfo=UTC))
        events = [NewEvent("sale", {"n": i}, at + i) for i in range(3)]
        events.append(NewEvent("rfid.tryon", {"room": "F1"}, at + 3_600_000))
        await outbox.append_many(events, Durability.NORMAL)
        # One sale already acknowledged by the cloud: not counted.
        await outbox.append_many([NewEvent("sale", {"n": 9}, at)], Durability.NORMAL)
        async with db.write(Durability.NORMAL) as conn:
            await conn.execute("UPDATE outbox SET sent_at = 'x' WHERE seq = 5")


def test_uninstall_refuses_while_events_are_unsent_and_says_what_would_be_lost(
    installed: Path, tmp_path: Path
) -> None:
    root = copy_of(installed, tmp_path)
    data = root / "var/lib/storelink"
    asyncio.run(_unsent_outbox(data))

    refused = run_script(UNINSTALL, root)

    assert refused.returncode == 1
    assert "4 events" in refused.stdout
    assert "3 sale (since 2026-11-27 09:30 UTC)" in refused.stdout
    assert "1 rfid.tryon (since 2026-11-27 10:30 UTC)" in refused.stdout
    assert "--force" in refused.stderr
    assert (root / "opt/storelink/venv/bin/storelink-agent").exists()
    assert (root / "etc/systemd/system/storelink-agent.service").exists()

    forced = run_script(UNINSTALL, root, "--force")

    assert forced.returncode == 0, forced.stderr
    assert not (root / "opt/storelink").exists()
    assert not (root / "etc/systemd/system/storelink-agent.service").exists()
    # Data and config stay without --purge: the unsent events can still be rescued.
    assert (data / DB_FILE).exists()
    assert (root / "etc/storelink/agent.toml").exists()

    purged = run_script(UNINSTALL, root, "--force", "--purge")

    assert purged.returncode == 0, purged.stderr
    assert not data.exists()
    assert not (root / "etc/storelink").exists()
    assert "storelink:" not in (root / "etc/passwd").read_text()


def test_uninstall_with_everything_sent_needs_no_force(installed: Path, tmp_path: Path) -> None:
    root = copy_of(installed, tmp_path)
    result = run_script(UNINSTALL, root)
    assert result.returncode == 0, result.stderr
    assert not (root / "opt/storelink").exists()
    assert (root / "var/lib/storelink").is_dir()
