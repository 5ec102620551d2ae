"""The keyed hash: a per-store secret file (0600), daily rotation, opt-in stable keys."""

from __future__ import annotations

import os
import stat
from datetime import date
from pathlib import Path

import pytest

from agent.wifi.privacy import (
    SECRET_FILE,
    DeviceHasher,
    WifiSecretError,
    fixed_tag,
    load_or_create_secret,
)

MAC = bytes.fromhex("dafb48001122")
DAY1, DAY2 = date(2024, 6, 1), date(2024, 6, 2)


def test_secret_is_created_once_owner_only(tmp_path: Path) -> None:
    secret = load_or_create_secret(tmp_path)
    path = tmp_path / SECRET_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(secret) == 32
    assert load_or_create_secret(tmp_path) == secret
    os.chmod(path, 0o644)
    with pytest.raises(WifiSecretError, match="chmod 600"):
        load_or_create_secret(tmp_path)


def test_wrong_size_secret_is_refused(tmp_path: Path) -> None:
    path = tmp_path / SECRET_FILE
    path.write_bytes(b"short")
    os.chmod(path, 0o600)
    with pytest.raises(WifiSecretError, match="5 bytes"):
        load_or_create_secret(tmp_path)


def test_device_ids_rotate_daily_but_fixed_tags_do_not() -> None:
    secret = bytes(range(32))
    hasher = DeviceHasher(secret, DAY1)
    first = hasher(MAC)
    assert hasher(MAC) == first  # the same all day
    assert MAC not in first
    hasher.rotate(DAY2)
    second = hasher(MAC)
    assert second[:12] != first[:12]
    assert fixed_tag(second) == fixed_tag(first)
    assert DeviceHasher(bytes(32), DAY1)(MAC) != first  # another store, another identifier


def test_stable_keys_do_not_rotate() -> None:
    hasher = DeviceHasher(bytes(range(32)), DAY1, stable=True)
    first = hasher(MAC)
    hasher.rotate(DAY2)
    assert hasher(MAC) == first
