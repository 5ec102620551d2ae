"""Scripted, seeded fitting-room read streams with known truth.

A scenario is a corridor of fitting rooms, one antenna per room, rooms numbered along the
corridor and spread over one or more readers (``reader-1`` antennas 1..N, then ``reader-2``...).
Shoppers carry 1-4 garments into a free room, stay 1-10 minutes and leave; each garment is read
by its room's antenna (strong, about -45 dBm) and, less often and about 15 dB weaker, by the
neighbouring rooms' antennas (cross-reads through the partition). Walking to and from the room
they pass the rooms before it (short, weak reads). A few garments are left behind: they keep
being read in the room until staff collect them 20-90 minutes later. People browsing past the
rooms cause short weak reads at several antennas, always under a minute. Readers can be
restarted mid-scenario: the reader reads nothing while it is down.

Truth: ``scenario.truth`` lists every try-on (``TrueTryOn``: garment, room's reader/antenna,
when the shopper entered and left, and whether the garment stayed behind). For a scenario with
a duration it is complete once the scenario is built; for an endless one (``duration_s=None``)
it grows as reads are generated.

``iter_reads()`` yields every read of every reader in time order without any network, so
session logic can be scored on thousands of sessions quickly; ``reads_for(reader)`` is what the
simulator plays. RSSI is whole dBm and ``count`` is 1, as the simulator reports them, so the two
paths carry the same reads. Timestamps are scenario time: ``start_us`` plus seconds into the
scenario (see ``simulator`` for how that maps to the wall clock).
"""

from __future__ import annotations

import heapq
import itertools
import math
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace

from drivers.rfid.reads import TagRead
from drivers.rfid.sgtin import encode_sgtin96, gtin_check_digit

DEFAULT_START_US = 1_767_603_600_000_000  # 2026-01-05 09:00:00 UTC
COMPANY_PREFIX = "6901234"  # 7-digit GS1 company prefix of the simulated brand
_US = 1_000_000


@dataclass(frozen=True, slots=True)
class TrueTryOn:
    """A garment tried on in a room: the room's antenna, from entering to leaving."""

    epc: bytes
    reader: str
    antenna: int
    start_us: int
    end_us: int
    left_behind: bool


@dataclass(frozen=True, slots=True)
class Room:
    """A fitting room: the reader and antenna that cover it."""

    reader: str
    antenna: int


@dataclass(frozen=True, slots=True)
class Reboot:
    """A reader restart: down from ``at_s`` (scenario seconds) for ``down_s`` seconds."""

    reader: str
    at_s: float
    down_s: float


@dataclass(frozen=True, slots=True)
class Presence:
    """A tag within one antenna's field over [start_us, end_us)."""

    start_us: int
    end_us: int
    epc: bytes
    reader: str
    antenna: int
    rssi_dbm: float
    read_probability: float


def catalogue_gtins(count: int = 40) -> tuple[str, ...]:
    """GTIN-14s of the simulated brand's garments (company prefix ``COMPANY_PREFIX``)."""
    gtins = []
    for i in range(count):
        body = "0" + COMPANY_PREFIX + f"{10000 + i * 37:05d}"
        gtins.append(body + str(gtin_check_digit(body)))
    return tuple(gtins)


