"""Probe-request parsing: frames/s of drivers.wifi against two baselines, same run.

The input is every pcap of ``../shared/data/wifi/lab-occupancy-dev`` concatenated in memory
(or, when that data is absent, a generated capture of the same size and mix). Measured on the
same bytes, with the agent's hasher (agent/wifi/privacy.py ``DeviceHasher``: two keyed
BLAKE2b of each address), a fresh parser (cold caches) each run:

- "parser": ``BatchParser.parse_capture``, pcap records to numpy columns a batch at a time
  (what ``iter_probe_batches`` gives and ``iter_probes`` builds its objects from);
- ``iter_probes``: the same, then one ``ProbeRequest`` object per frame;
- ``ProbeParser``: ``read_pcap_bytes`` and ``ProbeParser.parse`` frame by frame;
- a bare ``struct`` loop that only walks the pcap records and reads each radiotap length
  (the floor any Python parser pays);
- scapy's full dissection, ``RadioTap(frame)``, on a sample of frames.

The parser and the struct loop run alternately; the ratio is the median of the per-round
ratios (the machine is shared: a round's two runs see the same load).

    .venv/bin/python bench/probe_parse.py [--repeats 7] [--scapy-sample 3000] [--data DIR]

Last line: {"metric": "probe_parse_ratio", "value": <parser/struct>, "target": ">=0.5",
"vs_scapy": <parser/scapy>}
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import struct
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import date
from itertools import islice
from pathlib import Path

from scapy.layers.dot11 import RadioTap

from agent.wifi.privacy import DeviceHasher
from drivers.wifi.batch import BatchParser
from drivers.wifi.probe import ProbeParser, iter_probes, read_pcap_bytes

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT.parent / "shared" / "data" / "wifi" / "lab-occupancy-dev"


def concatenated(paths: list[Path]) -> bytes:
    """One little-endian µs pcap holding the records of every file, in file order."""
    out = bytearray(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 127))
    for path in paths:
        out += memoryview(path.read_bytes())[24:]
    return bytes(out)


def generated(frames: int) -> bytes:
    """A synthetic capture: a few hundred devices, randomised and not, probing in bursts."""
    sys.path.insert(0, str(ROOT))
    from tests import wifi_pcap as wp

    rng = random.Random(5)
    models = (wp.IPHONE_IES, wp.ANDROID_IES, wp.LAPTOP_IES)
    devices = [
        wp.Probe(
            mac=wp.random_mac(rng, local=rng.random() < 0.7),
            seq=rng.randrange(4096),
            rssi=rng.randrange(-95, -40),
            freq=rng.choice((2412, 2437, 2462)),
            ssid=b"" if rng.random() < 0.8 else b"SomeNetwork",
            ies=rng.choice(models),
        )
        for _ in range(300)
    ]
    out = bytearray(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 127))
    ts = wp.T0
    for i in range(frames):
        ts += rng.randrange(1, 200_000)
        frame = wp.probe_frame(devices[i % len(devices)])
        sec, usec = divmod(ts, 1_000_000)
        out += struct.pack("<IIII", sec, usec, len(frame), len(frame)) + frame
    return bytes(out)


Hasher = Callable[[bytes], bytes]


def batch_run(data: bytes, hasher: Hasher) -> tuple[float, int]:
    """Frames/s of BatchParser.parse_capture (records to columns); and the number of probes."""
    parser = BatchParser(ProbeParser(hasher))
    started = time.perf_counter()
    probes = sum(len(columns) for columns in parser.parse_capture(data))
    elapsed = time.perf_counter() - started
    return parser.stats.frames / elapsed, probes


def objects_run(path: Path, hasher: Hasher) -> tuple[float, int]:
    """Frames/s of iter_probes (batches, then a ProbeRequest per frame) on the file."""
    parser = ProbeParser(hasher)
    started = time.perf_counter()
    probes = sum(1 for _ in iter_probes(path, parser))
    elapsed = time.perf_counter() - started
    return parser.stats.frames / elapsed, probes


def per_frame_run(data: bytes, hasher: Hasher) -> tuple[float, int]:
    """Frames/s of read_pcap_bytes + ProbeParser.parse; and the number of probes."""
    parser = ProbeParser(hasher)
    parse = parser.parse
    started = time.perf_counter()
    for ts_us, frame, linktype in read_pcap_bytes(data):
        parse(frame, ts_us, linktype)
    elapsed = time.perf_counter() - started
    return parser.stats.frames / elapsed, parser.stats.probes


def struct_run(data: bytes) -> tuple[float, int]:
    """Frames/s of a loop that walks the records and reads each radiotap header's length."""
    view = memoryview(data)
    record = struct.Struct("<IIII").unpack_from
    radiotap_len = struct.Struct("<xxH").unpack_from
    total = len(view)
    pos = 24
    frames = 0
    lengths = 0
    started = time.perf_counter()
    while pos + 16 <= total:
        _, _, incl, _ = record(view, pos)
        lengths += radiotap_len(view, pos + 16)[0]
        pos += 16 + incl
        frames += 1
    elapsed = time.perf_counter() - started
    assert lengths > 0
    return frames / elapsed, frames


