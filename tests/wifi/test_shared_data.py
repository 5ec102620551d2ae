"""The pipeline on the shared real captures (skipped when ../shared/data is absent).

Device-labelled captures: one phone per file. Their anonymisation replaced every MAC with a
random one, local bit included, so the locally administered bit means nothing there: these
tests treat every address as possibly randomised. Files are shifted to start together and
merged; the devices counted per minute over the first five minutes should be about k.
"""

from __future__ import annotations

import dataclasses
import statistics
from datetime import date
from pathlib import Path

import pytest

from agent.wifi.calibration import OccupancyModel
from agent.wifi.evaluate import LISTED_FIXED
from agent.wifi.privacy import DeviceHasher
from agent.wifi.replay import Frame, ReplaySettings, read_capture, replay, settings_for

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "wifi"
LABELLED = sorted((DATA / "device-labelled").glob("*.pcap"))
T0 = 1_717_243_200_000_000

pytestmark = pytest.mark.skipif(not LABELLED, reason=f"no device-labelled captures in {DATA}")


def aligned(path: Path, hasher: DeviceHasher) -> list[Frame]:
    frames = [f for f in read_capture(path, hasher) if f.probe is not None]
    start = min(f.ts_us for f in frames)
    out = []
    for f in frames:
        assert f.probe is not None
        ts = f.ts_us - start + T0
        probe = dataclasses.replace(f.probe, ts_us=ts, local_admin=True)
        out.append(dataclasses.replace(f, ts_us=ts, probe=probe))
    return out


def devices_per_minute(frames: list[Frame]) -> list[int]:
    model = OccupancyModel.uncalibrated(60)
    windows, _ = replay(frames, settings_for(60, model, ReplaySettings()), model)
    return [w.devices for w in windows[:5]]


def test_merging_k_labelled_files_gives_about_k_devices() -> None:
    hasher = DeviceHasher.ephemeral(date(2024, 6, 1))
    per_file = {p.name.split("_")[0]: aligned(p, hasher) for p in LABELLED}
    names = sorted(per_file)
    print()
    for k in (1, 2, 4, 8, len(names)):
        merged = sorted((f for n in names[:k] for f in per_file[n]), key=lambda f: f.ts_us)
        counts = devices_per_minute(merged)
        naive = [
            len({f.probe.device for f in merged if f.probe and m <= (f.ts_us - T0) // 60e6 < m + 1})
            for m in range(5)
        ]
        print(
            f"k={k:>2}: devices per minute {counts} (median {statistics.median(counts)}); "
            f"distinct addresses per minute {naive}"
        )
        assert k / 2 <= statistics.median(counts) <= 2 * k


LAB_DAY = DATA / "lab-occupancy-dev" / "sc6-61_2024-02-15_anonymized.pcap"


@pytest.mark.skipif(not LAB_DAY.exists(), reason=f"no lab capture {LAB_DAY}")
def test_the_learner_finds_the_lab_computers_by_itself() -> None:
    hasher = DeviceHasher.ephemeral(date(2024, 2, 15))
    frames = read_capture(LAB_DAY, hasher)
    model = OccupancyModel.uncalibrated()
    _, learner = replay(frames, ReplaySettings(), model)
    flagged = set(learner.fixed_keys())
    listed = {hasher(bytes.fromhex(m.replace(":", ""))) for m in LISTED_FIXED}
    present = listed & {f.probe.device for f in frames if f.probe is not None}
    print(
        f"\n{LAB_DAY.name}: {len(present & flagged)} of the {len(present)} listed computers "
        f"present flagged fixed; {len(flagged - listed)} other devices flagged"
    )
    assert len(present & flagged) >= len(present) // 2
