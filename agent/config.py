"""The agent's TOML configuration (shared with the sync daemon), validated before anything runs.

Unknown keys are errors, and every error names the key it is about, e.g.
``agent.toml: printers[0].uri: unsupported printer URI scheme 'ftp' (...)``.
"""

from __future__ import annotations

import ipaddress
import tomllib
from pathlib import Path
from typing import Annotated, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    AfterValidator,
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from agent.camera.config import CameraConfig
from agent.configbase import HostPort, Identifier, Strict, split_host_port
from agent.rfid.config import RfidConfig
from agent.validation import describe
from agent.wifi.config import WifiConfig
from drivers.printer.errors import InvalidPrinterURI
from drivers.printer.uri import PrinterURI, parse_printer_uri


class ConfigError(Exception):
    """The configuration file is missing, unreadable or invalid."""


def _http_url(value: str) -> str:
    if not value.startswith(("http://", "https://")) or len(value) < 10:
        raise ValueError(f"expected an http:// or https:// URL, got {value!r}")
    return value.rstrip("/")


HttpUrl = Annotated[str, AfterValidator(_http_url)]


class StoreConfig(Strict):
    id: Identifier
    data_dir: Path
    name: str = ""
    address: tuple[str, ...] = ()
    timezone: str = "UTC"

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as err:
            raise ValueError(f"unknown time zone {value!r} (use an IANA name)") from err
        return value


class ApiConfig(Strict):
    listen: HostPort = "127.0.0.1:8380"
    key: SecretStr = Field(min_length=8)
    max_body_bytes: int = Field(default=256 * 1024, ge=1024, le=16 * 1024 * 1024)


class CloudConfig(Strict):
    url: HttpUrl


def _optional_host_port(value: str) -> str:
    if value:
        split_host_port(value)
    return value


class SyncConfig(Strict):
    # The sync daemon's GET /metrics; "" turns it off. Loopback: a scraper runs on the PC
    # or reaches it through a tunnel, the LAN never sees it.
    metrics_listen: Annotated[str, AfterValidator(_optional_host_port)] = "127.0.0.1:8381"


class PrinterConfig(Strict):
    name: Identifier
    uri: str
    # A python-escpos profile name: it fixes paper width, native QR support, GB18030.
    profile: str = "TM-T88V"
    gb18030: bool | None = None
    native_qr: bool | None = None
    # Registers whose receipts this printer prints; the first printer takes all others.
    registers: tuple[str, ...] = ()
    timeout_s: float = Field(default=5.0, gt=0, le=60)

    @field_validator("uri")
    @classmethod
    def _valid_uri(cls, value: str) -> str:
        try:
            parse_printer_uri(value)
        except InvalidPrinterURI as err:
            raise ValueError(str(err)) from err
        return value

    @field_validator("profile")
    @classmethod
    def _known_profile(cls, value: str, info: ValidationInfo) -> str:
        # Checking a name loads the renderer (python-escpos, Pillow): the sync daemon, which
        # never prints, skips it to stay small.
        if (info.context or {}).get("printer_profiles", True):
            from agent.receipt import paper_profile

            paper_profile(value)
        return value

    @property
    def parsed_uri(self) -> PrinterURI:
        """The printer URI, parsed."""
        return parse_printer_uri(self.uri)


def _ip_address(value: str) -> str:
    try:
        ipaddress.ip_address(value)
    except ValueError as err:
        raise ValueError(f"expected an IP address of this machine, got {value!r}") from err
    return value


class DiscoveryConfig(Strict):
    # mDNS/DNS-SD: the agent advertises itself as _storelink._tcp, and dnssd:// printers are
    # resolved by name. ``interfaces`` lists the addresses to use; empty means all of them.
    advertise: bool = True
    interfaces: tuple[Annotated[str, AfterValidator(_ip_address)], ...] = ()
    resolve_timeout_s: float = Field(default=3.0, gt=0, le=30)


class OutboxConfig(Strict):
    # Events the cloud acknowledged are deleted this many days later (sale events never).
    retention_days: int = Field(default=30, ge=1, le=3650)


class ReceiptConfig(Strict):
    footer: str | None = Field(default=None, max_length=500)
    cjk_font: Path | None = None


class AgentConfig(Strict):
    store: StoreConfig
    api: ApiConfig
    cloud: CloudConfig
    printers: tuple[PrinterConfig, ...] = ()
    receipt: ReceiptConfig = ReceiptConfig()
    discovery: DiscoveryConfig = DiscoveryConfig()
    outbox: OutboxConfig = OutboxConfig()
    rfid: RfidConfig = RfidConfig()
    wifi: WifiConfig = WifiConfig()
    camera: CameraConfig = CameraConfig()
    sync: SyncConfig = SyncConfig()

    @model_validator(mode="after")
    def _unique_printers(self) -> AgentConfig:
        seen: set[str] = set()
        for printer in self.printers:
            if printer.name in seen:
                raise ValueError(f"printer name {printer.name!r} is used twice")
            seen.add(printer.name)
        return self

    def printer_for(self, register_id: str) -> PrinterConfig | None:
        """The printer that prints receipts of this register (the first one by default)."""
        for printer in self.printers:
            if register_id in printer.registers:
                return printer
        return self.printers[0] if self.printers else None


def parse_config(
    data: dict[str, Any], source: str = "config", *, printer_profiles: bool = True
) -> AgentConfig:
    """Validate an already-parsed TOML document (printer profile names unless told not to)."""
    try:
        return AgentConfig.model_validate(data, context={"printer_profiles": printer_profiles})
    except ValidationError as err:
        lines = [
            f"{source}: {p.field}: {'unknown key' if p.message == 'unknown field' else p.message}"
            for p in describe(err)
        ]
        raise ConfigError("\n".join(lines)) from err


def load_config(path: Path, *, printer_profiles: bool = True) -> AgentConfig:
    """Read and validate the agent config file; touches nothing else on disk."""
    try:
        data = tomllib.loads(path.read_text("utf-8"))
    except FileNotFoundError as err:
        raise ConfigError(f"{path}: no such file") from err
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"{path}: cannot read: {err}") from err
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{path}: not valid TOML: {err}") from err
    return parse_config(data, str(path), printer_profiles=printer_profiles)
