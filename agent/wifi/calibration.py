"""The occupancy model: persons in the store from a few device counts, fitted on counted days.

The model is linear (ridge regression, numpy only) on the features of
:func:`agent.wifi.windows.occupancy_features` over windows of ``window_s`` seconds, clamped at
zero. Time of day is deliberately not a feature: it would learn one site's timetable, not
its phones. A calibration file is JSON::

    {"version": 1, "window_s": 600, "near_rssi_dbm": -65, "features": [...],
     "weights": [...], "intercept": 0.1, "fitted": {"windows": 900, "r": 0.93, "mae": 0.5}}

Truth files are the lab's CSV format (``;``-separated, header row with at least ``idx`` and
``occupancy``): ``idx`` is the frame's index in the pcap of the same capture, so a row's time
is that frame's capture time; rows with an empty or NaN occupancy are skipped.

Exceptions::

    Exception
     └── CalibrationError   a calibration or truth file is missing, malformed or unusable
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from agent.wifi.windows import FEATURES

VERSION = 1
DEFAULT_FEATURES = ("global_all", "global_near", "random_all", "random_near")
RIDGE = 1.0


class CalibrationError(Exception):
    """A calibration or truth file cannot be used."""


@dataclass(frozen=True, slots=True)
class OccupancyModel:
    """occupancy = max(0, intercept + sum(weight * feature))."""

    window_s: int
    near_rssi_dbm: int
    features: tuple[str, ...]
    weights: tuple[float, ...]
    intercept: float
    fitted_windows: int = 0
    fitted_r: float | None = None
    fitted_mae: float | None = None

    @classmethod
    def uncalibrated(cls, window_s: int = 600, near_rssi_dbm: int = -65) -> OccupancyModel:
        """Without a calibration: one person per nearby device (a rough guess)."""
        return cls(window_s, near_rssi_dbm, ("near",), (1.0,), 0.0)

    @property
    def calibrated(self) -> bool:
        """True when fitted on counted occupancy."""
        return self.fitted_windows > 0

    def __call__(self, features: Mapping[str, float]) -> float:
        """The estimate (persons, >= 0) for one window's features."""
        value = self.intercept + sum(
            w * features[name] for name, w in zip(self.features, self.weights, strict=True)
        )
        return max(0.0, value)

    def to_json(self) -> str:
        """The calibration file's text."""
        body = {
            "version": VERSION,
            "window_s": self.window_s,
            "near_rssi_dbm": self.near_rssi_dbm,
            "features": list(self.features),
            "weights": list(self.weights),
            "intercept": self.intercept,
            "fitted": {"windows": self.fitted_windows, "r": self.fitted_r, "mae": self.fitted_mae},
        }
        return json.dumps(body, indent=2) + "\n"

    @classmethod
    def from_json(cls, text: str, source: str = "calibration") -> OccupancyModel:
        """Parse a calibration file's text; errors name the bad field."""
        try:
            body = json.loads(text)
        except json.JSONDecodeError as err:
            raise CalibrationError(f"{source} is not JSON: {err}") from err
        if not isinstance(body, dict) or body.get("version") != VERSION:
            raise CalibrationError(f"{source}: expected a JSON object with version {VERSION}")
        try:
            features = tuple(str(f) for f in body["features"])
            weights = tuple(float(w) for w in body["weights"])
            model = cls(
                window_s=int(body["window_s"]),
                near_rssi_dbm=int(body["near_rssi_dbm"]),
                features=features,
                weights=weights,
                intercept=float(body["intercept"]),
                fitted_windows=int(body.get("fitted", {}).get("windows", 0)),
                fitted_r=body.get("fitted", {}).get("r"),
                fitted_mae=body.get("fitted", {}).get("mae"),
            )
        except (KeyError, TypeError, ValueError) as err:
            raise CalibrationError(f"{source}: missing or bad field {err}") from err
        unknown = [f for f in features if f not in FEATURES]
        if unknown:
            raise CalibrationError(f"{source}: unknown feature(s) {unknown}; known: {FEATURES}")
        if len(weights) != len(features):
            raise CalibrationError(f"{source}: {len(features)} features but {len(weights)} weights")
        if model.window_s < 60:
            raise CalibrationError(f"{source}: window_s must be at least 60")
        return model