def scapy_run(data: bytes, sample: int) -> float:
    """Frames/s of scapy's full dissection on the first ``sample`` frames."""
    frames = [bytes(record[1]) for record in islice(read_pcap_bytes(data), sample)]
    started = time.perf_counter()
    for frame in frames:
        RadioTap(frame)
    return len(frames) / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--slow-repeats", type=int, default=3, help="per-frame and objects")
    parser.add_argument("--scapy-sample", type=int, default=3000)
    parser.add_argument("--generated-frames", type=int, default=300_000)
    parser.add_argument("--data", type=Path, default=DATA, help="directory of pcaps")
    args = parser.parse_args()
    paths = sorted(args.data.glob("*.pcap"))
    if paths:
        data = concatenated(paths)
        source = f"{len(paths)} pcaps of {args.data}"
    else:
        print(f"no pcaps in {args.data}: benchmarking a generated capture", file=sys.stderr)
        data = generated(args.generated_frames)
        source = f"generated capture ({args.generated_frames} probe requests)"
    hasher = DeviceHasher(bytes(range(32)), date(2024, 2, 8))
    ours, bare, ratios = [], [], []
    for _ in range(args.repeats):
        fps, probes = batch_run(data, hasher)
        ours.append(fps)
        fps, frames = struct_run(data)
        bare.append(fps)
        ratios.append(ours[-1] / fps)
    single, objects = [], []
    with tempfile.TemporaryDirectory() as tmp:
        capture = Path(tmp) / "capture.pcap"
        capture.write_bytes(data)
        for _ in range(args.slow_repeats):
            fps, single_probes = per_frame_run(data, hasher)
            single.append(fps)
            fps, object_probes = objects_run(capture, hasher)
            objects.append(fps)
    assert probes == single_probes == object_probes, (probes, single_probes, object_probes)
    scapy_fps = scapy_run(data, args.scapy_sample)
    ours_fps, bare_fps = statistics.median(ours), statistics.median(bare)
    ratio = statistics.median(ratios)
    print(f"input: {source}, {frames:,} frames, {probes:,} probe requests parsed")
    for label, value, runs in (
        ("bare struct loop", bare_fps, bare),
        ("BatchParser (columns)", ours_fps, ours),
        ("iter_probes (objects)", statistics.median(objects), objects),
        ("ProbeParser per frame", statistics.median(single), single),
        ("scapy RadioTap()", scapy_fps, [scapy_fps]),
    ):
        print(f"{label:24} {value:12,.0f} frames/s  (runs: {[round(x) for x in runs]})")
    print(f"columns/struct per round: {[round(r, 3) for r in ratios]}")
    print(
        json.dumps(
            {
                "metric": "probe_parse_ratio",
                "value": round(ratio, 3),
                "target": ">=0.5",
                "vs_scapy": round(ours_fps / scapy_fps, 1),
            }
        )
    )


if __name__ == "__main__":
    main()
