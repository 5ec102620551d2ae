"""Building blocks of the agent's configuration models, shared by the device sections.

Kept free of heavy imports: the sync daemon loads the same file and never opens a device.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field


class Strict(BaseModel):
    """A config section: unknown keys are errors, values are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)


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


HostPort = Annotated[str, AfterValidator(_host_port)]
Identifier = Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{1,32}$")]
