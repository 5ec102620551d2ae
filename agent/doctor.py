"""``storelink-agent doctor``: each check gives a plain verdict and, when it fails, a fix hint.

Checks, in order: config, data directory, database, store key, CJK font, enrollment, cloud
reachable, clock (against the cloud's ``Date``), signature accepted (a signed ``GET
sync-state`` the cloud verifies), each printer (reachable, paper, cover), each RFID reader
(answers LLRP), the Wi-Fi interface, the camera. A check that cannot run because an earlier
one failed is skipped, saying why; the command exits 1 if any check failed.

Blocking checks run in threads; the whole run is bounded by each check's own timeout.
"""

from __future__ import annotations

import asyncio
import enum
import functools
import os
import shutil
import socket
import sqlite3
import struct
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from email.utils import parsedate_to_datetime

import aiohttp

from agent.camera.config import CameraConfig
from agent.config import AgentConfig, PrinterConfig
from agent.db import DB_FILE
from agent.discovery import DiscoveryError, reachable_uri, reader_address
from agent.keyfile import KeyFileError, read_key_file
from agent.receipt import find_cjk_font
from agent.rfid.config import ReaderConfig
from agent.storekey import KEY_FILE, StoreKeyError, load_or_create_store_key
from agent.sync.client import BadAnswer, CloudClient, CloudRejected, CloudUnavailable
from agent.wifi.config import WifiConfig
from drivers.printer.connection import PrinterConnection
from drivers.printer.errors import PrinterError

MIN_FREE_BYTES = 200 * 1024 * 1024
MAX_CLOCK_SKEW_S = 120.0
CLOUD_TIMEOUT_S = 10.0
LLRP_TIMEOUT_S = 5.0
LLRP_HEADER = struct.Struct(">HII")  # version+type, length, message id
LLRP_READER_EVENT_NOTIFICATION = 63
LLRP_CONNECTION_ATTEMPT_EVENT = 256
LLRP_CONNECTION_ATTEMPT_STATUS = {
    0: "accepted",
    1: "busy: the reader has a connection it initiated",
    2: "busy: another client is connected (the running agent?)",
    3: "refused for another reason",
    4: "another connection was attempted",
}


class Verdict(enum.Enum):
    OK = "ok"
    FAIL = "FAIL"
    SKIP = "skip"


@dataclass(frozen=True, slots=True)
class CheckResult:
    """One check's verdict."""

    name: str
    verdict: Verdict
    detail: str
    hint: str = ""

    @property
    def ok(self) -> bool:
        """False only for a failed check (a skipped one is not a failure of its own)."""
        return self.verdict is not Verdict.FAIL

    def line(self) -> str:
        """The check as one line of output (two with a fix hint)."""
        hint = f"\n       fix: {self.hint}" if self.hint and self.verdict is Verdict.FAIL else ""
        return f"[{self.verdict.value:^4}] {self.name}: {self.detail}{hint}"

    def as_json(self) -> dict[str, str]:
        """JSON form for ``doctor --json``."""
        return {
            "check": self.name,
            "verdict": self.verdict.value.lower(),
            "detail": self.detail,
            "hint": self.hint,
        }


def passed(name: str, detail: str) -> CheckResult:
    """A check that passed."""
    return CheckResult(name, Verdict.OK, detail)


def failed(name: str, detail: str, hint: str) -> CheckResult:
    """A check that failed, with what to do about it."""
    return CheckResult(name, Verdict.FAIL, detail, hint)


def skipped(name: str, why: str) -> CheckResult:
    """A check that could not run."""
    return CheckResult(name, Verdict.SKIP, why)


# -- the store PC -----------------------------------------------------------------------------


