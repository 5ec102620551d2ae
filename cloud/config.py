"""The cloud's TOML configuration, validated before anything touches the disk or the network.

Unknown keys are errors and every error names its key, e.g.
``cloud.toml: server.listne: unknown key``. Loading only reads the file: the data directory is
created later, by whoever opens the database.

Exceptions::

    Exception
     └── ConfigError   missing, unreadable, not TOML, or invalid
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError


class ConfigError(Exception):
    """The configuration file is missing, unreadable or invalid."""


def split_host_port(value: str) -> tuple[str, int]:
    """Split ``host:port`` (or ``[v6]:port``) into its parts, checking the port range."""
    host, sep, port_text = value.rpartition(":")
    if not sep or not host or not port_text.isdigit():
        raise ValueError(f"expected HOST:PORT, got {value!r}")
    port = int(port_text)
    if not 0 < port < 65536:
        raise ValueError(f"port {port} is out of range 1-65535")
    return host.strip("[]"), port


def _host_port(value: str) -> str:
    split_host_port(value)
    return value


def _http_url(value: str) -> str:
    if not value.startswith(("http://", "https://")) or len(value) < 10:
        raise ValueError(f"expected an http:// or https:// URL, got {value!r}")
    return value.rstrip("/")


def _database_url(value: str) -> str:
    if value.startswith("postgresql://"):
        # asyncpg is the one PostgreSQL driver we ship; spare the user the dialect+driver form.
        return "postgresql+asyncpg://" + value.removeprefix("postgresql://")
    if not value.startswith("postgresql+asyncpg://"):
        raise ValueError("expected a postgresql:// URL (omit [database] for embedded SQLite)")
    return value


HostPort = Annotated[str, AfterValidator(_host_port)]
HttpUrl = Annotated[str, AfterValidator(_http_url)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)


class ServerConfig(_Strict):
    """``[server]``: where the API listens and what URL receipts point at."""

    listen: HostPort
    public_url: HttpUrl
    data_dir: Path


class DatabaseConfig(_Strict):
    """``[database]``: a PostgreSQL URL; without it the cloud uses embedded SQLite."""

    url: Annotated[str, AfterValidator(_database_url)]


class SecurityConfig(_Strict):
    """``[security]``: signature clock skew and enrollment token lifetime."""

    clock_skew_s: int = Field(default=300, ge=5, le=3600)
    enrollment_ttl_hours: int = Field(default=72, ge=1, le=24 * 365)


class TryonsConfig(_Strict):
    """``[tryons]``: how long after a try-on ends a sale of its SKU still converts it."""

    conversion_window_minutes: int = Field(default=120, ge=1, le=7 * 24 * 60)


class CloudConfig(_Strict):
    """The whole cloud.toml."""

    server: ServerConfig
    database: DatabaseConfig | None = None
    security: SecurityConfig = SecurityConfig()
    tryons: TryonsConfig = TryonsConfig()

    @property
    def listen(self) -> tuple[str, int]:
        """(host, port) to bind."""
        return split_host_port(self.server.listen)


def _field_path(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part)
    return out or "(top level)"


def _describe(source: str, err: ValidationError) -> str:
    problems = []
    for error in err.errors(include_url=False):
        path = _field_path(error["loc"])
        if error["type"] == "extra_forbidden":
            message = "unknown key"
        elif error["type"] == "missing":
            message = "missing"
        else:
            message = error["msg"].removeprefix("Value error, ")
        problems.append(f"{source}: {path}: {message}")
    return "; ".join(problems)


def parse_config(text: str, source: str = "cloud.toml") -> CloudConfig:
    """Validate TOML text; ``source`` names the file in error messages."""
    try:
        data: dict[str, Any] = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{source}: not valid TOML: {err}") from err
    try:
        return CloudConfig.model_validate(data)
    except ValidationError as err:
        raise ConfigError(_describe(source, err)) from err


def load_config(path: Path) -> CloudConfig:
    """Read and validate a config file (blocking: call before the loop or in a thread)."""
    try:
        text = path.read_text("utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"{path}: cannot read: {err}") from err
    return parse_config(text, str(path))
