"""A whole simulated store against a local cloud: cloud API, printer emulator, LLRP fitting-room
reader simulator, a Wi-Fi capture replayed through the sniffer pipeline, a generated entrance
video through the footfall counter, the store agent, the sync daemon and a POS posting sales.

Run through ``scripts/demo`` (which builds .venv first). Everything it starts runs on 127.0.0.1
and writes under ``demo-out/``; Ctrl-C or ``--duration`` stops it all and exits 0.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from drivers.rfid.scenarios import catalogue_gtins

ROOT = Path(__file__).resolve().parent.parent
BIN = ROOT / ".venv" / "bin"
POS_KEY = "demo-pos-key-7f3a9c"

PRODUCTS = [
    ("06901234567892", "Trail jacket 冲锋衣", 89900),
    ("06901234567885", "Down vest 羽绒背心", 59900),
    ("06901234567878", "Hiking boots 登山鞋", 129900),
    ("06901234567861", "Merino socks", 9900),
    ("06901234567854", "Fleece 抓绒衣", 39900),
    ("06901234567847", "Rain pants 防水裤", 45900),
    ("06901234567830", "Beanie", 12900),
    ("06901234567823", "Base layer 速干衣", 25900),
]
# Garments of the simulated fitting rooms (the LLRP simulator's SGTIN-96 tags): the POS sells
# some of them too, so try-ons convert.
GARMENTS = [
    (gtin, f"{('Dress 连衣裙', 'Shirt 衬衫', 'Trousers 长裤', 'Coat 外套')[i % 4]} #{i + 1}", 29900)
    for i, gtin in enumerate(catalogue_gtins())
]
ASSOCIATES = ["A01", "A02", "A03", "A07"]
MEMBERS = ["M-000101", "M-000102", "M-000215", "M-000342"]


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def http(method: str, url: str, body: Any = None, token: str | None = None) -> tuple[int, Any]:
    """A small JSON HTTP call (stdlib only: the demo must not depend on test tools)."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method)  # noqa: S310 - loopback
    request.add_header("Content-Type", "application/json")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read() or b"null")


def wait_http(url: str, token: str | None, seconds: float = 30) -> None:
    """Wait until a URL answers."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            http("GET", url, token=token)
        except OSError:
            time.sleep(0.2)
            continue
        return
    raise SystemExit(f"demo: {url} did not come up; see the logs in demo-out/")


def make_sale(rng: random.Random) -> dict[str, Any]:
    """A realistic sale: one to three products, sometimes a member and a discount."""
    lines: list[dict[str, Any]] = []
    chosen = rng.sample(PRODUCTS, rng.randint(1, 3))
    if rng.random() < 0.5:
        chosen[0] = rng.choice(GARMENTS)  # something from the fitting rooms
    for gtin, name, price in chosen:
        qty = rng.choice([1, 1, 1, 2])
        discount = rng.choice([0, 0, 0, price * qty // 10])
        lines.append(
            {"gtin": gtin, "name": name, "qty": qty, "unit_price": price, "discount": discount}
        )
    total = sum(line["qty"] * line["unit_price"] - line["discount"] for line in lines)
    sale: dict[str, Any] = {
        "sale_id": str(uuid.uuid4()),
        "register_id": rng.choice(["R1", "R2"]),
        "staff_id": rng.choice(ASSOCIATES),
        "lines": lines,
        "payments": [{"method": rng.choice(["card", "alipay", "wechat", "cash"]), "amount": total}],
        "total": total,
        "currency": "CNY",
        "occurred_at": datetime.now(UTC).isoformat(),
    }
    if rng.random() < 0.4:
        sale["member_id"] = rng.choice(MEMBERS)
    return sale


@dataclass
class Processes:
    """What the demo started, stopped in reverse order."""

    running: list[tuple[str, subprocess.Popen[bytes]]]

    def start(self, name: str, args: list[str], log: Path) -> None:
        with log.open("ab") as out:
            proc = subprocess.Popen(  # noqa: S603 - our own console scripts
                args, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
        self.running.append((name, proc))

    def check(self) -> None:
        for name, proc in self.running:
            if proc.poll() is not None:
                raise SystemExit(f"demo: {name} exited with {proc.returncode}; see demo-out/")

    def stop(self) -> None:
        for _, proc in reversed(self.running):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for _, proc in reversed(self.running):
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()


def run(*args: str) -> str:
    """Run one of our commands to completion; its stdout."""
    done = subprocess.run(  # noqa: S603 - our own console scripts
        [str(BIN / args[0]), *args[1:]], capture_output=True, text=True, timeout=120, check=False
    )
    if done.returncode != 0:
        raise SystemExit(f"demo: {' '.join(args[:3])} failed:\n{done.stderr or done.stdout}")
    return done.stdout


def last_line(text: str) -> str:
    """The last non-empty line (where our CLIs print tokens)."""
    return text.strip().splitlines()[-1].strip()


def write_cloud_config(out: Path, port: int) -> Path:
    """The local cloud's cloud.toml, on embedded SQLite."""
    path = out / "cloud.toml"
    (out / "cloud-data").mkdir()
    path.write_text(
        f'[server]\nlisten = "127.0.0.1:{port}"\npublic_url = "http://127.0.0.1:{port}"\n'
        f'data_dir = "{out / "cloud-data"}"\n'
    )
    return path