class Scenario:
    """A read stream with its truth; build one with a factory from ``SCENARIOS``."""

    def __init__(
        self,
        name: str,
        rooms: tuple[Room, ...],
        plan: Callable[[Scenario], Iterator[Presence]],
        *,
        seed: int,
        start_us: int,
        duration_s: float | None,
        read_interval_s: float,
        rssi_noise_db: float = 2.0,
        reboots: tuple[Reboot, ...] = (),
        stream: Callable[[], Iterator[TagRead]] | None = None,
    ) -> None:
        self.name = name
        self.rooms = rooms
        self.readers = tuple(dict.fromkeys(r.reader for r in rooms))
        self.seed = seed
        self.start_us = start_us
        self.duration_s = duration_s
        self.end_us = None if duration_s is None else start_us + int(duration_s * _US)
        self.read_interval_us = int(read_interval_s * _US)
        self.rssi_noise_db = rssi_noise_db
        self.reboots = reboots
        self.truth: list[TrueTryOn] = []
        self._plan_fn = plan
        self._stream = stream
        self._catalogue = catalogue_gtins()
        self._serial = itertools.count(1)
        self._plan_cache: list[Presence] | None = None
        if duration_s is not None:
            self._plan_cache = list(self._plan_fn(self))  # fills self.truth

    def reboots_for(self, reader: str) -> list[tuple[float, float]]:
        """(at scenario seconds, down seconds) of this reader's restarts, for the simulator."""
        return [(r.at_s, r.down_s) for r in self.reboots if r.reader == reader]

    def new_garment(self, rng: random.Random) -> bytes:
        """The EPC of a garment not seen before in this scenario."""
        gtin = rng.choice(self._catalogue)
        return encode_sgtin96(gtin, next(self._serial), company_prefix_length=len(COMPANY_PREFIX))

    def neighbours(self, index: int) -> list[Room]:
        """The rooms either side of room ``index`` along the corridor."""
        return [self.rooms[j] for j in (index - 1, index + 1) if 0 <= j < len(self.rooms)]

    def _presences(self) -> Iterator[Presence]:
        if self._plan_cache is not None:
            return iter(self._plan_cache)
        # an endless plan is replayed from the start: same seed, same garments, fresh truth
        self.truth.clear()
        self._serial = itertools.count(1)
        return self._plan_fn(self)

    def iter_reads(self) -> Iterator[TagRead]:
        """Every read of every reader, in time order (endless if the scenario is)."""
        if self._stream is not None:
            return self._stream()
        return self._reads_from_presences()

    def _reads_from_presences(self) -> Iterator[TagRead]:
        rng = random.Random(self.seed * 7919 + 1)  # noqa: S311 - simulation, not security
        interval = self.read_interval_us
        down = [
            (
                r.reader,
                self.start_us + int(r.at_s * _US),
                self.start_us + int((r.at_s + r.down_s) * _US),
            )
            for r in self.reboots
        ]
        end_us = self.end_us
        active: list[tuple[int, int, Presence]] = []
        seq = itertools.count()
        presences = self._presences()
        upcoming = next(presences, None)
        while True:
            # admit every presence that starts before the next pending read
            while upcoming is not None and (not active or upcoming.start_us <= active[0][0]):
                first = upcoming.start_us + rng.randrange(max(1, interval))
                heapq.heappush(active, (first, next(seq), upcoming))
                upcoming = next(presences, None)
            if not active:
                return
            t, _, p = heapq.heappop(active)
            if end_us is not None and t >= end_us:
                if upcoming is None:
                    # every later read is past the end too
                    return
                continue
            if t < p.end_us:
                nxt = t + interval + rng.randrange(-interval // 5, interval // 5 + 1)
                heapq.heappush(active, (max(nxt, t + 1), next(seq), p))
                if rng.random() < p.read_probability and not any(
                    reader == p.reader and lo <= t < hi for reader, lo, hi in down
                ):
                    yield TagRead(
                        reader=p.reader,
                        antenna=p.antenna,
                        epc=p.epc,
                        rssi=float(round(p.rssi_dbm + rng.gauss(0.0, self.rssi_noise_db))),
                        seen_at_us=t,
                        count=1,
                    )

    def reads_for(self, reader: str) -> Iterator[TagRead]:
        """One reader's reads, in time order."""
        return (r for r in self.iter_reads() if r.reader == reader)


def _corridor(rooms: int, rooms_per_reader: int) -> tuple[Room, ...]:
    if rooms < 1 or rooms_per_reader < 1:
        raise ValueError("a scenario needs at least one room and one antenna per reader")
    return tuple(
        Room(f"reader-{i // rooms_per_reader + 1}", i % rooms_per_reader + 1) for i in range(rooms)
    )


@dataclass(slots=True)
class _Ordered:
    """Releases presences in start order from generators that may run slightly ahead."""

    heap: list[tuple[int, int, Presence]] = field(default_factory=list)
    seq: itertools.count[int] = field(default_factory=itertools.count)

    def add(self, p: Presence) -> None:
        heapq.heappush(self.heap, (p.start_us, next(self.seq), p))

    def release(self, before_us: int | None) -> Iterator[Presence]:
        while self.heap and (before_us is None or self.heap[0][0] < before_us):
            yield heapq.heappop(self.heap)[2]


def _fitting_room_plan(
    *,
    mean_idle_s: float,
    browse_every_s: float,
    left_behind_p: float,
    cross_read_p: float,
    cross_read_db: float,
) -> Callable[[Scenario], Iterator[Presence]]:
    walk_s = 4.0  # seconds to walk past one room
    lead_us = int(120 * _US)  # no presence starts more than this before its event (walk-ins)

    def plan(sc: Scenario) -> Iterator[Presence]:
        rng = random.Random(sc.seed)  # noqa: S311 - simulation, not security
        start = sc.start_us
        end = sc.end_us
        out = _Ordered()
        # next event time per room (shopper arrival) and for the corridor (browser)
        events: list[tuple[int, int, int]] = [
            (start + int(rng.expovariate(1 / mean_idle_s) * _US), i, i)
            for i in range(len(sc.rooms))
        ]
        events.append((start + int(rng.expovariate(1 / browse_every_s) * _US), -1, -1))
        heapq.heapify(events)

        def clip(p: Presence) -> None:
            if end is not None and p.start_us >= end:
                return
            if end is not None and p.end_us > end:
                p = replace(p, end_us=end)
            if p.end_us > p.start_us:
                out.add(p)

        def walk_by(epc: bytes, index: int, at_us: int, stay_s: float, rssi: float) -> None:
            room = sc.rooms[index]
            clip(
                Presence(
                    at_us, at_us + int(stay_s * _US), epc, room.reader, room.antenna, rssi, 0.6
                )
            )

        while True:
            t, _, who = heapq.heappop(events)
            yield from out.release(t - lead_us)
            if end is not None and t >= end:
                break
            if who < 0:  # someone browsing past 2-4 rooms with 1-3 garments
                first = rng.randrange(len(sc.rooms))
                n_rooms = rng.randint(2, 4)
                garments = [sc.new_garment(rng) for _ in range(rng.randint(1, 3))]
                for k in range(n_rooms):
                    index = first + k
                    if index >= len(sc.rooms):
                        break
                    at = t + int(k * walk_s * _US)
                    for epc in garments:
                        walk_by(epc, index, at, rng.uniform(3.0, 15.0), rng.uniform(-70, -62))
                nxt = t + int(rng.expovariate(1 / browse_every_s) * _US)
                heapq.heappush(events, (nxt, -1, -1))
                continue
            # a shopper arrives at room `who`
            room = sc.rooms[who]
            dwell_s = rng.uniform(60.0, 600.0)
            leave = t + int(dwell_s * _US)
            if end is not None and leave + int(who * walk_s * _US) >= end:
                heapq.heappush(events, (end, who, who))
                continue
            n = rng.choices((1, 2, 3, 4), weights=(35, 30, 20, 15))[0]
            for _ in range(n):
                epc = sc.new_garment(rng)
                left = rng.random() < left_behind_p
                until = leave + int(rng.uniform(20 * 60, 90 * 60) * _US) if left else leave
                sc.truth.append(TrueTryOn(epc, room.reader, room.antenna, t, leave, left))
                base = -45.0 + rng.uniform(-4.0, 4.0)
                clip(Presence(t, until, epc, room.reader, room.antenna, base, 0.9))
                for nb in sc.neighbours(who):
                    clip(
                        Presence(
                            t, until, epc, nb.reader, nb.antenna, base - cross_read_db, cross_read_p
                        )
                    )
                # walking past the rooms before this one, on the way in and out
                for j in range(who):
                    steps_away = who - j
                    rssi = rng.uniform(-70, -62)
                    walk_by(epc, j, t - int(steps_away * walk_s * _US), 3.0, rssi)
                    if not left:
                        walk_by(epc, j, leave + int((steps_away - 1) * walk_s * _US), 3.0, rssi)
            idle = rng.uniform(10.0, 120.0) + rng.expovariate(1 / mean_idle_s)
            heapq.heappush(events, (leave + int(idle * _US), who, who))
        yield from out.release(None)

    return plan


def fitting_rooms(
    seed: int = 1,
    start_us: int = DEFAULT_START_US,
    duration_s: float | None = None,
    *,
    rooms: int = 4,
    rooms_per_reader: int = 4,
    read_interval_s: float = 1.0,
    mean_idle_s: float = 180.0,
    browse_every_s: float = 60.0,
    left_behind_p: float = 0.04,
    cross_read_p: float = 0.35,
    cross_read_db: float = 15.0,
    reboots: tuple[Reboot, ...] = (),
) -> Scenario:
    """A realistic mix of try-ons, cross-reads, left-behind garments and browsers.

    Endless unless ``duration_s`` is given; 4 rooms on one reader by default.
    """
    return Scenario(
        "fitting-rooms",
        _corridor(rooms, rooms_per_reader),
        _fitting_room_plan(
            mean_idle_s=mean_idle_s,
            browse_every_s=browse_every_s,
            left_behind_p=left_behind_p,
            cross_read_p=cross_read_p,
            cross_read_db=cross_read_db,
        ),
        seed=seed,
        start_us=start_us,
        duration_s=duration_s,
        read_interval_s=read_interval_s,
        reboots=reboots,
    )


def restart(
    seed: int = 1,
    start_us: int = DEFAULT_START_US,
    duration_s: float | None = 3600.0,
    *,
    at_s: float = 1500.0,
    down_s: float = 30.0,
    rooms: int = 4,
    read_interval_s: float = 1.0,
) -> Scenario:
    """Fitting rooms on one reader that restarts at ``at_s`` for ``down_s`` (scenario seconds)."""
    return fitting_rooms(
        seed,
        start_us,
        duration_s,
        rooms=rooms,
        rooms_per_reader=rooms,
        read_interval_s=read_interval_s,
        reboots=(Reboot("reader-1", at_s, down_s),),
    )


def throughput(
    seed: int = 1,
    start_us: int = DEFAULT_START_US,
    duration_s: float | None = 60.0,
    *,
    reads_per_s: int = 1100,
    tags: int = 200,
    antennas: int = 4,
) -> Scenario:
    """``reads_per_s`` reads every second from one reader: ``tags`` tags spread over its antennas.

    Exactly ``reads_per_s * duration_s`` reads (reads are spread evenly, 1 ms apart or closer).
    No try-ons: the truth is empty.
    """
    rng = random.Random(seed)  # noqa: S311 - simulation, not security
    rooms = tuple(Room("reader-1", a) for a in range(1, antennas + 1))
    epcs = [
        encode_sgtin96(g, i + 1, company_prefix_length=len(COMPANY_PREFIX))
        for i, g in enumerate(rng.choices(catalogue_gtins(), k=tags))
    ]
    rssi = [float(rng.randint(-60, -40)) for _ in range(tags)]

    def plan(_sc: Scenario) -> Iterator[Presence]:
        return iter(())

    def reads() -> Iterator[TagRead]:
        total = None if duration_s is None else int(reads_per_s * duration_s)
        for i in itertools.count():
            if total is not None and i >= total:
                return
            tag = i % tags
            yield TagRead(
                reader="reader-1",
                antenna=tag % antennas + 1,
                epc=epcs[tag],
                rssi=rssi[tag],
                seen_at_us=start_us + math.floor(i * _US / reads_per_s),
                count=1,
            )

    return Scenario(
        "throughput",
        rooms,
        plan,
        seed=seed,
        start_us=start_us,
        duration_s=duration_s,
        read_interval_s=1.0,
        stream=reads,
    )


SCENARIOS: dict[str, Callable[..., Scenario]] = {
    "fitting-rooms": fitting_rooms,
    "restart": restart,
    "throughput": throughput,
}
