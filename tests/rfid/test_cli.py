"""``storelink-agent rfid simulate``: the simulator on its own (integrators, the demo)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.helpers import free_port

AGENT = str(Path(sys.executable).parent / "storelink-agent")


def test_rfid_simulate_listens_and_stops_after_its_duration() -> None:
    port = free_port()
    args = ["--listen", f"127.0.0.1:{port}", "--scenario", "restart", "--duration", "0.5"]
    proc = subprocess.run(
        [AGENT, "rfid", "simulate", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert f"listening on 127.0.0.1:{port}" in proc.stdout
    assert "scenario restart" in proc.stdout


def test_rfid_simulate_rejects_a_bad_listen_address() -> None:
    proc = subprocess.run(
        [AGENT, "rfid", "simulate", "--listen", "nowhere"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 2
    assert "--listen" in proc.stderr
