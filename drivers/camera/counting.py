"""Footfall counting: moving people in frames → crossings of a line, with a direction.

Pure computation on frames handed in (no capture, no clock, no I/O), one instance per
camera, not thread-safe. Each frame goes through:

1. downscale to the processing width, grey, brightness normalised to a reference level
   (a light switched on scales the whole picture; the normalisation undoes most of it);
2. background subtraction (a per-pixel Gaussian with a shadow test), learning fast for
   the first second and then slowly, so someone standing still stays foreground for
   several seconds;
3. a global-change check: when a large part of the frame turns foreground at once (a light
   on one side, the camera knocked), the background is relearned and the tracker paused for
   a moment instead of counting ghosts;
4. blobs: morphological opening (sensor noise and the
   thin edges a shaking mount makes) and closing, external contours above a minimum area; a blob
   wider and larger than one person (learned from single blobs) is split along its main
   axis into as many people as it holds (people walking side by side);
5. tracking: constant-velocity prediction, greedy nearest assignment within a maximum
   distance, a short memory for people lost for a few frames;
6. counting with hysteresis: a track counts when it goes from beyond the margin on one side
   of the line segment to beyond the margin on the other side. Standing on the line counts
   at most once; walking back counts the other way.

Directions follow the product contract: with x to the right and y downwards, "in" is the
side where (X2-X1)(y-Y1) - (Y2-Y1)(x-X1) > 0.
"""

from __future__ import annotations

import math
import statistics
from collections import deque
from dataclasses import dataclass, field

import cv2
import numpy as np

from drivers.camera.capture import Frame

# The counting line, X1, Y1, X2, Y2 in source pixels.
Line = tuple[float, float, float, float]


class _Background:
    """A per-pixel Gaussian background model of grey frames, with a shadow test.

    OpenCV's MOG2 does the same job with up to five Gaussians per pixel; on one core it took
    more time than decoding the frame, and on grey frames its shadow test is this one (a
    pixel darker than the background by at most ``1 - shadow``). One Gaussian whose variance
    follows the pixel keeps what mattered: noise and the edges a shaking mount makes raise
    the variance there, so they stop being foreground.
    """

    def __init__(self, gray: Frame, k: float = 4.0, shadow: float = 0.6) -> None:
        self.mean = gray.astype(np.float32)
        self.var = np.full(gray.shape, 49.0, np.float32)
        self._k2 = k * k
        self._shadow = shadow

    def apply(self, gray: Frame, rate: float) -> tuple[Frame, float]:
        """The foreground mask (255) of ``gray`` and the fraction that changed (shadows too).

        Then learns the frame at ``rate``.
        """
        frame = gray.astype(np.float32)
        diff = frame - self.mean
        d2 = diff * diff
        fg = d2 > self._k2 * self.var
        # Darker than the background but not by much: a shadow, not a person.
        shadow = (diff < 0) & (frame > self._shadow * self.mean)
        changed = float(np.count_nonzero(fg)) / fg.size
        mask = (fg & ~shadow).view(np.uint8) * np.uint8(255)
        cv2.accumulateWeighted(frame, self.mean, rate)
        cv2.accumulateWeighted(np.minimum(d2, 2500.0), self.var, rate)
        np.maximum(self.var, 16.0, out=self.var)
        return mask, changed


@dataclass(frozen=True, slots=True)
class CountingSettings:
    """Tuning of the pipeline; sizes are fractions of the frame so they survive downscaling."""

    process_width: int = 320
    # Hysteresis band each side of the line, as a fraction of the processed frame height.
    margin: float = 0.05
    # Shoulder width of one person as a fraction of the frame width (a prior; then learned).
    person_size: float = 0.12
    # Smallest blob that can be a person, as a fraction of one person's area.
    min_blob: float = 0.25
    # More than this fraction of the frame turning foreground at once is a global change.
    global_change: float = 0.25
    # How long a person must stand still before becoming background.
    history_s: float = 60.0
    # How long a lost track is remembered.
    memory_s: float = 0.7


@dataclass(frozen=True, slots=True)
class Crossing:
    """A counted crossing: ``t`` as given with the frame, ``x``/``y`` in source pixels."""

    t: float
    x: float
    y: float
    direction: str  # "in" or "out"
    track: int


@dataclass(slots=True)
class _Track:
    id: int
    x: float
    y: float
    vx: float = 0.0
    vy: float = 0.0
    missed: int = 0
    seen: int = 1
    side: int = 0  # -1 / +1 beyond the margin, 0 not yet known
    last_s: float = 0.0
    cross_x: float = math.nan
    cross_y: float = math.nan


@dataclass(slots=True)
class _Blob:
    x: float
    y: float
    area: float
    length: float
    ax: float  # unit vector of the main axis
    ay: float


