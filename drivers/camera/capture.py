"""Frames from a camera (device index, RTSP/HTTP URL) or a video file, via OpenCV.

Errors (everything OpenCV reports is translated into one of these)::

    CameraError
    ├── SourceUnavailable   the device or stream cannot be opened or stopped delivering
    └── VideoUnreadable     a file that is not a readable video (missing, corrupt, empty)

:class:`FrameGrabber` reads on its own thread, so callers on an event loop never block: it
opens the source, hands each frame (at most ``fps`` per second) to a callback on that thread,
reopens a lost stream with capped exponential backoff, and reports availability changes
through a second callback. Frames live only in memory.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
from cv2.typing import MatLike

log = logging.getLogger(__name__)

# What OpenCV returns and takes (its stubs type frames as MatLike, not as uint8 arrays).
Frame = MatLike
Source = int | str

OPEN_TIMEOUT_MS = 5000
READ_TIMEOUT_MS = 5000


class CameraError(Exception):
    """Base class of every camera failure."""


class SourceUnavailable(CameraError):
    """The camera or stream cannot be opened, or stopped delivering frames."""


class VideoUnreadable(CameraError):
    """A video file that cannot be decoded: missing, not a video, corrupt or empty."""


def is_stream(source: Source) -> bool:
    """Whether ``source`` is a network stream (reopened when lost) rather than a file."""
    return isinstance(source, str) and source.lower().startswith(
        ("rtsp://", "rtsps://", "http://", "https://")
    )


def describe_source(source: Source) -> str:
    """The source for logs: a device number, a URL without credentials, or a file name."""
    if isinstance(source, int):
        return f"device {source}"
    if is_stream(source):
        scheme, _, rest = source.partition("://")
        host = rest.rsplit("@", 1)[-1].split("/", 1)[0]
        return f"{scheme}://{host}/..."
    return Path(source).name


def open_capture(source: Source) -> cv2.VideoCapture:
    """Open ``source`` with FFmpeg (streams, files) or the platform backend (devices)."""
    if isinstance(source, int):
        cap = cv2.VideoCapture(source)
    else:
        if not is_stream(source) and not os.path.isfile(source):
            raise VideoUnreadable(f"video file {source} does not exist")
        params = [
            cv2.CAP_PROP_OPEN_TIMEOUT_MSEC,
            OPEN_TIMEOUT_MS,
            cv2.CAP_PROP_READ_TIMEOUT_MSEC,
            READ_TIMEOUT_MS,
        ]
        cap = cv2.VideoCapture(source, cv2.CAP_FFMPEG, params)
    if not cap.isOpened():
        cap.release()
        if isinstance(source, str) and not is_stream(source):
            raise VideoUnreadable(f"{source} is not a video OpenCV can read")
        raise SourceUnavailable(f"cannot open {describe_source(source)}")
    return cap


def file_fps(cap: cv2.VideoCapture) -> float:
    """A video file's frame rate; 25 (a common camera rate) when its container has none."""
    fps = cap.get(cv2.CAP_PROP_FPS)
    return fps if 0 < fps < 1000 else 25.0


@dataclass(frozen=True, slots=True)
class VideoInfo:
    """What a video file says about itself."""

    width: int
    height: int
    fps: float


def read_video(path: Path) -> tuple[VideoInfo, Iterator[tuple[float, Frame]]]:
    """Open a video file; return its size and rate, and its frames with times in seconds.

    Raises :class:`VideoUnreadable` before returning when the file has no decodable frame.
    A file that breaks part-way ends early (the frames before the damage are kept).
    """
    cap = open_capture(str(path))
    ok, first = cap.read()
    if not ok or first is None or first.size == 0:
        cap.release()
        raise VideoUnreadable(f"{path} has no decodable frame (corrupt or empty video)")
    fps = file_fps(cap)
    info = VideoInfo(first.shape[1], first.shape[0], fps)

    def frames() -> Iterator[tuple[float, Frame]]:
        try:
            frame: Frame | None = first
            index = 0
            while frame is not None:
                yield index / fps, frame
                index += 1
                ok, frame = cap.read()
                if not ok or frame is None or frame.shape != first.shape:
                    break
        finally:
            cap.release()

    return info, frames()


