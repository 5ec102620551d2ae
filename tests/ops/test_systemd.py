"""``systemd-analyze verify`` on the three units, installed into a scratch root.

No systemd runs as PID 1 here. ``verify --root`` loads units from the scratch root, so the
root gets the host's own system units (for sysinit.target, basic.target, ...) and the units
as scripts/install-agent installed them, next to a venv whose commands exist: verify checks
that each ExecStart names an executable inside the root. Warnings (an unknown key, a value
that does not parse) do not change verify's exit code, so the test also wants its stderr
empty.
"""

from __future__ import annotations

import configparser
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.ops.scratch import copy_of

REPO = Path(__file__).resolve().parents[2]
UNITS = ("storelink-agent.service", "storelink-sync.service", "storelink-cloud.service")
HOST_UNITS = Path("/usr/lib/systemd/system")

pytestmark = pytest.mark.skipif(
    shutil.which("systemd-analyze") is None or os.geteuid() != 0,
    reason="needs systemd-analyze (scripts/test installs the systemd package) and root",
)


@pytest.fixture(scope="module")
def root(installed: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = copy_of(installed, tmp_path_factory.mktemp("units"))
    # The cloud's unit is not for a store PC; install-agent leaves it out.
    shutil.copy(REPO / "systemd/storelink-cloud.service", root / "etc/systemd/system")
    shutil.copytree(HOST_UNITS, root / HOST_UNITS.relative_to("/"), symlinks=True)
    return root


def verify(root: Path, unit: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["systemd-analyze", "verify", f"--root={root}", f"/etc/systemd/system/{unit}"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize("unit", UNITS)
def test_systemd_analyze_verify_passes_without_a_warning(root: Path, unit: str) -> None:
    result = verify(root, unit)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""


def test_verify_would_catch_a_missing_executable_and_a_bad_key(root: Path) -> None:
    unit_dir = root / "etc/systemd/system"
    text = (unit_dir / "storelink-sync.service").read_text()
    broken = text.replace("storelink-sync run", "storelink-nothing run").replace(
        "WatchdogSec=30", "WatchdogSec=30\nWatchdogSecs=30"
    )
    (unit_dir / "broken.service").write_text(broken)
    try:
        result = verify(root, "broken.service")
    finally:
        (unit_dir / "broken.service").unlink()
    assert result.returncode != 0
    assert "storelink-nothing is not executable" in result.stderr
    assert "Unknown key 'WatchdogSecs'" in result.stderr


def _service(unit: str) -> configparser.SectionProxy:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string((REPO / "systemd" / unit).read_text())
    return parser["Service"]


@pytest.mark.parametrize("unit", UNITS[:2])
def test_store_units_are_notify_services_with_a_watchdog_and_hardening(unit: str) -> None:
    service = _service(unit)
    assert service["Type"] == "notify"
    assert service["NotifyAccess"] == "main"
    assert service["WatchdogSec"] == "30"
    assert service["Restart"] == "on-failure"
    assert service["User"] == "storelink"
    assert service["ProtectSystem"] == "strict"
    assert service["ReadWritePaths"] == "/var/lib/storelink"
    for key in ("NoNewPrivileges", "PrivateTmp", "ProtectHome", "MemoryDenyWriteExecute"):
        assert service[key] == "yes", key


def test_only_the_agent_holds_capabilities_and_only_the_sniffers() -> None:
    agent = _service("storelink-agent.service")
    assert agent["CapabilityBoundingSet"].split() == ["CAP_NET_RAW", "CAP_NET_ADMIN"]
    assert agent["AmbientCapabilities"].split() == ["CAP_NET_RAW", "CAP_NET_ADMIN"]
    assert "AF_PACKET" in agent["RestrictAddressFamilies"].split()
    for unit in UNITS[1:]:
        service = _service(unit)
        assert service["CapabilityBoundingSet"] == ""
        assert "AmbientCapabilities" not in service
        assert "AF_PACKET" not in service["RestrictAddressFamilies"].split()
