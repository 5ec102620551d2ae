"""The ``[camera]`` section of the agent config: one entrance camera and its counting line.

Kept import-light (no OpenCV): the sync daemon loads the same file and never opens a camera.
An empty section (no ``source``) means the store has no camera.
"""

from __future__ import annotations

import re

from pydantic import Field, field_validator, model_validator

from agent.configbase import Identifier, Strict

_HHMM = re.compile(r"^([01]\d|2[0-3]):[0-5]\d$")


class CameraConfig(Strict):
    """The entrance camera: where frames come from, the counting line and tuning."""

    name: Identifier = "entrance"
    # A device index (0 = /dev/video0), an rtsp:// or http(s):// URL, or a video file path.
    source: int | str | None = None
    # The counting line in source pixels; "in" is the side where
    # (X2-X1)(y-Y1) - (Y2-Y1)(x-X1) > 0 (downwards for a line drawn left to right).
    line: tuple[float, float, float, float] | None = None
    closing_time: str = "22:00"  # occupancy goes back to 0 then (store time zone)
    process_width: int = Field(default=320, ge=80, le=1920)
    fps: float = Field(default=10.0, gt=0, le=60)
    # Hysteresis band each side of the line, as a fraction of the frame height.
    margin: float = Field(default=0.05, gt=0, le=0.3)
    # One person's shoulder width as a fraction of the frame width (a prior; then learned).
    person_size: float = Field(default=0.12, gt=0.01, le=0.8)
    # Fraction of the frame turning foreground at once that means a lighting change.
    global_change: float = Field(default=0.25, gt=0.02, le=1)
    # Video files: play at their own frame rate (like a camera) and start again at the end.
    pace: bool = True
    loop: bool = False
    reopen_max_s: float = Field(default=60.0, ge=0.1, le=3600)

    @field_validator("source")
    @classmethod
    def _valid_source(cls, value: int | str | None) -> int | str | None:
        if isinstance(value, int) and value < 0:
            raise ValueError(f"a device index is 0 or more, got {value}")
        if isinstance(value, str) and not value:
            raise ValueError("empty; give a device index, an rtsp:// URL or a file path")
        return value

    @field_validator("line")
    @classmethod
    def _valid_line(
        cls, value: tuple[float, float, float, float] | None
    ) -> tuple[float, float, float, float] | None:
        if value is not None:
            x1, y1, x2, y2 = value
            if min(value) < 0:
                raise ValueError("points are pixel coordinates, 0 or more")
            if (x1, y1) == (x2, y2):
                raise ValueError("the two points are the same; draw a line across the door")
        return value

    @field_validator("closing_time")
    @classmethod
    def _valid_time(cls, value: str) -> str:
        if not _HHMM.match(value):
            raise ValueError(f"expected HH:MM (24-hour), got {value!r}")
        return value

    @model_validator(mode="after")
    def _line_with_source(self) -> CameraConfig:
        if self.source is not None and self.line is None:
            raise ValueError("line is missing: [x1, y1, x2, y2] in source pixels")
        return self

    @property
    def enabled(self) -> bool:
        """Whether a camera is configured."""
        return self.source is not None
