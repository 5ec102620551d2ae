"""storelink-cloud as a process: tokens on the last line, exit codes, run, export."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.helpers import free_port

CLI = str(Path(sys.executable).with_name("storelink-cloud"))


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([CLI, *args], capture_output=True, text=True, timeout=60, check=False)


@pytest.fixture
def config(tmp_path: Path) -> Path:
    port = free_port()
    path = tmp_path / "cloud.toml"
    path.write_text(
        f'[server]\nlisten = "127.0.0.1:{port}"\npublic_url = "http://127.0.0.1:{port}"\n'
        f'data_dir = "{tmp_path / "data"}"\n'
    )
    return path


def _get(url: str, token: str | None = None) -> tuple[int, bytes]:
    request = urllib.request.Request(url)
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


def test_stores_add_prints_the_token_last(config: Path) -> None:
    done = _run(
        "stores",
        "add",
        "--config",
        str(config),
        "--id",
        "S001",
        "--name",
        "Bars",
        "--region",
        "east",
    )
    assert done.returncode == 0, done.stderr
    token = done.stdout.strip().splitlines()[-1]
    assert len(token) >= 40
    assert " " not in token
    again = _run(
        "stores",
        "add",
        "--config",
        str(config),
        "--id",
        "S001",
        "--name",
        "Bars",
        "--region",
        "east",
    )
    assert again.stdout.strip().splitlines()[-1] != token


def test_bad_input_exits_2_with_a_clear_message(config: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(config.read_text().replace("listen", "listne", 1))
    done = _run("run", "--config", str(bad))
    assert done.returncode == 2
    assert "server.listne: unknown key" in done.stderr
    regional = _run("users", "add", "--config", str(config), "--name", "r", "--role", "regional")
    assert regional.returncode == 2
    assert "needs --region" in regional.stderr
    bad_id = _run(
        "stores", "add", "--config", str(config), "--id", "S 1", "--name", "x", "--region", "e"
    )
    assert bad_id.returncode == 2
    unknown = _run("stores", "revoke", "--config", str(config), "--id", "NOPE")
    assert unknown.returncode == 2
    window = _run(
        "export",
        "sales",
        "--config",
        str(config),
        "--format",
        "csv",
        "--from",
        "soon",
        "--out",
        "-",
    )
    assert window.returncode == 2
    assert "from: not an ISO 8601" in window.stderr


def test_run_serves_until_sigterm_and_export_reads_the_database(config: Path) -> None:
    hq = _run(
        "users", "add", "--config", str(config), "--name", "hq", "--role", "hq"
    ).stdout.split()[-1]
    _run(
        "stores",
        "add",
        "--config",
        str(config),
        "--id",
        "S001",
        "--name",
        "Bars",
        "--region",
        "east",
    )
    port = config.read_text().split("127.0.0.1:")[1].split('"')[0]
    server = subprocess.Popen(
        [CLI, "run", "--config", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + 30
        status, body = 0, b""
        while time.monotonic() < deadline:
            try:
                status, body = _get(f"http://127.0.0.1:{port}/v1/sync-status", hq)
                break
            except OSError:
                time.sleep(0.2)
        assert status == 200
        assert [s["store_id"] for s in json.loads(body)["stores"]] == ["S001"]
        assert _get(f"http://127.0.0.1:{port}/v1/sync-status")[0] == 401
    finally:
        server.send_signal(signal.SIGTERM)
        assert server.wait(timeout=20) == 0
    done = _run("export", "sales", "--config", str(config), "--format", "ndjson", "--out", "-")
    assert done.returncode == 0
    assert done.stdout == ""
    assert os.path.exists(config.parent / "data" / "cloud.db")
