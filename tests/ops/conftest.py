"""One scratch-root install per test session, shared by the install and systemd tests.

Installing builds storelink with pip (several seconds), so it is done once; a test that
changes the installed tree works on a copy (tests.ops.scratch.copy_of).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.ops.scratch import INSTALL, run_script


@pytest.fixture(scope="session")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A scratch root after one run of ``install-agent --no-deps`` (do not change it)."""
    if os.geteuid() != 0:
        pytest.skip("the installer runs as root")
    root = tmp_path_factory.mktemp("installed")
    result = run_script(INSTALL, root, "--no-deps")
    assert result.returncode == 0, result.stdout + result.stderr
    return root
