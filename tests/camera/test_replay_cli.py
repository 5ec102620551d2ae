"""The `storelink-agent camera replay` contract: CSV columns and direction semantics."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest

from agent.cli import main
from tests.camera.conftest import Video


def _replay(capsys: pytest.CaptureFixture[str], video: Path, line: str) -> list[dict[str, str]]:
    assert main(["camera", "replay", "--video", str(video), "--line", line, "--format", "csv"]) == 0
    return list(csv.DictReader(io.StringIO(capsys.readouterr().out)))


def test_csv_columns_and_left_to_right_line(
    videos: dict[str, Video], capsys: pytest.CaptureFixture[str]
) -> None:
    path, scene, truth = videos["separated"]
    x1, y1, x2, y2 = scene.line
    rows = _replay(capsys, path, f"{x1},{y1},{x2},{y2}")
    assert list(rows[0]) == ["t", "x", "y", "direction"]
    # Left to right: "in" is downwards, which is how the scene's truth is labelled.
    assert [r["direction"] for r in rows] == [c.direction for c in truth]
    for row, true in zip(rows, truth, strict=True):
        assert abs(float(row["t"]) - true.t) < 0.5
        assert x1 <= float(row["x"]) <= x2
        assert abs(float(row["y"]) - y1) < 3


def test_line_drawn_right_to_left_swaps_directions(
    videos: dict[str, Video], capsys: pytest.CaptureFixture[str]
) -> None:
    path, scene, truth = videos["separated"]
    x1, y1, x2, y2 = scene.line
    rows = _replay(capsys, path, f"{x2},{y2},{x1},{y1}")
    flipped = {"in": "out", "out": "in"}
    assert [r["direction"] for r in rows] == [flipped[c.direction] for c in truth]


def test_corrupt_video_is_a_clear_error(
    tmp_path: Path, videos: dict[str, Video], capsys: pytest.CaptureFixture[str]
) -> None:
    garbage = tmp_path / "garbage.avi"
    garbage.write_bytes(bytes(range(256)) * 400)
    assert main(["camera", "replay", "--video", str(garbage), "--line", "0,1,2,1"]) == 2
    assert "is not a video" in capsys.readouterr().err
    missing = tmp_path / "missing.avi"
    assert main(["camera", "replay", "--video", str(missing), "--line", "0,1,2,1"]) == 2
    assert "does not exist" in capsys.readouterr().err
    # A file cut in half: the frames before the damage are counted, then it ends cleanly.
    whole = videos["separated"][0].read_bytes()
    cut = tmp_path / "cut.avi"
    cut.write_bytes(whole[: len(whole) // 2])
    rows = _replay(capsys, cut, "16,120,304,120")
    assert 1 <= len(rows) < 12


def test_bad_line_is_a_clear_error(
    videos: dict[str, Video], capsys: pytest.CaptureFixture[str]
) -> None:
    path = videos["separated"][0]
    assert main(["camera", "replay", "--video", str(path), "--line", "1,2,3"]) == 2
    assert "--line: expected X1,Y1,X2,Y2" in capsys.readouterr().err
    assert main(["camera", "replay", "--video", str(path), "--line", "5,5,5,5"]) == 2
    assert "the two points are the same" in capsys.readouterr().err