FrameCallback = Callable[[Frame, float], None]
StateCallback = Callable[[bool, str], None]


class FrameGrabber:
    """Reads ``source`` on a worker thread and hands frames to ``on_frame`` (on that thread).

    ``on_frame(frame, t)`` gets at most ``fps`` frames per second, ``t`` in seconds since the
    grabber started (monotonic). ``on_state(available, detail)`` is called on changes only.
    Files are played at their own frame rate when ``pace`` (like a camera) and restarted at
    the end when ``loop``; ``on_restart`` is called whenever the picture may have jumped.
    """

    def __init__(
        self,
        source: Source,
        on_frame: FrameCallback,
        on_state: StateCallback,
        *,
        fps: float = 10.0,
        pace: bool = True,
        loop: bool = False,
        on_restart: Callable[[], None] | None = None,
        backoff_start_s: float = 1.0,
        backoff_cap_s: float = 60.0,
    ) -> None:
        self._source = source
        self._on_frame = on_frame
        self._on_state = on_state
        self._on_restart = on_restart or (lambda: None)
        self._min_interval = 1.0 / fps
        self._pace = pace
        self._loop = loop
        self._backoff_start = backoff_start_s
        self._backoff_cap = backoff_cap_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="camera-capture", daemon=True)
        self._available: bool | None = None

    def start(self) -> None:
        """Start reading."""
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop reading and wait for the thread (blocking: call it off the event loop)."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def _state(self, available: bool, detail: str) -> None:
        if available != self._available:
            self._available = available
            self._on_state(available, detail)

    def _run(self) -> None:
        started = time.monotonic()
        backoff = self._backoff_start
        is_file = not isinstance(self._source, int) and not is_stream(self._source)
        while not self._stop.is_set():
            try:
                cap = open_capture(self._source)
            except CameraError as err:
                self._state(False, str(err))
                self._stop.wait(backoff)
                backoff = min(backoff * 2, self._backoff_cap)
                continue
            self._on_restart()
            try:
                delivered = self._read_all(cap, started, is_file)
            except Exception as err:
                # A frame that breaks decoding or counting must not end the thread silently
                # (the status would say "available" while nothing is counted): report the
                # source unavailable and reopen it after the backoff, like a lost stream. A
                # file that does not loop ends here: replayed, its crossings would count twice.
                log.debug("%s: frame handling failed", describe_source(self._source), exc_info=err)
                # One short line for logs and device_status (cv2.error spans several).
                reason = " ".join(str(err).split())[:200]
                self._state(False, f"frame handling failed: {type(err).__name__}: {reason}")
                if is_file and not self._loop:
                    return
                delivered = 0
            finally:
                cap.release()
            if delivered:
                backoff = self._backoff_start
            if is_file and delivered and not self._loop:
                self._state(False, "video file ended")
                return
            if not is_file:
                self._state(False, f"{describe_source(self._source)} stopped delivering frames")
            if not delivered:
                self._stop.wait(backoff)
                backoff = min(backoff * 2, self._backoff_cap)

    def _read_all(self, cap: cv2.VideoCapture, started: float, is_file: bool) -> int:
        """Deliver frames until the source ends, fails or we are stopped; return how many."""
        file_interval = 1.0 / file_fps(cap) if is_file else 0.0
        opened = time.monotonic()
        last = -1e9
        delivered = 0
        index = 0
        while not self._stop.is_set():
            ok, frame = cap.read()
            if not ok or frame is None or frame.size == 0:
                return delivered
            if is_file and self._pace:
                # Played like a camera: frame i is due i/fps after the file was opened.
                due = opened + index * file_interval
                wait = due - time.monotonic()
                if wait > 0 and self._stop.wait(wait):
                    return delivered
            index += 1
            # Unpaced files run as fast as possible, timed in the file's own clock.
            fast = is_file and not self._pace
            t = index * file_interval if fast else time.monotonic() - started
            if t - last < self._min_interval * 0.999:
                continue
            last = t
            if not self._available:
                self._state(True, f"reading {describe_source(self._source)}")
            delivered += 1
            self._on_frame(frame, t)
        return delivered
