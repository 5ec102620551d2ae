"""Running the install scripts on scratch roots, and copying a scratch install."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
INSTALL = REPO / "scripts" / "install-agent"


def run_script(script: Path, root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run install-agent or uninstall-agent on a scratch root."""
    return subprocess.run(
        [str(script), "--root", str(root), *args],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def copy_of(installed: Path, tmp_path: Path) -> Path:
    """A copy of the shared scratch install, owners included, for a test that changes it."""
    root = tmp_path / "root"
    shutil.copytree(installed, root, symlinks=True)
    # copytree keeps modes, not owners: the data directory must stay storelink's.
    for path in [installed, *installed.rglob("*")]:
        info = path.lstat()
        os.lchown(root / path.relative_to(installed), info.st_uid, info.st_gid)
    return root