# The factory calibration: fitted by `storelink-agent wifi calibrate` on the 24 counted days of
# ../shared/data/wifi/lab-occupancy-dev (a university lab, one ESP32 sniffer). Used when a
# store has none of its own; a store's own calibration is better (another room, another
# sniffer position), so status and logs say which one is in use.
REFERENCE_CALIBRATION = Path(__file__).with_name("reference-calibration.json")


def reference_model() -> OccupancyModel:
    """The factory calibration shipped with storelink (blocking I/O)."""
    return load_model(REFERENCE_CALIBRATION)


def load_model(path: Path) -> OccupancyModel:
    """Read a calibration file (blocking I/O)."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise CalibrationError(f"cannot read calibration {path}: {err}") from err
    return OccupancyModel.from_json(text, str(path))


def fit(
    rows: Sequence[Mapping[str, float]],
    truth: Sequence[float],
    *,
    window_s: int,
    near_rssi_dbm: int,
    features: Sequence[str] = DEFAULT_FEATURES,
    ridge: float = RIDGE,
) -> OccupancyModel:
    """Fit the model by ridge regression (the intercept is not penalised)."""
    if len(rows) != len(truth):
        raise ValueError("one truth value per window is needed")
    if len(rows) < len(features) + 2:
        raise CalibrationError(
            f"only {len(rows)} windows with counted occupancy; need at least {len(features) + 2}"
        )
    x = np.array([[row[f] for f in features] for row in rows], dtype=float)
    y = np.asarray(truth, dtype=float)
    a = np.hstack([x, np.ones((len(x), 1))])
    penalty = ridge * np.eye(a.shape[1])
    penalty[-1, -1] = 0.0
    coef = np.linalg.solve(a.T @ a + penalty, a.T @ y)
    pred = np.maximum(a @ coef, 0.0)
    return OccupancyModel(
        window_s=window_s,
        near_rssi_dbm=near_rssi_dbm,
        features=tuple(features),
        weights=tuple(round(float(c), 6) for c in coef[:-1]),
        intercept=round(float(coef[-1]), 6),
        fitted_windows=len(rows),
        fitted_r=_round(pearson(pred, y)),
        fitted_mae=_round(float(np.mean(np.abs(pred - y)))),
    )


def _round(value: float) -> float | None:
    return None if math.isnan(value) else round(value, 4)


def pearson(a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray) -> float:
    """Pearson's r (NaN when either side is constant)."""
    x = np.asarray(a, dtype=float)
    y = np.asarray(b, dtype=float)
    if len(x) < 2 or float(np.std(x)) == 0.0 or float(np.std(y)) == 0.0:
        return math.nan
    return float(np.corrcoef(x, y)[0, 1])


def read_truth(path: Path) -> dict[int, float]:
    """Counted occupancy by pcap frame index from a lab CSV (blocking I/O)."""
    out: dict[int, float] = {}
    try:
        with path.open(newline="", encoding="utf-8") as file:
            reader = csv.reader(file, delimiter=";")
            header = next(reader, None)
            if header is None or "idx" not in header or "occupancy" not in header:
                raise CalibrationError(f"truth file {path} needs a header with idx and occupancy")
            i_idx, i_occ = header.index("idx"), header.index("occupancy")
            for line, row in enumerate(reader, start=2):
                if len(row) <= max(i_idx, i_occ):
                    raise CalibrationError(f"truth file {path} line {line}: too few columns")
                text = row[i_occ].strip()
                if not text or text.lower() == "nan":
                    continue
                try:
                    out[int(row[i_idx])] = float(text)
                except ValueError as err:
                    raise CalibrationError(
                        f"truth file {path} line {line}: bad idx or occupancy ({err})"
                    ) from err
    except OSError as err:
        raise CalibrationError(f"cannot read truth file {path}: {err}") from err
    return out