def sku_of(gtin: str) -> str:
    """The demo catalogue's SKU for a GTIN."""
    return f"SKU-{gtin[-6:-1]}"


def seed_cloud(base: str, hq: str) -> None:
    """What head office set up: catalogue, staff, segments, offers, a few members."""
    for gtin, name, price in PRODUCTS + GARMENTS:
        sku = sku_of(gtin)
        body = {
            "gtin": gtin,
            "name": name,
            "price": price,
            "currency": "CNY",
            "category": "outdoor",
        }
        http("PUT", f"{base}/v1/catalogue/{sku}", body, hq)
    for staff in ASSOCIATES:
        http("PUT", f"{base}/v1/stores/S001/staff/{staff}", {"name": f"Associate {staff}"}, hq)
    http(
        "PUT",
        f"{base}/v1/segments/vip",
        {"name": "VIP", "kind": "tags", "rule": {"any": ["vip"]}, "high_value": True},
        hq,
    )
    http(
        "PUT",
        f"{base}/v1/offers/vip-preview",
        {
            "text": "VIP: private preview of the winter line, Sat 10:00",
            "segments": ["vip"],
            "clearance": False,
            "priority": 10,
        },
        hq,
    )
    http(
        "PUT",
        f"{base}/v1/offers/clearance",
        {
            "text": "Clearance: 30% off last season's jackets",
            "segments": [],
            "clearance": True,
            "priority": 1,
        },
        hq,
    )
    for i, member in enumerate(MEMBERS):
        body = {
            "name": f"Member {i + 1}",
            "phone": f"+86 138 0000 {i:04d}",
            "consent": True,
            "home_store": "S001",
            "associate_id": ASSOCIATES[i % len(ASSOCIATES)],
        }
        http("PUT", f"{base}/v1/members/{member}", body, hq)
    http("POST", f"{base}/v1/members/{MEMBERS[0]}/tags", {"add": ["vip"]}, hq)
    http("POST", f"{base}/v1/segments/recompute", {}, hq)


@dataclass(frozen=True)
class DevicePorts:
    """Where the demo's devices listen."""

    printer: int
    rfid: int
    sync_metrics: int


WIFI_SPEED = 30  # the capture plays 30x faster: an hour of a lab day every two minutes
SHARED_WIFI = ROOT.parent / "shared" / "data" / "wifi" / "lab-occupancy-dev"
RFID_SPEED = 3  # fitting-room sessions of minutes finish within a short demo


def demo_capture(out: Path) -> Path:
    """A real Wi-Fi capture when the shared data is there, else a generated shop-front one."""
    real = SHARED_WIFI / "sc6-61_2024-03-21_anonymized.pcap"
    if real.is_file():
        return real
    from tests.wifi.scenario import build  # a synthetic two-hour capture (tests' generator)

    return build().write(out / "shop-front.pcap")


def demo_video(out: Path) -> Path:
    """A generated entrance video (walkers both ways, pairs, someone lingering); it loops."""
    from drivers.camera.synth import demo_scene, write_video

    path = out / "entrance.avi"
    write_video(path, demo_scene(120, 640, 480))
    return path