def check_data_dir(config: AgentConfig) -> CheckResult:
    """The data directory exists, takes a file (really written, not only ``access()``), has room."""
    path = config.store.data_dir
    name = "data directory"
    if not path.exists():
        return failed(name, f"{path} does not exist", "start the agent once, or create it")
    if not path.is_dir():
        return failed(name, f"{path} is not a directory", "point [store] data_dir at a directory")
    try:
        with tempfile.NamedTemporaryFile(dir=path, prefix=".doctor-") as probe:
            probe.write(b"storelink doctor")
            probe.flush()
            os.fsync(probe.fileno())
    except OSError as err:
        return failed(
            name,
            f"{path} is not writable: {err.strerror or err}",
            f"chown -R storelink {path} (the agent's user), or fix the mount (read-only?)",
        )
    free = shutil.disk_usage(path).free
    if free < MIN_FREE_BYTES:
        return failed(
            name,
            f"only {free // 2**20} MiB free in {path}",
            f"free disk space: the agent wants at least {MIN_FREE_BYTES // 2**20} MiB",
        )
    return passed(name, f"{path}, writable, {free // 2**20} MiB free")


def check_database(config: AgentConfig) -> CheckResult:
    """The database opens and passes SQLite's quick check."""
    path = config.store.data_dir / DB_FILE
    if not path.exists():
        return failed("database", f"{path} not created yet", "start the agent once")
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            (verdict,) = conn.execute("PRAGMA quick_check").fetchone()
        finally:
            conn.close()
    except sqlite3.Error as err:
        return failed("database", str(err), "restore the data directory from backup")
    if verdict != "ok":
        return failed("database", f"{path}: {verdict}", "restore the data directory from backup")
    return passed("database", f"{path}: ok")


def check_store_key(config: AgentConfig) -> CheckResult:
    """The store key exists with owner-only permissions."""
    path = config.store.data_dir / KEY_FILE
    # The agent's own reader: what it refuses (group-readable, a symlink, not a regular
    # file), the doctor fails.
    try:
        read_key_file(path, "store key")
    except FileNotFoundError:
        return failed("store key", "no store key yet", "run `storelink-agent enroll` (creates it)")
    except KeyFileError as err:
        return failed(
            "store key", str(err), f"make {path} a regular file of the agent's user, mode 600"
        )
    return passed("store key", f"{path} (owner-only)")


def check_cjk_font(config: AgentConfig) -> CheckResult:
    """A CJK font exists for printers that cannot print GB18030 text."""
    font = config.receipt.cjk_font or find_cjk_font()
    if font is None or not font.exists():
        return failed(
            "CJK font",
            "no CJK font: Chinese names print as '?' on non-GB18030 printers",
            "apt-get install fonts-wqy-microhei, or set [receipt] cjk_font",
        )
    return passed("CJK font", str(font))


def read_enrollment(config: AgentConfig) -> str | None:
    """The cloud URL the store enrolled with, or None (read-only; blocking)."""
    path = config.store.data_dir / DB_FILE
    if not path.exists():
        return None
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        row = conn.execute("SELECT value FROM sync_state WHERE key = 'cloud_url'").fetchone()
    except sqlite3.Error:
        return None  # a database from before sync existed, or a broken one (checked above)
    finally:
        conn.close()
    return None if row is None else str(row[0])


def check_enrolled(config: AgentConfig, cloud_url: str | None) -> CheckResult:
    """The store has enrolled its key with a cloud."""
    if cloud_url is None:
        return failed(
            "enrolled",
            f"store {config.store.id} has not enrolled with a cloud",
            "ask head office for a token (`storelink-cloud stores add`), then run "
            "`storelink-agent enroll --config FILE --cloud URL --token TOKEN`",
        )
    return passed("enrolled", f"store {config.store.id} enrolled with {cloud_url}")


# -- the cloud --------------------------------------------------------------------------------


async def cloud_date(url: str) -> tuple[datetime | None, float]:
    """The cloud's ``Date`` header (None if absent) and our clock's offset from it, in s.

    Any answer carries a Date, so an unauthenticated GET is enough. The offset compares with
    the middle of the request, and allows for the header's one-second resolution.
    """
    timeout = aiohttp.ClientTimeout(total=CLOUD_TIMEOUT_S)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        sent = time.time()
        async with session.get(f"{url}/v1/sync-status", allow_redirects=False) as resp:
            await resp.read()
            header = resp.headers.get("Date")
        answered = time.time()
    if header is None:
        return None, 0.0
    theirs = parsedate_to_datetime(header)
    offset = (sent + answered) / 2 - theirs.timestamp()
    # The header drops the fraction of a second: within [0, 1) s of ours is no offset at all.
    if 0 <= offset < 1:
        return theirs, 0.0
    return theirs, offset if offset < 0 else offset - 1