@dataclass(slots=True)
class CounterStats:
    """What the counter has seen (for debugging; no image data)."""

    frames: int = 0
    relearned: int = 0


@dataclass(slots=True)
class _PersonSize:
    """Running estimate of one person's blob (main-axis length and area) in processed px."""

    length: float
    area: float
    prior: tuple[float, float]
    samples: deque[tuple[float, float]] = field(default_factory=lambda: deque(maxlen=200))

    def learn(self, blob: _Blob) -> None:
        ratio = blob.length / self.length
        if 0.7 < ratio < 1.4 and blob.area > 0.5 * self.area:
            self.samples.append((blob.length, blob.area))
            if len(self.samples) >= 30 and len(self.samples) % 10 == 0:
                # Bounded around the configured size, so a run of fragments cannot shrink it.
                length = statistics.median(s[0] for s in self.samples)
                area = statistics.median(s[1] for s in self.samples)
                self.length = min(max(length, self.prior[0] / 1.5), self.prior[0] * 1.5)
                self.area = min(max(area, self.prior[1] / 2.25), self.prior[1] * 2.25)


class FootfallCounter:
    """Counts crossings of ``line`` (source pixels) in frames of ``source_size`` at ``fps``."""

    def __init__(
        self,
        line: Line,
        source_size: tuple[int, int],
        fps: float,
        settings: CountingSettings | None = None,
    ) -> None:
        self.settings = s = settings or CountingSettings()
        src_w, src_h = source_size
        if src_w <= 0 or src_h <= 0:
            raise ValueError(f"frame size {src_w}x{src_h} is not a picture")
        x1, y1, x2, y2 = line
        if math.hypot(x2 - x1, y2 - y1) < 2:
            raise ValueError("the counting line's two points are the same")
        self._source_size = (src_w, src_h)
        self._scale = min(1.0, s.process_width / src_w)
        self._size = (round(src_w * self._scale), round(src_h * self._scale))
        w, h = self._size
        self._line = tuple(v * self._scale for v in line)
        lx, ly = self._line[2] - self._line[0], self._line[3] - self._line[1]
        self._len = math.hypot(lx, ly)
        self._dir = (lx / self._len, ly / self._len)
        self._margin = s.margin * h
        self._fps = max(1.0, fps)
        self._history = max(50, round(s.history_s * self._fps))
        self._memory = max(2, round(s.memory_s * self._fps))
        person = s.person_size * w
        area = math.pi / 4 * person * person * 0.6
        self._person = _PersonSize(person, area, (person, area))
        k = max(3, round(w / 107) | 1)
        self._open = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k))
        c = max(5, round(person / 4) | 1)
        # A square closes blobs as well as a disc here and costs a quarter (separable).
        self._close = cv2.getStructuringElement(cv2.MORPH_RECT, (c, c))
        self._background: _Background | None = None
        self._learned = 0  # frames since the background model was (re)started
        self._level = 0.0  # reference brightness
        self._blind = 0  # frames left to skip after relearning
        self._tracks: list[_Track] = []
        self._next_id = 1
        self.stats = CounterStats()

    @property
    def source_size(self) -> tuple[int, int]:
        """Width and height of the frames this counter was made for."""
        return self._source_size

    def process(self, frame: Frame, t: float) -> list[Crossing]:
        """Feed one BGR (or grey) source frame taken at ``t``; return the crossings it completed."""
        self.stats.frames += 1
        gray = self._prepare(frame)
        if self._background is None:
            self._background = _Background(gray)
        # Learn fast for the first second (the scene), then at 1/history, so someone standing
        # still stays foreground for several seconds.
        self._learned += 1
        rate = 1 / self._learned if self._learned < self._fps else 1 / self._history
        mask, changed = self._background.apply(gray, rate)
        if self._blind > 0:
            self._blind -= 1
            return []
        if changed > self.settings.global_change:
            self._relearn(gray)
            return []
        mask = cv2.morphologyEx(mask, cv2.MORPH_OPEN, self._open)
        mask = cv2.morphologyEx(mask, cv2.MORPH_CLOSE, self._close)
        return self._track(self._blobs(mask), t)

    def _relearn(self, gray: Frame) -> None:
        """Start the background (and the brightness reference) again; keep the tracks."""
        self.stats.relearned += 1
        self._background = _Background(gray)
        self._level = 0.0
        self._learned = 1
        self._blind = max(2, round(0.2 * self._fps))

    def reset_tracks(self) -> None:
        """Forget everyone being tracked (the picture jumped: a new file, a reconnect)."""
        self._tracks.clear()

    def _prepare(self, frame: Frame) -> Frame:
        # Grey first, then downscale: one channel to resize instead of three (faster).
        gray = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY) if frame.ndim == 3 else frame
        if gray.shape[1] != self._size[0]:
            gray = cv2.resize(gray, self._size, interpolation=cv2.INTER_AREA)
        level = max(float(cv2.mean(gray)[0]), 1.0)
        if self._level == 0.0:
            self._level = level
        gain = self._level / level
        if abs(gain - 1) > 0.02:
            return cv2.convertScaleAbs(gray, alpha=gain)
        return gray

    def _blobs(self, mask: Frame) -> list[_Blob]:
        contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        min_area = self.settings.min_blob * self._person.area
        people: list[_Blob] = []
        for contour in contours:
            m = cv2.moments(contour)
            area = m["m00"]
            if area < min_area:
                continue
            cx, cy = m["m10"] / area, m["m01"] / area
            angle = 0.5 * math.atan2(2 * m["mu11"], m["mu20"] - m["mu02"])
            ax, ay = math.cos(angle), math.sin(angle)
            # The blob's extent along its main axis: people side by side make it long.
            along = contour.reshape(-1, 2) @ np.array([ax, ay])
            blob = _Blob(cx, cy, area, float(along.max() - along.min()), ax, ay)
            n = max(1, min(4, math.floor(blob.length / self._person.length + 0.35)))
            if n == 1:
                self._person.learn(blob)
                people.append(blob)
                continue
            step = blob.length / n
            for i in range(n):
                off = (i - (n - 1) / 2) * step
                people.append(_Blob(cx + off * ax, cy + off * ay, area / n, step, ax, ay))
        return people

    def _track(self, blobs: list[_Blob], t: float) -> list[Crossing]:
        max_jump = 0.9 * self._person.length
        pairs: list[tuple[float, int, int]] = []
        for ti, track in enumerate(self._tracks):
            px, py = track.x + track.vx, track.y + track.vy
            for bi, blob in enumerate(blobs):
                d = math.hypot(blob.x - px, blob.y - py)
                if d <= max_jump * (1 + 0.5 * min(track.missed, 2)):
                    pairs.append((d, ti, bi))
        pairs.sort()
        used_tracks: set[int] = set()
        used_blobs: set[int] = set()
        crossings: list[Crossing] = []
        for _, ti, bi in pairs:
            if ti in used_tracks or bi in used_blobs:
                continue
            used_tracks.add(ti)
            used_blobs.add(bi)
            track, blob = self._tracks[ti], blobs[bi]
            steps = track.missed + 1
            vx, vy = (blob.x - track.x) / steps, (blob.y - track.y) / steps
            track.vx = 0.5 * track.vx + 0.5 * vx if track.seen > 1 else vx
            track.vy = 0.5 * track.vy + 0.5 * vy if track.seen > 1 else vy
            track.x, track.y = blob.x, blob.y
            track.missed = 0
            track.seen += 1
            crossing = self._update_side(track, t)
            if crossing is not None:
                crossings.append(crossing)
        kept: list[_Track] = []
        for ti, track in enumerate(self._tracks):
            if ti in used_tracks:
                kept.append(track)
            elif track.missed < self._memory:
                track.missed += 1
                kept.append(track)
        for bi, blob in enumerate(blobs):
            if bi not in used_blobs:
                track = _Track(self._next_id, blob.x, blob.y)
                self._next_id += 1
                track.last_s = self._signed(blob.x, blob.y)[0]
                self._update_side(track, t)
                kept.append(track)
        self._tracks = kept
        return crossings

    def _signed(self, x: float, y: float) -> tuple[float, float]:
        """Signed distance to the line (positive on the "in" side) and position along it."""
        x1, y1 = self._line[0], self._line[1]
        dx, dy = self._dir
        return dx * (y - y1) - dy * (x - x1), dx * (x - x1) + dy * (y - y1)

    def _update_side(self, track: _Track, t: float) -> Crossing | None:
        s, along = self._signed(track.x, track.y)
        if (s > 0) != (track.last_s > 0) and s != track.last_s:
            # Where the path crossed the line (interpolated between the two observations).
            frac = track.last_s / (track.last_s - s)
            prev_x, prev_y = track.x - track.vx, track.y - track.vy
            track.cross_x = prev_x + (track.x - prev_x) * frac
            track.cross_y = prev_y + (track.y - prev_y) * frac
        track.last_s = s
        if -self._margin <= along <= self._len + self._margin:
            side = 1 if s > self._margin else -1 if s < -self._margin else 0
        else:
            side = 0  # beside the segment: neither side
        if side == 0:
            return None
        previous, track.side = track.side, side
        if previous == 0 or previous == side:
            return None
        if math.isnan(track.cross_x):
            track.cross_x, track.cross_y = track.x, track.y
        crossing = Crossing(
            t,
            track.cross_x / self._scale,
            track.cross_y / self._scale,
            "in" if side > 0 else "out",
            track.id,
        )
        track.cross_x = track.cross_y = math.nan
        return crossing
