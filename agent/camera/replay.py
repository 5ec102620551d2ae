"""The footfall pipeline on a whole video file with no prior state (``camera replay``)."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from pathlib import Path

from drivers.camera.capture import read_video
from drivers.camera.counting import CountingSettings, Crossing, FootfallCounter, Line

CSV_COLUMNS = ("t", "x", "y", "direction")


def replay_video(
    path: Path, line: Line, settings: CountingSettings | None = None
) -> list[Crossing]:
    """Every crossing counted in the video at ``path`` (every frame processed).

    Raises :class:`drivers.camera.capture.VideoUnreadable` for a file that is not a video.
    """
    info, frames = read_video(path)
    counter = FootfallCounter(line, (info.width, info.height), info.fps, settings)
    crossings: list[Crossing] = []
    for t, frame in frames:
        crossings.extend(counter.process(frame, t))
    return crossings


def to_csv(crossings: Iterable[Crossing]) -> str:
    """The contract's CSV: ``t`` (s from the start), ``x``, ``y`` (video pixels), ``direction``."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for c in crossings:
        writer.writerow((f"{c.t:.3f}", f"{c.x:.1f}", f"{c.y:.1f}", c.direction))
    return out.getvalue()
