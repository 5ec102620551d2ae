"""`storelink-agent camera snapshot`: the line drawn, the person blurred, the rest sharp."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from agent.cli import main
from drivers.camera.synth import SceneBuilder, write_video
from tests.helpers import agent_toml

PERSON = np.array([200, 200, 210])  # the bright colour SceneBuilder's colour 4 uses


def test_snapshot_blurs_the_person_and_draws_the_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    b = SceneBuilder(seed=9)
    # Someone walking about the whole video, wherever the snapshot's last frame falls.
    b.path(
        [(0.2, 0.3, 0), (0.8, 0.3, 0), (0.8, 0.7, 0), (0.2, 0.7, 0), (0.2, 0.3, 0)] * 2,
        speed=0.012,
        size=0.15,
        color=4,
    )
    video = tmp_path / "door.avi"
    scene = b.scene()
    write_video(video, scene)
    camera = f'[camera]\nsource = "{video}"\nline = [16, 120, 304, 120]\n'
    config = tmp_path / "agent.toml"
    config.write_text(agent_toml(tmp_path / "data", 8380, None, extra=camera))
    out = tmp_path / "snap.png"

    assert (
        main(["camera", "snapshot", "--config", str(config), "--out", str(out), "--seconds", "1"])
        == 0
    )
    assert "moving regions are blurred" in capsys.readouterr().out
    image = cv2.imread(str(out))
    assert image is not None
    assert image.shape == (240, 320, 3)
    person_like = np.all(np.abs(image.astype(int) - PERSON) < 25, axis=2)
    assert person_like.sum() < 20  # the bright shoulders are gone (a raw frame has ~600)
    yellow = (image[:, :, 0] < 80) & (image[:, :, 1] > 200) & (image[:, :, 2] > 200)
    assert yellow[119:121, 20:300].mean() > 0.9  # the counting line
    # The floor away from the person keeps its texture: not everything is blurred.
    sharpness = [
        cv2.Laplacian(image[y : y + 40, x : x + 40], cv2.CV_64F).var()
        for y in (0, 200)
        for x in (0, 280)
    ]
    assert max(sharpness) > 50
    # The raw frames do show the person (so the check above can fail).
    raw = cv2.VideoCapture(str(video))
    ok, frame = raw.read()
    raw.release()
    assert ok
    assert np.all(np.abs(frame.astype(int) - PERSON) < 25, axis=2).sum() > 200


def test_snapshot_without_camera_is_a_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "agent.toml"
    config.write_text(agent_toml(tmp_path / "data", 8380, None))
    assert (
        main(["camera", "snapshot", "--config", str(config), "--out", str(tmp_path / "x.png")]) == 2
    )
    assert "no [camera] source configured" in capsys.readouterr().err
    assert not (tmp_path / "x.png").exists()


def test_burst_keeps_small_grey_frames_and_one_full_frame(tmp_path: Path) -> None:
    from agent.camera.cli import grab_burst

    b = SceneBuilder(width=1280, height=720, seed=3)
    b.path([(0.1, 0.5, 0), (0.9, 0.5, 0)], speed=0.01, size=0.15, color=4)
    video = tmp_path / "hd.avi"
    write_video(video, b.scene())

    frames = grab_burst(str(video), seconds=30, max_frames=12)
    assert 2 <= len(frames) <= 12
    assert frames[-1].shape == (720, 1280, 3)
    assert all(f.ndim == 2 and f.shape[1] <= 480 for f in frames[:-1])
