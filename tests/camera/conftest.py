"""Generated videos shared by the camera tests (written once per session)."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.camera.replay import replay_video
from drivers.camera.counting import Crossing
from drivers.camera.synth import Scene, TrueCrossing
from tests.camera.scenes import SCENES, write

Video = tuple[Path, Scene, list[TrueCrossing]]


@pytest.fixture(scope="session")
def videos(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Video]:
    """Every scene of tests/camera/scenes.py as a video file with its ground truth."""
    directory = tmp_path_factory.mktemp("camera-videos")
    return {name: write(directory, name) for name in SCENES}


@pytest.fixture(scope="session")
def replayed(videos: dict[str, Video]) -> dict[str, list[Crossing]]:
    """The crossings `camera replay` counts in each generated video (computed once)."""
    return {name: replay_video(path, scene.line) for name, (path, scene, _) in videos.items()}