async def check_cloud(config: AgentConfig, enrolled_url: str | None) -> list[CheckResult]:
    """Cloud reachable, clock within two minutes of it, and a signed request accepted."""
    url = enrolled_url or config.cloud.url
    try:
        date, offset = await cloud_date(url)
    except (aiohttp.ClientError, TimeoutError, ValueError) as err:
        reason = str(err) or type(err).__name__
        return [
            failed(
                "cloud reachable",
                f"{url} did not answer: {reason}",
                "check the network, proxy and firewall from this PC: curl -sI " + url,
            ),
            skipped("clock", "cannot compare with the cloud: it is unreachable"),
            skipped("signature", "cannot test: the cloud is unreachable"),
        ]
    results = [passed("cloud reachable", f"{url} answers")]
    if date is None:
        results.append(skipped("clock", f"{url} sends no Date header to compare with"))
    elif abs(offset) > MAX_CLOCK_SKEW_S:
        direction = "ahead of" if offset > 0 else "behind"
        results.append(
            failed(
                "clock",
                f"this PC's clock is {abs(offset):.0f} s {direction} the cloud's",
                "turn on time sync (timedatectl set-ntp true) and check the time zone; "
                "the cloud refuses signed requests whose time is off",
            )
        )
    else:
        results.append(passed("clock", f"within {abs(offset):.0f} s of the cloud's"))
    results.append(await check_signature(config, enrolled_url))
    return results


async def check_signature(config: AgentConfig, enrolled_url: str | None) -> CheckResult:
    """A request signed with the store key is accepted (GET sync-state)."""
    name = "signature"
    if enrolled_url is None:
        return skipped(name, "cannot test: the store has not enrolled")
    data_dir = config.store.data_dir
    # Loaded only when it exists: the doctor must not make a new key (it would not verify).
    if not await asyncio.to_thread((data_dir / KEY_FILE).exists):
        return failed(name, "the store key is missing", "restore data_dir/store_key.pem")
    try:
        key = await asyncio.to_thread(load_or_create_store_key, data_dir)
    except StoreKeyError as err:
        return failed(name, f"cannot load the store key: {err}", "restore data_dir/store_key.pem")
    client = CloudClient(
        enrolled_url,
        config.store.id,
        key,
        timeout_s=CLOUD_TIMEOUT_S,
        connect_timeout_s=CLOUD_TIMEOUT_S,
    )
    try:
        async with client:
            state = await client.get_sync_state()
    except CloudRejected as err:
        return failed(
            name,
            f"the cloud refused a signed request: {err}",
            "if the clock is right, the store key changed since enrollment: enroll again "
            "with a new token (`storelink-agent enroll`)",
        )
    except (CloudUnavailable, BadAnswer) as err:
        return failed(name, f"signed request failed: {err}", "check the cloud URL and network")
    return passed(name, f"signed request accepted (cloud holds events up to seq {state.max_seq})")


# -- devices ----------------------------------------------------------------------------------


def check_printer(printer: PrinterConfig, interfaces: tuple[str, ...] = ()) -> CheckResult:
    """The printer answers and is ready (paper, cover, online); dnssd names resolved first."""
    name = f"printer {printer.name}"
    try:
        uri = reachable_uri(printer.parsed_uri, interfaces)
    except DiscoveryError as err:
        return failed(
            name,
            f"{printer.uri}: {err}",
            "power the printer on and check it is on this LAN "
            "(`storelink-agent discover` lists what answers)",
        )
    where = f" (found at {uri})" if uri != printer.parsed_uri else ""
    try:
        with PrinterConnection(uri, printer.timeout_s) as conn:
            status = conn.query_status()
    except PrinterError as err:
        return failed(name, f"{err}{where}", f"check power, cable and network of {printer.uri}")
    if status is None:
        return passed(name, f"{printer.uri}{where} opened (status not readable)")
    if not status.ready:
        return failed(name, f"{status.describe()}{where}", "load paper / close the cover")
    return passed(name, f"{printer.uri}{where}: {status.describe()}")


