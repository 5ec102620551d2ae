"""Devices, not MACs: group randomised addresses into devices, and learn the store's own devices.

A globally administered address is one device as it is. A locally administered (randomised)
address that has not been seen before joins an existing randomised device when the evidence
says it is the same phone with a fresh address, as in the literature (Vanhoef et al. 2016;
Matte et al. 2016; Martin et al. 2017). Both need the same information-element fingerprint
(a phone keeps its capabilities across addresses), and then either:

- *same burst*: the device sent a frame less than ``burst_s`` ago. Phones scan in bursts
  (a frame per channel, 20-130 s apart), and iPhones use several fresh addresses within one
  burst (the device-labelled captures show 3 to 13), so a new address of the same model in
  the middle of a burst is that phone;
- *next burst*: the device's last frame is at most ``link_s`` old and the new frame's
  sequence number continues its counter (many Android phones keep it across addresses) or,
  failing that, its signal is within ``rssi_tol_db`` of the last one.

Among several candidates the sequence-number match wins, then the closest signal, then the
most recent. A device whose last frame is older than the visit gap has left: its visit (the
:class:`Device` record) ends and its dwell is final.

Fixed devices (the store's own PCs, printers, tablets) probe all day. :class:`FixedLearner`
flags a device present in at least ``fraction`` of the 10-minute slots it has watched (over
a rolling horizon, or the whole capture for a replay); the service also remembers the
non-rotating tags of devices once learned fixed, so they are excluded from the first frame
on the following days.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Protocol

SEQ_MODULO = 4096
SLOT_US = 600_000_000  # fixed-device presence is counted in 10-minute slots


class Probe(Protocol):
    """What grouping needs of a parsed probe request (drivers.wifi.probe.ProbeRequest)."""

    @property
    def ts_us(self) -> int: ...
    @property
    def device(self) -> bytes: ...
    @property
    def local_admin(self) -> bool: ...
    @property
    def seq(self) -> int: ...
    @property
    def rssi(self) -> int | None: ...
    @property
    def fingerprint(self) -> int: ...


@dataclass(slots=True, eq=False)
class Device:
    """One device's current visit: from its first frame until it has been gone a visit gap."""

    number: int
    key: bytes  # the identifier of its first address: stable all day for a global address
    randomised: bool
    fingerprint: int
    address: bytes  # the identifier it uses now
    first_us: int
    last_us: int
    last_seq: int
    last_rssi: int | None
    max_rssi: int | None
    addresses: int = 1

    @property
    def dwell_s(self) -> float:
        """Seconds between the visit's first and last frame."""
        return (self.last_us - self.first_us) / 1e6

    def see(self, probe: Probe) -> None:
        """Record one more frame of this device."""
        self.last_us = max(self.last_us, probe.ts_us)
        self.last_seq = probe.seq
        if probe.rssi is not None:
            self.last_rssi = probe.rssi
            if self.max_rssi is None or probe.rssi > self.max_rssi:
                self.max_rssi = probe.rssi


@dataclass(frozen=True, slots=True)
class GroupingSettings:
    """Thresholds of :class:`DeviceGrouper` (see the module docstring)."""

    burst_s: float = 1.5
    link_s: float = 150.0
    seq_window: int = 256
    rssi_tol_db: int = 12


