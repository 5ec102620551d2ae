"""Try-on sessions from tag reads: pure logic on plain data, no I/O and no clock of its own.

All times are microseconds on one timeline (the agent's clock; :class:`ReaderClock` maps
each reader's timestamps onto it). Time moves forward with the reads and with :meth:`tick`,
so a visit ends even when nothing is read any more.

The rules, per garment (EPC):

* **Room.** The reads of the last ``window`` are grouped by room; the room with the highest
  mean RSSI there (ties: more reads) is where the garment is. A neighbouring room's antenna
  reads the same garment, weaker: over a window it loses. A room change counts only once
  the new room has led for a whole ``window`` (a shopper's body briefly shadowing the right
  antenna does not move the garment); the old visit then ends at its last read as leader.
* **Hysteresis.** A visit starts at the garment's first read in a room and lasts while it is
  read; once unseen for ``end_after`` it has left, and the visit ended at its last read.
* **Minimum dwell.** A visit shorter than ``min_dwell`` is someone carrying the garment past
  the rooms: no session.
* **Maximum duration.** A visit reaching ``max_duration`` is a garment left behind: its
  session closes then (``max_duration``), and the garment stays marked as left behind until
  it leaves or moves to another room, so one visit gives one session, not one per period.
* **Readers that drop.** While a reader is down, absence of its rooms' garments is not
  counted, and after it returns absence counts from its return; cross-reads by other readers
  meanwhile do not move its garments: a reader restarting mid-session neither cuts that
  session in two nor ends it early.
* **Shutdown.** :meth:`TryOnTracker.close_all` closes visits that already passed the minimum
  dwell (``shutdown``, ended at their last read); shorter ones cannot be told from a garment
  carried past, so they are dropped.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Literal

from drivers.rfid.reads import TagRead

ClosedBy = Literal["left", "max_duration", "shutdown"]

US = 1_000_000
# How often (on the timeline) reads trigger a sweep for ended visits; ticks always sweep.
SWEEP_EVERY_US = 250_000
# A reader's timestamps lagging the agent's clock by this much more than before mean its
# clock jumped (a reboot resets it, NTP steps it): the mapping is re-anchored.
CLOCK_JUMP_US = 5 * US


@dataclass(frozen=True, slots=True)
class SessionSettings:
    """Session tuning, in microseconds."""

    window_us: int
    min_dwell_us: int
    end_after_us: int
    max_duration_us: int

    @classmethod
    def from_seconds(
        cls, window_s: float, min_dwell_s: float, end_after_s: float, max_duration_s: float
    ) -> SessionSettings:
        """Settings from the config's seconds."""
        return cls(
            round(window_s * US),
            round(min_dwell_s * US),
            round(end_after_s * US),
            round(max_duration_s * US),
        )


@dataclass(frozen=True, slots=True)
class TryOn:
    """One completed try-on session."""

    epc: bytes
    reader: str
    room: str
    started_us: int
    ended_us: int
    closed_by: ClosedBy

    @property
    def dwell_us(self) -> int:
        """How long the garment was in the room."""
        return self.ended_us - self.started_us


class ReaderClock:
    """Maps one reader's timestamps onto the agent's clock.

    Reader timestamps order reads and measure durations well (one clock, microseconds), but
    a reader's idea of the wall time may be off by hours or reset on reboot. So each reader's
    times are shifted by an offset: the smallest lag (arrival on the agent minus the reader's
    timestamp) seen so far, which tracks network delay without letting one slow report stretch
    a session. A lag larger than before by more than ``CLOCK_JUMP_US`` means the reader's
    clock stepped back: the offset is re-anchored. :meth:`reset` on every reconnection.
    """

    __slots__ = ("_offset",)

    def __init__(self) -> None:
        self._offset: int | None = None

    def reset(self) -> None:
        """Forget the offset (the reader reconnected; its clock may have restarted)."""
        self._offset = None

    def offset_us(self, latest_seen_us: int, arrival_us: int) -> int:
        """The offset to add to this reader's timestamps, given a report's latest read."""
        lag = arrival_us - latest_seen_us
        if self._offset is None or lag < self._offset or lag > self._offset + CLOCK_JUMP_US:
            self._offset = lag
        return self._offset


class _Garment:
    """One garment being tracked: its window of reads and its current visit."""

    __slots__ = (
        "challenger",
        "challenger_since",
        "last",
        "last_here",
        "left_behind",
        "room",
        "start",
        "sums",
        "window",
    )

    def __init__(self, room: str, t: int) -> None:
        """A garment first read at ``t`` in ``room``."""
        self.window: deque[tuple[int, str, float]] = deque()
        self.sums: dict[str, list[float]] = {}  # room -> [rssi sum, reads] over the window
        self.room = room
        self.start = t
        self.last = t  # last read of the garment anywhere (presence)
        self.last_here = t  # last read while this visit's room led
        self.challenger: str | None = None
        self.challenger_since = 0
        self.left_behind = False

    def leader(self) -> str:
        best_room, best = "", (-1e9, 0.0)
        for room, (total, count) in self.sums.items():
            score = (total / count, count)
            if score > best:
                best_room, best = room, score
        return best_room


