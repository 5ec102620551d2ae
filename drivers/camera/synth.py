"""Synthetic entrance videos: people seen from above walking across a counting line.

The camera simulator of tests, the benchmark and the demo. A :class:`Scene` lists walkers
(each a path of waypoints, a speed and a size), sudden lighting changes and stretches of
camera shake; :func:`render` draws it over a textured floor with sensor noise and soft
shadows, :func:`write_video` writes it with ``cv2.VideoWriter`` (MJPG in an .avi, which every
OpenCV build with FFmpeg writes), and :func:`true_crossings` gives the ground truth.
Nothing here is a real person: the frames are generated from numbers.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt

from drivers.camera.capture import Frame
from drivers.camera.counting import Line


@dataclass(frozen=True, slots=True)
class Walker:
    """One person: appears at ``start_frame`` at the first waypoint and walks the path.

    ``waypoints`` are (x, y, frames to stand there); ``size`` is the shoulder width in pixels.
    """

    start_frame: int
    waypoints: tuple[tuple[float, float, int], ...]
    speed: float
    size: float
    color: tuple[int, int, int] = (60, 60, 160)

    def positions(self) -> list[tuple[float, float]]:
        """The walker's centre on each frame from ``start_frame`` on."""
        out: list[tuple[float, float]] = []
        x, y, stand = self.waypoints[0]
        out.extend([(x, y)] * (stand + 1))
        for nx, ny, nstand in self.waypoints[1:]:
            steps = max(1, math.ceil(math.hypot(nx - x, ny - y) / self.speed))
            for i in range(1, steps + 1):
                out.append((x + (nx - x) * i / steps, y + (ny - y) * i / steps))
            out.extend([(nx, ny)] * nstand)
            x, y = nx, ny
        return out


@dataclass(frozen=True, slots=True)
class Scene:
    """A whole generated video: size, rate, length, people and disturbances."""

    width: int
    height: int
    fps: float
    frames: int
    line: Line
    walkers: tuple[Walker, ...]
    # (frame, change) from that frame on, over two frames: a light on the left side switched
    # on (change > 0) or off, brightness times 1 + change on the left edge, fading rightwards.
    lighting: tuple[tuple[int, float], ...] = ()
    # (first frame, last frame, amplitude in pixels) of random whole-frame jitter.
    shake: tuple[tuple[int, int, float], ...] = ()
    noise: float = 6.0
    seed: int = 0


@dataclass(frozen=True, slots=True)
class TrueCrossing:
    """A crossing of the line that really happened in a scene."""

    t: float
    direction: str  # "in" or "out"
    walker: int


def _side(line: Line, x: float, y: float) -> float:
    x1, y1, x2, y2 = line
    return (x2 - x1) * (y - y1) - (y2 - y1) * (x - x1)


def true_crossings(scene: Scene) -> list[TrueCrossing]:
    """Every crossing of the scene's line segment by a walker, in time order."""
    out: list[TrueCrossing] = []
    for index, walker in enumerate(scene.walkers):
        last = 0.0
        for i, (x, y) in enumerate(walker.positions()):
            frame = walker.start_frame + i
            if frame >= scene.frames:
                break
            side = _side(scene.line, x, y)
            if side == 0:
                continue
            if last and (side > 0) != (last > 0):
                direction = "in" if side > 0 else "out"
                out.append(TrueCrossing(frame / scene.fps, direction, index))
            last = side
    return sorted(out, key=lambda c: c.t)