def write_agent_config(
    out: Path, api_port: int, ports: DevicePorts, cloud_url: str, wifi_pcap: Path, video: Path
) -> Path:
    """The demo store's agent.toml."""
    path = out / "agent.toml"
    path.write_text(
        f"""[store]
id = "S001"
name = "Trailhead Outfitters 山径户外"
address = ["88 Nanjing Rd, Shanghai"]
timezone = "Asia/Shanghai"
data_dir = "{out / "agent-data"}"

[api]
listen = "127.0.0.1:{api_port}"
key = "{POS_KEY}"

[cloud]
url = "{cloud_url}"

[receipt]
footer = "Thank you! 谢谢光临"

[sync]
metrics_listen = "127.0.0.1:{ports.sync_metrics}"

[[printers]]
name = "front"
uri = "socket://127.0.0.1:{ports.printer}"
profile = "TM-T88V"

[rfid]
[[rfid.readers]]
name = "rooms-a"
host = "127.0.0.1:{ports.rfid}"
rooms = {{ "1" = "room-1", "2" = "room-2", "3" = "room-3", "4" = "room-4" }}

[wifi]
sniffer = "front"
pcap = "{wifi_pcap}"
speed = {WIFI_SPEED}

[camera]
name = "entrance"
source = "{video}"
line = [32, 240, 608, 240]
loop = true
"""
    )
    return path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--duration", type=float, default=0, help="seconds to run (0: until Ctrl-C)"
    )
    parser.add_argument("--interval", type=float, default=2.0, help="seconds between sales")
    args = parser.parse_args()

    out = ROOT / "demo-out"
    shutil.rmtree(out, ignore_errors=True)
    receipts = out / "receipts"
    receipts.mkdir(parents=True)
    cloud_port, api_port = free_port(), free_port()
    ports = DevicePorts(printer=free_port(), rfid=free_port(), sync_metrics=free_port())
    cloud_url = f"http://127.0.0.1:{cloud_port}"
    cloud_config = write_cloud_config(out, cloud_port)
    print("demo: preparing a Wi-Fi capture and an entrance video ...", flush=True)
    wifi_pcap = demo_capture(out)
    config = write_agent_config(out, api_port, ports, cloud_url, wifi_pcap, demo_video(out))
    base = f"http://127.0.0.1:{api_port}"

    procs = Processes([])
    stopping = False

    def on_signal(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    agent = str(BIN / "storelink-agent")
    count = 0
    last_url = ""
    try:
        procs.start(
            "cloud",
            [str(BIN / "storelink-cloud"), "run", "--config", str(cloud_config)],
            out / "cloud.log",
        )
        wait_http(f"{cloud_url}/v1/sync-status", None)
        token = last_line(
            run(
                "storelink-cloud",
                "stores",
                "add",
                "--config",
                str(cloud_config),
                "--id",
                "S001",
                "--name",
                "Trailhead Outfitters",
                "--region",
                "east",
            )
        )
        hq = last_line(
            run(
                "storelink-cloud",
                "users",
                "add",
                "--config",
                str(cloud_config),
                "--name",
                "Head office",
                "--role",
                "hq",
            )
        )
        regional = last_line(
            run(
                "storelink-cloud",
                "users",
                "add",
                "--config",
                str(cloud_config),
                "--name",
                "East region",
                "--role",
                "regional",
                "--region",
                "east",
            )
        )
        seed_cloud(cloud_url, hq)
        run(
            "storelink-agent",
            "enroll",
            "--config",
            str(config),
            "--cloud",
            cloud_url,
            "--token",
            token,
        )
        procs.start(
            "printer emulator",
            [
                agent,
                "printer",
                "emulate",
                "--listen",
                f"127.0.0.1:{ports.printer}",
                "--out",
                str(receipts),
            ],
            out / "printer.log",
        )
        procs.start(
            "LLRP reader simulator",
            [
                agent,
                "rfid",
                "simulate",
                "--listen",
                f"127.0.0.1:{ports.rfid}",
                "--scenario",
                "fitting-rooms",
                "--speed",
                str(RFID_SPEED),
            ],
            out / "rfid-simulator.log",
        )
        procs.start("agent", [agent, "run", "--config", str(config)], out / "agent.log")
        procs.start(
            "sync daemon",
            [str(BIN / "storelink-sync"), "run", "--config", str(config)],
            out / "sync.log",
        )
        wait_http(f"{base}/v1/status", POS_KEY)
        print(
            f"""
storelink demo: a simulated store (S001, region east) and a local cloud are running.

  Receipts as the printer prints them (PNG): {receipts}/
  Cloud (embedded SQLite):                   {cloud_url}
  Store POS API (Bearer {POS_KEY}):  {base}/v1/status
  Logs:                                      {out}/*.log

  Sync status as a regional manager sees it:
    curl -s -H 'Authorization: Bearer {regional}' {cloud_url}/v1/sync-status
  The store's own view:
    .venv/bin/storelink-sync status --config {config}
    .venv/bin/storelink-agent status --config {config}
  Head office exports (sales; try-ons with conversion per SKU and day; Wi-Fi traffic per
  minute; entrance footfall per minute):
    .venv/bin/storelink-cloud export sales --config {cloud_config} --format csv --out -
    .venv/bin/storelink-cloud export tryons --config {cloud_config} --format csv --out -
    .venv/bin/storelink-cloud export wifi --config {cloud_config} --format csv --out -
    .venv/bin/storelink-cloud export footfall --config {cloud_config} --format csv --out -
  Store IT: .venv/bin/storelink-agent doctor --config {config}
  Metrics:  curl -s {base}/metrics   and the sync daemon's http://127.0.0.1:{ports.sync_metrics}/metrics

Devices: an LLRP simulator plays shoppers taking garments into four fitting rooms (sllurp
client, {RFID_SPEED}x speed: try-ons arrive after a few minutes), a Wi-Fi capture replays at
{WIFI_SPEED}x through the probe parser ({wifi_pcap.name}), and a generated entrance video loops
through the footfall counter. Only aggregates leave the store: try-on sessions, per-minute
Wi-Fi windows (hashed identifiers never leave the agent) and per-minute in/out counts.

A simulated POS posts a sale every ~{args.interval:g} s (two registers, four associates,
members — {MEMBERS[0]} is a VIP and gets the VIP offer on the receipt, never the clearance
one — Chinese product names). Open an e-receipt URL below in a browser. Ctrl-C stops all.
""",
            flush=True,
        )
        rng = random.Random()  # noqa: S311 - simulated shoppers, not secrets
        started = time.monotonic()
        while not stopping:
            if args.duration and time.monotonic() - started >= args.duration:
                break
            procs.check()
            sale = make_sale(rng)
            status, answer = http("POST", f"{base}/v1/sales", sale, POS_KEY)
            count += 1
            if status == 201:
                last_url = answer["receipt_url"]
                member = f" member {sale['member_id']}" if "member_id" in sale else ""
                print(
                    f"sale {count}: receipt {answer['receipt_no']} "
                    f"{sale['total'] / 100:.2f} CNY{member}; e-receipt: {last_url}",
                    flush=True,
                )
            else:
                print(f"sale {count}: refused {status}: {answer}", flush=True)
            deadline = time.monotonic() + rng.uniform(0.5, 1.5) * args.interval
            while not stopping and time.monotonic() < deadline:
                time.sleep(0.1)
        if count:
            _, sync_status = http("GET", f"{cloud_url}/v1/sync-status", None, hq)
            print(f"\ncloud sync status: {json.dumps(sync_status)[:400]}")
    finally:
        procs.stop()
    pngs = sorted(receipts.glob("*.png"))
    print(f"\ndemo stopped: {count} sales, {len(pngs)} receipts printed into {receipts}/")
    if pngs:
        print(f"latest receipt: {pngs[-1]}")
    if last_url:
        print(f"latest e-receipt URL: {last_url} (the cloud is stopped now; rerun to open it)")
    if (out / "cloud-data").is_dir():
        counts = {
            dataset: exported_rows(cloud_config, dataset)
            for dataset in ("tryon_sessions", "wifi", "footfall")
        }
        print(
            f"in the cloud: {counts['tryon_sessions']} try-on sessions, {counts['wifi']} Wi-Fi "
            f"minutes, {counts['footfall']} footfall minutes (exports above work on the data)"
        )
    return 0


def exported_rows(cloud_config: Path, dataset: str) -> int:
    """Rows of a cloud export (CSV lines less the header), read from the stopped cloud's files."""
    text = run(
        "storelink-cloud",
        "export",
        dataset,
        "--config",
        str(cloud_config),
        "--format",
        "csv",
        "--out",
        "-",
    )
    return max(0, len(text.splitlines()) - 1)


if __name__ == "__main__":
    os.chdir(ROOT)
    sys.exit(main())