class TryOnTracker:
    """Turns reads into completed :class:`TryOn` sessions; see the module docstring."""

    def __init__(self, rooms: Mapping[tuple[str, int], str], settings: SessionSettings) -> None:
        """``rooms``: (reader name, antenna) → room name; other antennas are ignored."""
        self._rooms = dict(rooms)
        self._reader_of = {room: reader for (reader, _), room in rooms.items()}
        self._s = settings
        self._garments: dict[bytes, _Garment] = {}
        self._down: set[str] = set()
        self._up_since: dict[str, int] = {}
        self._now = 0
        self._next_sweep = 0

    @property
    def garments(self) -> int:
        """Garments being tracked (in a room, or seen lately)."""
        return len(self._garments)

    def reader_down(self, reader: str) -> None:
        """The reader dropped: stop counting absence for its rooms' garments."""
        self._down.add(reader)

    def reader_up(self, reader: str, now_us: int) -> None:
        """The reader is back: absence of its garments counts from now."""
        self._down.discard(reader)
        self._up_since[reader] = max(now_us, self._now)

    def observe(self, reader: str, reads: Iterable[TagRead], offset_us: int = 0) -> list[TryOn]:
        """Feed one report's reads of ``reader`` (timestamps + ``offset_us`` = timeline)."""
        rooms = self._rooms
        window = self._s.window_us
        done: list[TryOn] = []
        for read in reads:
            room = rooms.get((reader, read.antenna))
            if room is None:
                continue
            t = read.seen_at_us + offset_us
            if t > self._now:
                self._now = t
            garment = self._garments.get(read.epc)
            if garment is None:
                garment = self._garments[read.epc] = _Garment(room, t)
            self._slide(garment, t, room, read.rssi, window)
            self._place(read.epc, garment, t, done)
        if self._now >= self._next_sweep:
            self._sweep(done)
        return done

    def tick(self, now_us: int) -> list[TryOn]:
        """Advance the timeline to ``now_us`` (if later) and close visits that ended."""
        self._now = max(self._now, now_us)
        done: list[TryOn] = []
        self._sweep(done)
        return done

    def close_all(self, now_us: int) -> list[TryOn]:
        """Shutdown: close visits past the minimum dwell; forget everything."""
        self._now = max(self._now, now_us)
        done: list[TryOn] = []
        self._sweep(done)
        for epc, g in self._garments.items():
            if not g.left_behind:
                self._finish(epc, g, g.room, g.start, g.last, "shutdown", done)
        self._garments.clear()
        return done

    @staticmethod
    def _slide(g: _Garment, t: int, room: str, rssi: float, window: int) -> None:
        g.window.append((t, room, rssi))
        entry = g.sums.get(room)
        if entry is None:
            g.sums[room] = [rssi, 1.0]
        else:
            entry[0] += rssi
            entry[1] += 1.0
        cutoff = t - window
        reads = g.window
        while reads[0][0] < cutoff:
            _, old_room, old_rssi = reads.popleft()
            entry = g.sums[old_room]
            if entry[1] <= 1.0:
                del g.sums[old_room]
            else:
                entry[0] -= old_rssi
                entry[1] -= 1.0

    def _place(self, epc: bytes, g: _Garment, t: int, done: list[TryOn]) -> None:
        leader = g.leader()
        g.last = max(g.last, t)
        if leader == g.room:
            g.challenger = None
            g.last_here = max(g.last_here, t)
            return
        if self._reader_of[g.room] in self._down:
            # Only other readers' cross-reads come in: no evidence the garment moved.
            return
        if g.challenger != leader:
            g.challenger, g.challenger_since = leader, t
            return
        if t - g.challenger_since < self._s.window_us:
            return
        # The garment moved to another room.
        if not g.left_behind:
            self._finish(epc, g, g.room, g.start, g.last_here, "left", done)
        self._begin(g, leader, g.challenger_since)
        g.last = g.last_here = t

    @staticmethod
    def _begin(g: _Garment, room: str, t: int) -> None:
        g.room = room
        g.start = g.last = g.last_here = t
        g.challenger = None
        g.left_behind = False

    def _finish(
        self,
        epc: bytes,
        g: _Garment,
        room: str,
        start: int,
        end: int,
        closed_by: ClosedBy,
        done: list[TryOn],
    ) -> None:
        if closed_by == "max_duration" or end - start >= self._s.min_dwell_us:
            done.append(TryOn(epc, self._reader_of[room], room, start, end, closed_by))

    def _sweep(self, done: list[TryOn]) -> None:
        now = self._now
        self._next_sweep = now + SWEEP_EVERY_US
        s = self._s
        gone: list[bytes] = []
        for epc, g in self._garments.items():
            room = g.room
            reader = self._reader_of[room]
            if reader in self._down:
                continue
            absent_since = max(g.last, self._up_since.get(reader, 0))
            if now - absent_since > s.end_after_us:
                if not g.left_behind:
                    self._finish(epc, g, room, g.start, g.last, "left", done)
                gone.append(epc)
            elif not g.left_behind and now - g.start >= s.max_duration_us:
                end = g.start + s.max_duration_us
                self._finish(epc, g, room, g.start, end, "max_duration", done)
                g.left_behind = True
        for epc in gone:
            del self._garments[epc]
