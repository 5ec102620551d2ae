"""Camera footfall: frames/s of the counting pipeline at 640x480 on one core.

Compared, in the same run, with bare OpenCV decoding of the same file (a
``VideoCapture.read`` loop): the pipeline decodes too, then downscales, subtracts the
background, finds blobs, tracks and counts. One core: the process is pinned to one CPU,
OpenCV and the numeric libraries are told to use one thread. The video is generated
(``drivers.camera.synth.demo_scene``: walkers, pairs, someone standing on the line, a
lighting change, camera shake), MJPG in an .avi.

    .venv/bin/python bench/footfall_fps.py [--seconds 30] [--repeats 3]

Last line: {"metric": "footfall_fps_ratio", "value": ..., "target": ">=0.5", "fps": ...}
"""

from __future__ import annotations

import os

# Before numpy and OpenCV load: their thread pools size themselves at import.
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import json  # noqa: E402
import statistics  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import cv2  # noqa: E402

from drivers.camera.counting import FootfallCounter  # noqa: E402
from drivers.camera.synth import demo_scene, write_video  # noqa: E402


def decode_run(path: Path) -> float:
    """Frames/s of a bare VideoCapture.read loop over the file."""
    cap = cv2.VideoCapture(str(path))
    frames = 0
    started = time.perf_counter()
    while True:
        ok, _ = cap.read()
        if not ok:
            break
        frames += 1
    elapsed = time.perf_counter() - started
    cap.release()
    return frames / elapsed


def pipeline_run(path: Path, line: tuple[float, float, float, float]) -> tuple[float, int]:
    """Frames/s of decode + counting (default settings); also the crossings counted."""
    cap = cv2.VideoCapture(str(path))
    fps = cap.get(cv2.CAP_PROP_FPS)
    size = (int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)))
    counter = FootfallCounter(line, size, fps)
    frames = crossings = 0
    started = time.perf_counter()
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        crossings += len(counter.process(frame, frames / fps))
        frames += 1
    elapsed = time.perf_counter() - started
    cap.release()
    return frames / elapsed, crossings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=30.0, help="length of the video")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    cv2.setNumThreads(1)
    scene = demo_scene(args.seconds, 640, 480)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp, "entrance.avi")
        truth = write_video(path, scene)
        decode, pipeline = [], []
        counted = 0
        for _ in range(args.repeats):
            decode.append(decode_run(path))
            fps, counted = pipeline_run(path, scene.line)
            pipeline.append(fps)
    decode_fps, pipeline_fps = statistics.median(decode), statistics.median(pipeline)
    print(
        f"video: {scene.frames} frames 640x480 MJPG, {len(truth)} true crossings, {counted} counted"
    )
    for label, value, runs in (
        ("bare OpenCV decode", decode_fps, decode),
        ("footfall pipeline", pipeline_fps, pipeline),
    ):
        print(f"{label:20} {value:8.1f} frames/s  (runs: {[round(x) for x in runs]})")
    ratio = pipeline_fps / decode_fps
    print(
        json.dumps(
            {
                "metric": "footfall_fps_ratio",
                "value": round(ratio, 3),
                "target": ">=0.5",
                "fps": round(pipeline_fps, 1),
            }
        )
    )


if __name__ == "__main__":
    main()