def _recv_exactly(sock: socket.socket, count: int) -> bytes:
    data = b""
    while len(data) < count:
        chunk = sock.recv(count - len(data))
        if not chunk:
            break
        data += chunk
    return data


def _connection_status(body: bytes) -> int | None:
    """The ConnectionAttemptEvent status inside a READER_EVENT_NOTIFICATION body, if any."""
    # Body: ReaderEventNotificationData (TLV 246) holding a timestamp and, on connect, a
    # ConnectionAttemptEvent (TLV 256, a u16 status). Walk the TLVs of the outer parameter.
    if len(body) < 4:
        return None
    offset = 4
    while offset + 4 <= len(body):
        kind, length = struct.unpack_from(">HH", body, offset)
        kind &= 0x3FF
        if length < 4:
            return None
        if kind == LLRP_CONNECTION_ATTEMPT_EVENT and length >= 6:
            return int(struct.unpack_from(">H", body, offset + 4)[0])
        offset += length
    return None


def check_llrp_reader(
    name: str, host: str, port: int, timeout: float = LLRP_TIMEOUT_S
) -> CheckResult:
    """The reader accepts a TCP connection and greets with READER_EVENT_NOTIFICATION."""
    check = f"RFID reader {name}"
    where = f"{host}:{port}"
    hint = f"check power and network of the reader at {where}, and [[rfid.readers]] host"
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            header = _recv_exactly(sock, LLRP_HEADER.size)
            if len(header) < LLRP_HEADER.size:
                return failed(
                    check, f"{where} closed the connection without an LLRP greeting", hint
                )
            version_type, length, _ = LLRP_HEADER.unpack(header)
            message_type = version_type & 0x3FF
            if message_type != LLRP_READER_EVENT_NOTIFICATION or length < LLRP_HEADER.size:
                return failed(
                    check,
                    f"{where} sent message type {message_type}, not an LLRP reader's greeting",
                    f"is {where} an LLRP reader (port 5084)?",
                )
            body = _recv_exactly(sock, min(length - LLRP_HEADER.size, 4096))
    except TimeoutError:
        return failed(check, f"{where} did not greet within {timeout:g} s", hint)
    except OSError as err:
        return failed(check, f"cannot connect to {where}: {err.strerror or err}", hint)
    status = _connection_status(body)
    version = (version_type >> 10) & 0x7
    if status is None or status == 0:
        return passed(check, f"{where} answers LLRP (version {version})")
    what = LLRP_CONNECTION_ATTEMPT_STATUS.get(status, f"status {status}")
    return passed(check, f"{where} answers LLRP (version {version}); connection {what}")


def check_reader(reader: ReaderConfig, interfaces: tuple[str, ...] = ()) -> CheckResult:
    """The reader answers LLRP; a ``dnssd://`` reader's advertised name resolved first."""
    try:
        host, port = reader_address(reader, interfaces)
    except DiscoveryError as err:
        return failed(
            f"RFID reader {reader.name}",
            f"{reader.host}: {err}",
            "power the reader on and check it is on this LAN "
            "(`storelink-agent discover` lists what answers)",
        )
    return check_llrp_reader(reader.name, host, port)