class DeviceGrouper:
    """Assigns every probe request to a device; :meth:`expire` ends the visits of the gone."""

    def __init__(self, settings: GroupingSettings | None = None) -> None:
        self.settings = settings or GroupingSettings()
        self._by_address: dict[bytes, Device] = {}
        self._randomised: dict[int, list[Device]] = defaultdict(list)
        self._next = 0

    def __len__(self) -> int:
        return len({id(d) for d in self._by_address.values()})

    def observe(self, probe: Probe) -> Device:
        """The device that sent ``probe`` (an existing one, or a new visit)."""
        device = self._by_address.get(probe.device)
        if device is None:
            device = self._match(probe) if probe.local_admin else None
            if device is None:
                device = self._new(probe)
            else:
                device.address = probe.device
                device.addresses += 1
            self._by_address[probe.device] = device
        device.see(probe)
        return device

    def _new(self, probe: Probe) -> Device:
        self._next += 1
        device = Device(
            number=self._next,
            key=probe.device,
            randomised=probe.local_admin,
            fingerprint=probe.fingerprint,
            address=probe.device,
            first_us=probe.ts_us,
            last_us=probe.ts_us,
            last_seq=probe.seq,
            last_rssi=probe.rssi,
            max_rssi=probe.rssi,
        )
        if probe.local_admin:
            self._randomised[probe.fingerprint].append(device)
        return device

    def _match(self, probe: Probe) -> Device | None:
        s = self.settings
        best: tuple[int, int, int, Device] | None = None
        for device in self._randomised.get(probe.fingerprint, ()):
            gap_us = abs(probe.ts_us - device.last_us)
            if gap_us > s.link_s * 1e6:
                continue
            if gap_us <= s.burst_s * 1e6:
                score = (-1, 0, gap_us, device)
                if best is None or score[:3] < best[:3]:
                    best = score
                continue
            step = (probe.seq - device.last_seq) % SEQ_MODULO
            seq_ok = 0 < step <= s.seq_window
            if probe.rssi is None or device.last_rssi is None:
                rssi_diff = 0
            else:
                rssi_diff = abs(probe.rssi - device.last_rssi)
            if not seq_ok and rssi_diff > s.rssi_tol_db:
                continue
            score = (0 if seq_ok else 1, step if seq_ok else rssi_diff, gap_us, device)
            if best is None or score[:3] < best[:3]:
                best = score
        return None if best is None else best[3]

    def devices(self) -> list[Device]:
        """The devices whose visit is in progress."""
        return list({id(d): d for d in self._by_address.values()}.values())

    def expire(self, before_us: int) -> list[Device]:
        """End and return the visits whose last frame is older than ``before_us``."""
        gone = [d for d in set(self._by_address.values()) if d.last_us < before_us]
        return self._drop(gone)

    def expire_all(self) -> list[Device]:
        """End every visit (end of a capture, or a key rotation)."""
        return self._drop(list(set(self._by_address.values())))

    def _drop(self, gone: list[Device]) -> list[Device]:
        if not gone:
            return []
        dead = {id(d) for d in gone}
        self._by_address = {a: d for a, d in self._by_address.items() if id(d) not in dead}
        for fp in {d.fingerprint for d in gone if d.randomised}:
            kept = [d for d in self._randomised[fp] if id(d) not in dead]
            if kept:
                self._randomised[fp] = kept
            else:
                del self._randomised[fp]
        gone.sort(key=lambda d: d.number)
        return gone


@dataclass(slots=True)
class FixedLearner:
    """Flags devices present in most 10-minute slots as the store's own (see module doc).

    ``horizon_slots`` bounds the memory (a rolling window for the live service; a replay
    passes the whole capture). A device is judged over the slots watched so far within the
    horizon, and only once ``min_slots`` have been watched.
    """

    fraction: float = 0.7
    horizon_slots: int = 72
    min_slots: int = 6
    known_tags: set[bytes] = field(default_factory=set)
    _seen: dict[bytes, set[int]] = field(default_factory=dict)
    _first_slot: int | None = None
    _last_slot: int = 0

    def see(self, key: bytes, ts_us: int) -> None:
        """Record that device ``key`` was present at ``ts_us``."""
        slot = ts_us // SLOT_US
        if self._first_slot is None:
            self._first_slot = slot
        if slot > self._last_slot:
            self._last_slot = slot
            self._forget_before(slot - self.horizon_slots + 1)
        self._seen.setdefault(key, set()).add(slot)

    def _forget_before(self, oldest: int) -> None:
        stale = []
        for key, slots in self._seen.items():
            old = [s for s in slots if s < oldest]
            for s in old:
                slots.discard(s)
            if not slots:
                stale.append(key)
        for key in stale:
            del self._seen[key]

    @property
    def watched_slots(self) -> int:
        """Slots watched within the horizon so far."""
        if self._first_slot is None:
            return 0
        return min(self._last_slot - self._first_slot + 1, self.horizon_slots)

    def is_fixed(self, key: bytes, tag: bytes | None = None) -> bool:
        """True for a device learned (now or on an earlier day) to be the store's own."""
        if tag is not None and tag in self.known_tags:
            return True
        watched = self.watched_slots
        if watched < self.min_slots:
            return False
        return len(self._seen.get(key, ())) >= self.fraction * watched

    def fixed_keys(self) -> list[bytes]:
        """Every device key that currently counts as fixed by presence."""
        return [k for k in self._seen if self.is_fixed(k)]

    def restart(self) -> None:
        """Forget presence history (device keys rotated); known tags are kept."""
        self._seen = {}
        self._first_slot = None
        self._last_slot = 0

    def remember(self, tags: Iterable[bytes]) -> None:
        """Add tags of devices known to be fixed from earlier days."""
        self.known_tags.update(tags)
