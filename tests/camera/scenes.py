"""Generated entrance videos for the camera tests (320x240 at 15 fps, line across the middle)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from drivers.camera.synth import Scene, SceneBuilder, TrueCrossing, demo_scene, write_video


def separated() -> Scene:
    """Twelve walkers one at a time, both ways, sizes 0.10-0.16 and speeds 1:3.5."""
    b = SceneBuilder(seed=1)
    b.idle(15)
    rng = np.random.default_rng(1)
    for i in range(12):
        b.walk(
            float(rng.uniform(0.2, 0.8)),
            "in" if i % 2 == 0 else "out",
            speed=float(rng.uniform(0.01, 0.035)),
            size=float(rng.uniform(0.1, 0.16)),
            color=i,
            gap=3,
        )
    return b.scene()


def pairs() -> Scene:
    """Six pairs walking side by side (their blobs touch), both ways."""
    b = SceneBuilder(seed=2)
    b.idle(15)
    for i in range(6):
        b.pair(0.5, "in" if i % 2 == 0 else "out", speed=0.02)
        b.idle(3)
    return b.scene()


def stopping() -> Scene:
    """One stands on the line 2.7 s then goes in; one comes to it and turns back; one goes
    in and comes back out."""
    b = SceneBuilder(seed=3)
    b.idle(15)
    b.path([(0.5, -0.12, 0), (0.5, 0.5, 40), (0.5, 1.12, 0)], gap=5)
    b.path([(0.4, 1.12, 0), (0.42, 0.52, 30), (0.45, 1.12, 0)], gap=5)
    b.path([(0.6, -0.12, 0), (0.6, 0.8, 10), (0.55, -0.12, 0)], gap=5)
    return b.scene()


def lighting() -> Scene:
    """Walkers while a light on one side goes on (+90% at that edge), later off (-40%)."""
    b = SceneBuilder(seed=4)
    b.idle(15)
    for i in range(6):
        if i in (2, 4):
            b.lighting.append((b.frame + 20, 0.9 if i == 2 else -0.4))
        b.walk(0.3 + 0.08 * i, "in" if i % 2 else "out", speed=0.02, gap=2)
    return b.scene()


def shaking() -> Scene:
    """Walkers while the camera shakes by up to 2 px for most of the video."""
    b = SceneBuilder(seed=5)
    b.idle(15)
    b.shake.append((30, 10_000, 2.0))
    for i in range(6):
        b.walk(0.3 + 0.08 * i, "in" if i % 2 else "out", speed=0.02, gap=2)
    return b.scene()


def busy() -> Scene:
    """Forty people in 40 s: ins on the left and outs on the right at the same time, with
    overlapping walkers of mixed size and speed (not every one is counted here)."""
    b = SceneBuilder(seed=3)
    b.idle(15)
    rng = np.random.default_rng(3)
    for i in range(20):
        start = b.frame
        for x_range, direction, colour in (((0.15, 0.45), "in", i), ((0.55, 0.85), "out", i + 3)):
            b.frame = start + (int(rng.integers(0, 10)) if direction == "out" else 0)
            b.walk(
                float(rng.uniform(*x_range)),
                direction,
                speed=float(rng.uniform(0.012, 0.03)),
                size=float(rng.uniform(0.1, 0.15)),
                color=colour,
            )
        b.frame = start + int(rng.integers(15, 40))
    return b.scene()


def mixed() -> Scene:
    """The demo's recipe at 320x240 for 60 s: all of the above, overlapping."""
    return demo_scene(60, 320, 240, seed=11)


SCENES = {
    "separated": separated,
    "pairs": pairs,
    "stopping": stopping,
    "lighting": lighting,
    "shaking": shaking,
    "busy": busy,
    "mixed": mixed,
}


def write(directory: Path, name: str) -> tuple[Path, Scene, list[TrueCrossing]]:
    """Write one named scene as MJPG .avi; return its path, scene and truth."""
    scene = SCENES[name]()
    path = directory / f"{name}.avi"
    truth = write_video(path, scene)
    return path, scene, truth
