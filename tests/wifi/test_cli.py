"""``storelink-agent wifi replay`` (the evaluation contract) and ``wifi calibrate``."""

from __future__ import annotations

import csv
import io
import json
import random
from pathlib import Path

import pytest

from agent.cli import main
from agent.wifi.calibration import CalibrationError, OccupancyModel, load_model
from tests import wifi_pcap as wp
from tests.wifi import scenario


def crowd_capture(path: Path, seed: int, people: list[int]) -> tuple[Path, Path, int]:
    """A capture with ``people[i]`` nearby phones in 10-minute window i, and its truth CSV.

    Every 7th row has no count (NaN); the third value is how many windows keep a count.
    """
    rng = random.Random(seed)
    frames: list[tuple[int, bytes]] = []
    for i, count in enumerate(people):
        for _ in range(count):
            mac = wp.random_mac(rng, local=False)
            for k in range(4):
                t = scenario.s(600 * i + 30 + 120 * k + rng.random())
                frames.append((t, wp.probe_frame(wp.Probe(mac=mac, ts_us=t, rssi=-50, seq=k))))
        far = wp.random_mac(rng, local=False)  # one passer-by far away in every window
        t = scenario.s(600 * i + 300)
        frames.append((t, wp.probe_frame(wp.Probe(mac=far, ts_us=t, rssi=-90))))
    frames.sort(key=lambda f: f[0])
    wp.write_pcap(path, frames)
    truth = path.with_suffix(".csv")
    lines = ["datetime;src;idx;occupancy"]
    counted: set[int] = set()
    for idx, (t, _) in enumerate(frames):
        window = (t - wp.T0) // 600_000_000
        lines.append(f"x;y;{idx};{people[window] if idx % 7 else 'nan'}")
        if idx % 7:
            counted.add(window)
    truth.write_text("\n".join(lines) + "\n")
    return path, truth, len(counted)


def test_replay_csv_contract(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pcap = scenario.build().write(tmp_path / "shop.pcap")
    assert main(["wifi", "replay", "--pcap", str(pcap), "--window", "600", "--format", "csv"]) == 0
    rows = list(csv.reader(io.StringIO(capsys.readouterr().out)))
    assert rows[0][:3] == ["window_start", "devices", "occupancy"]
    assert len(rows) == 1 + 12
    assert [r[0] for r in rows[1:3]] == ["2024-06-01T12:00:00Z", "2024-06-01T12:10:00Z"]
    assert [int(r[1]) for r in rows[1:]] == [5] + [0] * 11
    assert all(float(r[2]) >= 0 for r in rows[1:])


def test_replay_of_a_missing_file_fails_clearly(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["wifi", "replay", "--pcap", str(tmp_path / "nope.pcap"), "--window", "60"]) == 2
    assert "nope.pcap" in capsys.readouterr().err


def test_calibration_round_trip(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a = crowd_capture(tmp_path / "a.pcap", 1, [0, 2, 5, 3, 1, 0, 4, 6])
    b = crowd_capture(tmp_path / "b.pcap", 2, [1, 3, 0, 2, 6, 5])
    out = tmp_path / "cal.json"
    argv = ["wifi", "calibrate", "--pcap", str(a[0]), str(b[0]), "--truth", str(a[1]), str(b[1])]
    assert main([*argv, "--out", str(out)]) == 0
    assert f"calibrated on {a[2] + b[2]} windows" in capsys.readouterr().out
    assert a[2] + b[2] < 14  # windows whose only row had no count were skipped
    model = load_model(out)
    assert model.window_s == 600
    assert model.calibrated
    assert model.fitted_r is not None
    assert model.fitted_r > 0.99
    # Round trip: the file says the same as the model it was written from.
    assert OccupancyModel.from_json(model.to_json()) == model

    test = crowd_capture(tmp_path / "c.pcap", 3, [2, 4, 0, 7])
    assert (
        main(
            ["wifi", "replay", "--pcap", str(test[0]), "--calibration", str(out), "--window", "600"]
        )
        == 0
    )
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    estimates = [float(r["occupancy"]) for r in rows]
    assert estimates == pytest.approx([2, 4, 0, 7], abs=0.5)


def test_bad_calibration_files_name_the_problem(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text(
        json.dumps(
            {
                "version": 1,
                "window_s": 600,
                "near_rssi_dbm": -65,
                "features": ["shoe_size"],
                "weights": [1.0],
                "intercept": 0,
            }
        )
    )
    with pytest.raises(CalibrationError, match="shoe_size"):
        load_model(bad)
    bad.write_text("{not json")
    with pytest.raises(CalibrationError, match="not JSON"):
        load_model(bad)


def test_the_factory_calibration_ships_with_the_package() -> None:
    from agent.wifi.calibration import reference_model

    model = reference_model()
    assert model.calibrated
    assert model.window_s == 600
    assert model.fitted_r is not None
    assert model.fitted_r > 0.9
