"""The setup snapshot: one frame with the counting line drawn and moving people blurred.

The only picture storelink ever writes (``storelink-agent camera snapshot``), for store IT
placing the line. One frame has no background model, so a short burst is used: its median
is the static scene, and wherever the last frames differ from it (grown generously) is
blurred hard enough that nobody can be recognised. Someone who stood perfectly still for
the whole burst is part of the median: store IT takes the snapshot with the door clear.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from drivers.camera.capture import Frame
from drivers.camera.counting import Line

# Motion is judged on grey frames at most this wide (a burst of full-size frames would cost
# gigabytes at 1080p); the mask is scaled back up to the snapshot's size.
MASK_WIDTH = 480


def small_gray(frame: Frame) -> Frame:
    """The frame in grey, at most MASK_WIDTH wide (unchanged if it already is)."""
    gray = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY) if frame.ndim == 3 else frame
    h, w = gray.shape[:2]
    if w <= MASK_WIDTH:
        return gray
    return cv2.resize(gray, (MASK_WIDTH, round(h * MASK_WIDTH / w)), interpolation=cv2.INTER_AREA)


def moving_mask(frames: Sequence[Frame], threshold: int = 30) -> Frame:
    """255 where the last frames differ from the burst's median (grown by w/10)."""
    h, w = frames[-1].shape[:2]
    grays = [
        cv2.GaussianBlur(cv2.cvtColor(f, cv2.COLOR_BGR2GRAY) if f.ndim == 3 else f, (5, 5), 0)
        for f in frames
    ]
    # The median over the burst is the static scene, as long as nobody stood still in it.
    static = np.median(np.stack(grays), axis=0).astype(np.uint8)
    mask = np.zeros((h, w), np.uint8)
    for gray in grays[-5:]:
        _, moved = cv2.threshold(cv2.absdiff(gray, static), threshold, 255, cv2.THRESH_BINARY)
        mask |= moved
    grow = max(9, w // 10) | 1
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (grow, grow))
    return cv2.dilate(cv2.morphologyEx(mask, cv2.MORPH_OPEN, np.ones((3, 3), np.uint8)), kernel)


def setup_snapshot(frames: Sequence[Frame], line: Line) -> Frame:
    """The last frame of the burst, moving regions blurred, the line and its "in" side drawn.

    Only the last frame is needed at full size (in colour); the earlier ones may already be
    :func:`small_gray` copies.
    """
    if not frames:
        raise ValueError("a snapshot needs at least one frame")
    frame = frames[-1].copy()
    h, w = frame.shape[:2]
    if len(frames) > 1:
        small = moving_mask([small_gray(f) for f in frames])
        mask = cv2.resize(small, (w, h), interpolation=cv2.INTER_NEAREST)
    else:
        mask = np.full((h, w), 255, np.uint8)
    sigma = max(8.0, w / 25)
    blurred = cv2.GaussianBlur(frame, (0, 0), sigma)
    frame[mask > 0] = blurred[mask > 0]
    x1, y1, x2, y2 = (round(v) for v in line)
    thickness = max(2, w // 200)
    cv2.line(frame, (x1, y1), (x2, y2), (0, 255, 255), thickness)
    # An arrow from the middle of the line towards the "in" side.
    mx, my = (x1 + x2) / 2, (y1 + y2) / 2
    length = float(np.hypot(x2 - x1, y2 - y1))
    nx, ny = -(y2 - y1) / length, (x2 - x1) / length  # unit normal to the "in" side
    tip = (round(mx + nx * w / 12), round(my + ny * w / 12))
    cv2.arrowedLine(frame, (round(mx), round(my)), tip, (0, 255, 255), thickness, tipLength=0.3)
    cv2.putText(
        frame,
        "in",
        (tip[0] + 4, tip[1] + 4),
        cv2.FONT_HERSHEY_SIMPLEX,
        w / 800,
        (0, 255, 255),
        thickness,
    )
    return frame