def check_wifi(config: WifiConfig) -> CheckResult:
    """The sniffer's interface exists and is, or can be put, in monitor mode (read-only)."""
    # The driver's own helpers, minus the switch: the doctor looks, the agent acts.
    from drivers.wifi.capture import (
        SYS_CLASS_NET,
        CaptureError,
        CapturePermissionError,
        parse_dev_info,
        phy_supports_monitor,
        run_command,
    )

    name = f"Wi-Fi sniffer {config.sniffer}"
    if config.pcap is not None:
        if not config.pcap.is_file():
            return failed(name, f"capture {config.pcap} does not exist", "fix [wifi] pcap")
        return passed(name, f"replays {config.pcap}")
    interface = config.interface
    assert interface is not None
    if not (SYS_CLASS_NET / interface).exists():
        return failed(
            name,
            f"interface {interface!r} does not exist",
            "plug in the Wi-Fi adapter; `ip link` lists interfaces; fix [wifi] interface",
        )
    try:
        kind, wiphy = parse_dev_info(run_command(["iw", "dev", interface, "info"]))
        if kind == "monitor":
            return passed(name, f"{interface} is in monitor mode")
        if wiphy is None:
            return failed(
                name, f"{interface!r} is not a wireless interface", "fix [wifi] interface"
            )
        if not phy_supports_monitor(run_command(["iw", "phy", f"phy{wiphy}", "info"])):
            return failed(
                name,
                f"the adapter of {interface} (phy{wiphy}) cannot do monitor mode",
                "use an adapter whose driver supports monitor mode (`iw list`)",
            )
    except CapturePermissionError as err:
        return failed(name, str(err), "run the agent with CAP_NET_ADMIN and CAP_NET_RAW")
    except CaptureError as err:
        if "nl80211 not found" in str(err) or "No such device" in str(err):
            # iw's answer for a wired or virtual interface: it has no nl80211 (Wi-Fi) driver.
            return failed(
                name,
                f"{interface!r} is not a Wi-Fi interface",
                "fix [wifi] interface (`iw dev` lists the Wi-Fi interfaces)",
            )
        hint = "apt-get install iw" if "not installed" in str(err) else "check the adapter"
        return failed(name, str(err), hint)
    return passed(name, f"{interface} ({kind}) supports monitor mode; the agent switches it")


def check_camera(config: CameraConfig) -> CheckResult:
    """The camera (or stream, or file) opens and delivers a frame."""
    # Imported here: OpenCV is heavy, and only this check needs it.
    from drivers.camera.capture import CameraError, describe_source, open_capture

    name = f"camera {config.name}"
    source = config.source
    assert source is not None
    try:
        cap = open_capture(source)
    except CameraError as err:
        return failed(
            name,
            str(err),
            "check the cable or stream URL and [camera] source; `v4l2-ctl --list-devices`",
        )
    try:
        ok, frame = cap.read()
    finally:
        cap.release()
    if not ok or frame is None:
        return failed(name, f"{describe_source(source)} opened but sent no frame", "check it")
    height, width = frame.shape[:2]
    return passed(name, f"{describe_source(source)} delivers {width}x{height} frames")


def device_checks(config: AgentConfig) -> list[Callable[[], CheckResult]]:
    """Checks of the configured devices."""
    checks: list[Callable[[], CheckResult]] = [
        functools.partial(check_printer, printer, config.discovery.interfaces)
        for printer in config.printers
    ]
    for reader in config.rfid.readers:
        checks.append(functools.partial(check_reader, reader, config.discovery.interfaces))
    if config.wifi.enabled:
        checks.append(functools.partial(check_wifi, config.wifi))
    if config.camera.enabled:
        checks.append(functools.partial(check_camera, config.camera))
    return checks


async def run_checks(config: AgentConfig) -> list[CheckResult]:
    """Run every check in order (blocking ones in threads)."""
    results = [passed("config", "valid")]
    for local in (check_data_dir, check_database, check_store_key, check_cjk_font):
        results.append(await asyncio.to_thread(local, config))
    enrolled_url = await asyncio.to_thread(read_enrollment, config)
    results.append(check_enrolled(config, enrolled_url))
    results += await check_cloud(config, enrolled_url)
    # Devices are independent of each other: check them at once, report them in order.
    devices: list[Awaitable[CheckResult]] = [
        asyncio.to_thread(check) for check in device_checks(config)
    ]
    results += await asyncio.gather(*devices)
    return results
