"""``storelink-agent camera replay|snapshot``.

``replay`` is the evaluation contract (keep it stable): one CSV row per counted crossing,
``t`` (seconds from the start of the video), ``x``, ``y`` (where it crossed, in the video's
pixels), ``direction`` (``in`` towards the side where (X2-X1)(y-Y1) - (Y2-Y1)(x-X1) > 0).
``snapshot`` writes the one picture storelink ever writes: the configured camera's current
frame with the line drawn and moving people blurred, for placing the line.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import cv2

from agent.camera.replay import replay_video, to_csv
from agent.config import ConfigError, load_config
from drivers.camera.capture import CameraError, Frame, open_capture
from drivers.camera.counting import CountingSettings, Line
from drivers.camera.snapshot import setup_snapshot, small_gray


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the camera commands to the agent's command line."""
    camera = sub.add_parser("camera", help="entrance camera footfall")
    cmds = camera.add_subparsers(dest="camera_command", required=True)

    rp = cmds.add_parser("replay", help="crossings counted in a video file, as CSV")
    rp.add_argument("--video", type=Path, required=True, help="video file")
    rp.add_argument("--line", required=True, help="X1,Y1,X2,Y2 in the video's pixels")
    rp.add_argument("--format", choices=("csv",), default="csv")
    rp.add_argument("--process-width", type=int, default=320, help="width counted at")
    rp.set_defaults(func=cmd_replay)

    sp = cmds.add_parser("snapshot", help="the camera's picture with the line, people blurred")
    sp.add_argument("--config", type=Path, required=True, help="agent config file")
    sp.add_argument("--out", type=Path, required=True, help="PNG file to write")
    sp.add_argument("--seconds", type=float, default=2.0, help="burst used to find movement")
    sp.set_defaults(func=cmd_snapshot)


def _fail(message: str) -> int:
    print(f"camera: {message}", file=sys.stderr)
    return 2


def parse_line(text: str) -> Line:
    """``X1,Y1,X2,Y2`` → four numbers; ValueError naming what is wrong."""
    parts = text.split(",")
    if len(parts) != 4:
        raise ValueError(f"--line: expected X1,Y1,X2,Y2, got {text!r}")
    try:
        x1, y1, x2, y2 = (float(p) for p in parts)
    except ValueError as err:
        raise ValueError(f"--line: not numbers: {text!r}") from err
    if (x1, y1) == (x2, y2):
        raise ValueError("--line: the two points are the same")
    return x1, y1, x2, y2


def cmd_replay(args: argparse.Namespace) -> int:
    """Print the crossings counted in one video as CSV."""
    try:
        line = parse_line(args.line)
        settings = CountingSettings(process_width=args.process_width)
        crossings = replay_video(args.video, line, settings)
    except (ValueError, CameraError) as err:
        return _fail(str(err))
    sys.stdout.write(to_csv(crossings))
    return 0


def grab_burst(source: int | str, seconds: float, max_frames: int = 60) -> list[Frame]:
    """Frames of ``source`` over ``seconds``, at most ``max_frames``, evenly kept.

    All but the last are small grey copies (all the motion mask needs); the last is the
    full-size colour frame the snapshot shows. Memory stays small at any resolution.
    """
    cap = open_capture(source)
    kept: list[Frame] = []
    last: Frame | None = None
    stride, seen = 1, 0
    try:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline and seen < 4 * max_frames:
            ok, frame = cap.read()
            if not ok or frame is None:
                break
            last = frame
            if seen % stride == 0:
                kept.append(small_gray(frame))
                if len(kept) >= 2 * max_frames:  # thin out: keep every other, then sample less
                    kept, stride = kept[::2], stride * 2
            seen += 1
    finally:
        cap.release()
    if last is None:
        raise CameraError("the camera delivered no frame")
    step = max(1, len(kept) // max_frames)
    return [*kept[::step][-(max_frames - 1) :], last] if max_frames > 1 else [last]


def cmd_snapshot(args: argparse.Namespace) -> int:
    """Write the setup snapshot PNG of the configured camera."""
    try:
        config = load_config(args.config)
    except ConfigError as err:
        return _fail(f"configuration error:\n{err}")
    camera = config.camera
    if camera.source is None or camera.line is None:
        return _fail(f"{args.config}: no [camera] source configured")
    try:
        frames = grab_burst(camera.source, args.seconds)
    except CameraError as err:
        return _fail(str(err))
    image = setup_snapshot(frames, camera.line)
    ok, png = cv2.imencode(".png", image)
    if not ok:
        return _fail("OpenCV could not encode the PNG")
    try:
        args.out.write_bytes(png.tobytes())
    except OSError as err:
        return _fail(f"cannot write {args.out}: {err}")
    print(f"wrote {args.out} ({image.shape[1]}x{image.shape[0]}); moving regions are blurred")
    return 0