def _floor(width: int, height: int, rng: np.random.Generator) -> npt.NDArray[np.float32]:
    """A textured floor: tiles, blotches and fine grain (so the scene is not trivial)."""
    base = rng.normal(0, 1, (height // 8 + 1, width // 8 + 1)).astype(np.float32)
    blotches = cv2.resize(base, (width, height), interpolation=cv2.INTER_CUBIC) * 18 + 120
    grain = cv2.GaussianBlur(rng.normal(0, 10, (height, width)).astype(np.float32), (0, 0), 1.2)
    floor = blotches + grain
    tile = max(16, width // 10)
    floor[:, ::tile] -= 25
    floor[::tile, :] -= 25
    tint = np.array([0.95, 1.0, 1.05], np.float32)
    out: npt.NDArray[np.float32] = np.clip(floor[..., None] * tint, 0, 255).astype(np.float32)
    return out


def render(scene: Scene) -> Iterator[Frame]:
    """Yield the scene's frames (BGR, uint8)."""
    rng = np.random.default_rng(scene.seed)
    pad = 8
    w, h = scene.width, scene.height
    floor = _floor(w + 2 * pad, h + 2 * pad, rng)
    paths = [walker.positions() for walker in scene.walkers]
    light = np.ones((h + 2 * pad, w + 2 * pad, 1), np.float32)
    ramp = np.linspace(1.0, 0.3, w + 2 * pad, dtype=np.float32)[None, :, None]
    steps = dict(scene.lighting)
    pending: list[float] = []
    lit = False
    bank = [
        rng.normal(0, scene.noise, (h + 2 * pad, w + 2 * pad)).astype(np.float32) for _ in range(8)
    ]
    for frame in range(scene.frames):
        if frame in steps:
            pending = [steps[frame] / 2] * 2
        if pending:
            light += ramp * pending.pop()
            lit = True
        canvas = floor.copy()
        for walker, path in zip(scene.walkers, paths, strict=True):
            i = frame - walker.start_frame
            if not 0 <= i < len(path):
                continue
            x, y = path[i]
            _draw_person(canvas, x + pad, y + pad, walker, frame)
        if lit:
            canvas *= light
        # Sensor noise: one of a bank of noise fields, shifted at random (drawing fresh
        # normals for every pixel of every frame made generating the videos slow).
        noise = bank[int(rng.integers(len(bank)))]
        dxn, dyn = (int(v) for v in rng.integers(0, 64, 2))
        canvas += np.roll(noise, (dyn, dxn), axis=(0, 1))[..., None]
        dx = dy = 0.0
        for first, last, amplitude in scene.shake:
            if first <= frame <= last:
                dx, dy = rng.uniform(-amplitude, amplitude, 2)
        shift = np.array([[1, 0, dx - pad], [0, 1, dy - pad]], np.float32)
        out = cv2.warpAffine(canvas, shift, (w, h), flags=cv2.INTER_LINEAR)
        yield np.clip(out, 0, 255).astype(np.uint8)


def _draw_person(
    canvas: npt.NDArray[np.float32], x: float, y: float, walker: Walker, frame: int
) -> None:
    """A person from above: soft shadow, shoulders (ellipse), head; a slight sway."""
    s = walker.size
    sway = math.sin(frame * 0.9 + walker.start_frame) * s * 0.04
    cx, cy = round(x + sway), round(y)
    # The shadow is drawn in a patch around the person (blurring the whole frame is slow).
    r = round(s * 1.2)
    x0, y0 = max(cx - r, 0), max(cy - r, 0)
    x1, y1 = min(cx + r, canvas.shape[1]), min(cy + r, canvas.shape[0])
    if x1 > x0 and y1 > y0:
        patch = np.zeros((y1 - y0, x1 - x0), np.float32)
        centre = (round(cx + s * 0.3) - x0, round(cy + s * 0.25) - y0)
        cv2.ellipse(patch, centre, (round(s / 2), round(s * 0.32)), 0, 0, 360, 1.0, -1)
        patch = cv2.GaussianBlur(patch, (0, 0), 2)
        canvas[y0:y1, x0:x1] *= (1 - 0.3 * patch)[..., None]
    color = tuple(float(c) for c in walker.color)
    cv2.ellipse(canvas, (cx, cy), (round(s / 2), round(s * 0.3)), 0, 0, 360, color, -1)
    hair = tuple(c * 0.35 for c in color)
    cv2.circle(canvas, (cx, cy), round(s * 0.2), hair, -1)


def write_video(path: Path, scene: Scene, fourcc: str = "MJPG") -> list[TrueCrossing]:
    """Write the scene to ``path`` (an .avi for MJPG) and return its true crossings."""
    writer = cv2.VideoWriter(
        str(path), cv2.VideoWriter.fourcc(*fourcc), scene.fps, (scene.width, scene.height)
    )
    if not writer.isOpened():
        raise OSError(f"OpenCV cannot write {fourcc} video to {path}")
    try:
        for frame in render(scene):
            writer.write(frame)
    finally:
        writer.release()
    return true_crossings(scene)


_COLORS = (
    # Clothes and hair with a brightness unlike the floor's (about 120): a person the same
    # grey as the floor is invisible to background subtraction on grey frames.
    (40, 40, 140),
    (170, 70, 40),
    (30, 100, 40),
    (30, 30, 30),
    (200, 200, 210),
    (90, 190, 230),
    (200, 170, 240),
    (50, 50, 50),
)


@dataclass(slots=True)
class SceneBuilder:
    """Builds scenes for a horizontal entrance line across the middle of the frame.

    Positions and sizes are given as fractions of the frame so one recipe works at any size.
    """

    width: int = 320
    height: int = 240
    fps: float = 15.0
    seed: int = 0
    walkers: list[Walker] = field(default_factory=list)
    lighting: list[tuple[int, float]] = field(default_factory=list)
    shake: list[tuple[int, int, float]] = field(default_factory=list)
    frame: int = 0

    @property
    def line(self) -> Line:
        """The counting line: left to right across the middle (downwards is "in")."""
        y = self.height / 2
        return (self.width * 0.05, y, self.width * 0.95, y)

    def _px(self, fx: float, fy: float, stand: int = 0) -> tuple[float, float, int]:
        return (fx * self.width, fy * self.height, stand)

    def walk(
        self,
        x: float,
        direction: str,
        *,
        speed: float = 0.02,
        size: float = 0.13,
        color: int = 0,
        drift: float = 0.0,
        gap: int = 0,
    ) -> int:
        """A walker crossing at ``x`` (fraction of width), "in" = downwards; returns its frame.

        ``speed`` is the fraction of the frame height per frame, ``size`` the shoulder width
        as a fraction of the frame width; the next walker starts ``gap`` frames after this one
        has left the picture (negative: overlapping).
        """
        top, bottom = -0.12, 1.12
        ys = (top, bottom) if direction == "in" else (bottom, top)
        start = self.frame
        walker = Walker(
            start,
            (self._px(x, ys[0]), self._px(x + drift, ys[1])),
            speed * self.height,
            size * self.width,
            _COLORS[color % len(_COLORS)],
        )
        self.walkers.append(walker)
        self.frame = start + len(walker.positions()) + gap
        return start

    def pair(
        self,
        x: float,
        direction: str,
        *,
        spacing: float = 0.15,
        speed: float = 0.02,
        size: float = 0.13,
    ) -> int:
        """Two people side by side (centres ``spacing`` apart: touching blobs at 0.13 size)."""
        start = self.frame
        self.walk(x - spacing / 2, direction, speed=speed, size=size, color=1)
        self.frame = start
        return self.walk(x + spacing / 2, direction, speed=speed, size=size, color=2)

    def path(
        self,
        points: Sequence[tuple[float, float, int]],
        *,
        speed: float = 0.02,
        size: float = 0.13,
        color: int = 3,
        gap: int = 0,
    ) -> int:
        """A walker along waypoints (fractions; the third item: frames to stand there)."""
        start = self.frame
        walker = Walker(
            start,
            tuple(self._px(x, y, stand) for x, y, stand in points),
            speed * self.height,
            size * self.width,
            _COLORS[color % len(_COLORS)],
        )
        self.walkers.append(walker)
        self.frame = start + len(walker.positions()) + gap
        return start

    def idle(self, frames: int) -> None:
        """Nobody enters for ``frames`` frames."""
        self.frame += frames

    def scene(self, *, noise: float = 6.0) -> Scene:
        """The scene built so far (plus one idle second at the end)."""
        return Scene(
            self.width,
            self.height,
            self.fps,
            self.frame + int(self.fps),
            self.line,
            tuple(self.walkers),
            tuple(self.lighting),
            tuple(self.shake),
            noise,
            self.seed,
        )


def demo_scene(
    seconds: float = 120.0, width: int = 640, height: int = 480, fps: float = 15.0, seed: int = 7
) -> Scene:
    """A mixed entrance scene for the demo and the benchmark: a person every 2-4 s.

    Walkers of varied size and speed both ways, some pairs, a person standing on the line,
    a lighting change and some camera shake; the line is left to right across the middle.
    """
    rng = np.random.default_rng(seed)
    b = SceneBuilder(width, height, fps, seed)
    b.idle(int(fps))
    total = int(seconds * fps)
    n = 0
    while b.frame < total - 3 * fps:
        n += 1
        direction = "in" if rng.random() < 0.55 else "out"
        x = float(rng.uniform(0.2, 0.8))
        speed = float(rng.uniform(0.012, 0.03))
        size = float(rng.uniform(0.11, 0.15))
        if n % 9 == 0:
            b.pair(min(max(x, 0.3), 0.7), direction, speed=speed)
        elif n % 13 == 0:
            b.path([(x, -0.12, 0), (x, 0.5, int(2 * fps)), (x, 1.12, 0)], speed=speed)
        else:
            b.walk(x, direction, speed=speed, size=size, color=n, gap=-int(fps * 2))
        b.idle(int(rng.integers(0, int(fps))))
        if n % 17 == 0:
            b.lighting.append((b.frame, float(rng.choice([-0.25, 0.35]))))
        if n % 11 == 0:
            b.shake.append((b.frame, b.frame + int(fps * 2), width / 200))
    return dataclasses.replace(b.scene(), frames=total)
