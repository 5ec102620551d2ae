"""``storelink-agent wifi replay|calibrate``: the Wi-Fi pipeline on capture files.

``replay`` is the evaluation contract (keep it stable): one CSV row per window,
``window_start`` (UTC, ISO 8601), ``devices``, ``occupancy``, then further columns; the capture
is read as one sniffer's with no prior state. ``calibrate`` fits the occupancy model on
captures with counted occupancy (lab CSVs) and writes the calibration file that
``[wifi] calibration`` and ``replay --calibration`` read.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from agent.wifi.calibration import (
    CalibrationError,
    OccupancyModel,
    fit,
    load_model,
    read_truth,
    reference_model,
)
from agent.wifi.replay import (
    ReplaySettings,
    read_capture,
    replay,
    settings_for,
    to_csv,
    truth_by_window,
)
from drivers.wifi.probe import PcapError


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the wifi commands to the agent's command line."""
    wifi = sub.add_parser("wifi", help="Wi-Fi probe analytics on capture files")
    cmds = wifi.add_subparsers(dest="wifi_command", required=True)

    rp = cmds.add_parser("replay", help="windows of a capture as CSV (no prior state)")
    rp.add_argument("--pcap", type=Path, required=True, help="pcap/pcapng capture")
    rp.add_argument("--calibration", type=Path, help="calibration file from `wifi calibrate`")
    rp.add_argument("--window", type=int, default=60, help="window length in seconds")
    rp.add_argument("--format", choices=("csv",), default="csv")
    rp.set_defaults(func=cmd_replay)

    cp = cmds.add_parser("calibrate", help="fit the occupancy model on counted captures")
    cp.add_argument("--pcap", type=Path, nargs="+", required=True)
    cp.add_argument(
        "--truth", type=Path, nargs="+", required=True, help="lab CSV per pcap, same order"
    )
    cp.add_argument("--out", type=Path, required=True, help="calibration file to write")
    cp.add_argument("--window", type=int, default=600, help="window length in seconds")
    cp.add_argument("--near-rssi", type=int, default=-65, help="dBm of a 'near' device")
    cp.set_defaults(func=cmd_calibrate)


def _fail(message: str) -> int:
    print(f"wifi: {message}", file=sys.stderr)
    return 2


def cmd_replay(args: argparse.Namespace) -> int:
    """Print the windows of one capture as CSV."""
    if args.window < 10:
        return _fail("--window must be at least 10 seconds")
    try:
        # Without --calibration: the factory calibration (see agent/wifi/calibration.py).
        model = load_model(args.calibration) if args.calibration else reference_model()
        frames = read_capture(args.pcap)
    except (CalibrationError, PcapError, OSError) as err:
        return _fail(str(err))
    windows, _ = replay(frames, settings_for(args.window, model, ReplaySettings()), model)
    sys.stdout.write(to_csv(windows))
    return 0


def cmd_calibrate(args: argparse.Namespace) -> int:
    """Fit the occupancy model and write the calibration file."""
    if len(args.pcap) != len(args.truth):
        return _fail(f"{len(args.pcap)} --pcap files but {len(args.truth)} --truth files")
    if args.window < 60:
        return _fail("--window must be at least 60 seconds")
    model = OccupancyModel.uncalibrated(args.window, args.near_rssi)
    settings = settings_for(args.window, model, ReplaySettings())
    rows: list[dict[str, float]] = []
    truth: list[float] = []
    try:
        for pcap, csv_path in zip(args.pcap, args.truth, strict=True):
            frames = read_capture(pcap)
            counted = truth_by_window(frames, read_truth(csv_path), args.window)
            windows, _ = replay(frames, settings, model)
            for w in windows:
                if w.start_us in counted:
                    rows.append(dict(w.features))
                    truth.append(counted[w.start_us])
        fitted = fit(rows, truth, window_s=args.window, near_rssi_dbm=args.near_rssi)
        args.out.write_text(fitted.to_json(), encoding="utf-8")
    except (CalibrationError, PcapError, OSError) as err:
        return _fail(str(err))
    print(
        f"calibrated on {fitted.fitted_windows} windows of {len(args.pcap)} capture(s): "
        f"r={fitted.fitted_r} MAE={fitted.fitted_mae}; wrote {args.out}"
    )
    return 0
