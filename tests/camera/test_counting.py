"""Counting accuracy on generated videos, through the replay path (file → OpenCV → counts)."""

from __future__ import annotations

import numpy as np
import pytest

from drivers.camera.counting import CountingSettings, Crossing, FootfallCounter
from tests.camera.conftest import Video


def _counts(items: list[str]) -> tuple[int, int]:
    return items.count("in"), items.count("out")


def test_separated_walkers_are_counted_exactly(
    videos: dict[str, Video], replayed: dict[str, list[Crossing]]
) -> None:
    _, scene, truth = videos["separated"]
    got = replayed["separated"]
    assert [c.direction for c in got] == [c.direction for c in truth]
    for counted, true in zip(got, truth, strict=True):
        assert abs(counted.t - true.t) < 0.5  # the same crossing, not a lucky total
        assert abs(counted.y - scene.line[1]) < 3  # where it crossed: on the line


@pytest.mark.parametrize("name", ["pairs", "stopping", "lighting", "shaking"])
def test_hard_scenes_count_each_direction(
    videos: dict[str, Video], replayed: dict[str, list[Crossing]], name: str
) -> None:
    truth = videos[name][2]
    got = replayed[name]
    assert _counts([c.direction for c in got]) == _counts([c.direction for c in truth])


def test_whole_suite_within_five_percent(
    videos: dict[str, Video],
    replayed: dict[str, list[Crossing]],
    capsys: pytest.CaptureFixture[str],
) -> None:
    rows = []
    true_total = error = 0
    for name, (_, _, truth) in videos.items():
        got = _counts([c.direction for c in replayed[name]])
        want = _counts([c.direction for c in truth])
        rows.append(f"  {name:10} in {got[0]:3}/{want[0]:<3} out {got[1]:3}/{want[1]:<3}")
        true_total += sum(want)
        error += abs(got[0] - want[0]) + abs(got[1] - want[1])
    share = error / true_total
    with capsys.disabled():
        print("\nfootfall on generated videos (counted/true):")
        print("\n".join(rows))
        print(f"  total error {error} of {true_total} crossings = {share:.1%} (target <= 5%)")
    assert share <= 0.05


def test_no_motion_no_counts() -> None:
    rng = np.random.default_rng(0)
    floor = rng.integers(60, 200, (240, 320, 3), dtype=np.uint8)
    counter = FootfallCounter((0, 120, 320, 120), (320, 240), 15, CountingSettings())
    for i in range(60):
        noisy = np.clip(floor + rng.normal(0, 6, floor.shape), 0, 255).astype(np.uint8)
        assert counter.process(noisy, i / 15) == []
