"""DNS-SD over mDNS (python-zeroconf): the agent's advertisement, device look-ups by name, and
``storelink-agent discover``.

- :class:`Discovery` owns one ``AsyncZeroconf`` for the agent process. The agent advertises its
  POS API as ``_storelink._tcp`` (TXT ``store``, ``api``) so POS terminals find it, and print
  workers resolve ``dnssd://`` printers through it before every connection (the RFID service
  opens one of its own for ``dnssd://`` readers, see agent/rfid/service.py).
- :func:`resolve_blocking` does the same look-up for the one-shot commands (``doctor``,
  ``print-test``), which run no event loop of their own (:func:`reachable_uri` for a printer,
  :func:`reader_address` for an RFID reader).
- :func:`browse` listens for receipt printers, LLRP readers and other agents for a few seconds;
  :func:`config_lines` turns what answered into TOML to paste (pure, no I/O).

Interfaces: the agent advertises where its API listens. An API on ``127.0.0.1`` (the default)
is advertised on loopback only, since nothing on the LAN could connect to it; a wildcard
``0.0.0.0`` listener is advertised on ``[discovery] interfaces`` (all IPv4 addresses when
empty). python-zeroconf binds its receiving socket to ``0.0.0.0:5353`` (multicast is
delivered to the group, not to an interface address) and joins the group only on the chosen
interfaces; it sends only through sockets bound to those addresses. Confined to loopback (the
tests, a one-host setup) we bind that receiver to the mDNS group address instead, so nothing
listens on other addresses: see :func:`open_zeroconf`.

Loopback: Linux delivers multicast sent with ``IP_MULTICAST_IF=127.0.0.1`` to group members on
``lo`` even when ``lo`` lacks the MULTICAST flag (checked on kernel 6.18), which is what the
tests use. On a kernel that does not, ``ip link set lo multicast on`` enables it.

Exceptions::

    DiscoveryError
     └── NotFound     no answer for a service name within the timeout
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import socket
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from urllib.parse import quote

import psutil  # type: ignore[import-untyped]  # no stubs installed here
from zeroconf import InterfaceChoice, IPVersion, ServiceInfo, ServiceStateChange, Zeroconf
from zeroconf._utils import net as zeroconf_net
from zeroconf.asyncio import AsyncServiceBrowser, AsyncServiceInfo, AsyncZeroconf

from agent.config import AgentConfig
from agent.configbase import split_host_port
from agent.rfid.config import ReaderConfig
from drivers.printer.uri import PrinterURI

log = logging.getLogger(__name__)

AGENT_SERVICE = "_storelink._tcp.local."
# Raw ESC/POS on TCP (port 9100): what receipt printers with a network card advertise.
PRINTER_RAW = "_pdl-datastream._tcp.local."
PRINTER_LPD = "_printer._tcp.local."
PRINTER_IPP = "_ipp._tcp.local."
# LLRP readers (port 5084): the type LLRP clients browse with Bonjour/JmDNS.
LLRP_READER = "_llrp._tcp.local."
BROWSED = (PRINTER_RAW, PRINTER_LPD, PRINTER_IPP, LLRP_READER, AGENT_SERVICE)
RAW_PRINTER_PORT = 9100
RESOLVE_MS = 1500
API_VERSION = "1"
MDNS_GROUP = "224.0.0.251"


class DiscoveryError(Exception):
    """A DNS-SD operation failed."""


class NotFound(DiscoveryError):
    """Nothing answered for a service name in time."""


def interface_choice(addresses: Sequence[str]) -> list[str] | InterfaceChoice:
    """What zeroconf should use: the given addresses, or every interface when empty."""
    return list(addresses) if addresses else InterfaceChoice.All


def _loopback_only(addresses: Sequence[str]) -> bool:
    try:
        return bool(addresses) and all(ipaddress.ip_address(a).is_loopback for a in addresses)
    except ValueError:
        return False


@contextlib.contextmanager
def _group_bound_receiver(addresses: Sequence[str]) -> Iterator[None]:
    """While zeroconf builds its sockets, bind its multicast receiver to the mDNS group.

    python-zeroconf 0.15x has no option for the receiver's address and always binds
    ``0.0.0.0:5353``. Bound to ``224.0.0.251:5353`` instead, the socket gets only mDNS multicast,
    and only on the interfaces that joined the group (loopback here). The swap lasts for the
    synchronous socket set-up in ``Zeroconf.__init__`` (``create_sockets``) and is undone at
    once; only loopback-only instances use it (a LAN agent also answers legacy unicast
    queries sent to port 5353, which a group-bound socket would not receive).
    """
    if not _loopback_only(addresses):
        yield
        return
    original = zeroconf_net.new_listen_socket

    def group_socket(
        ip_version: IPVersion = IPVersion.V4Only, apple_p2p: bool = False
    ) -> socket.socket | None:
        return zeroconf_net.new_socket(
            bind_addr=(MDNS_GROUP,), ip_version=ip_version, apple_p2p=apple_p2p
        )

    zeroconf_net.new_listen_socket = group_socket
    try:
        yield
    finally:
        zeroconf_net.new_listen_socket = original


def open_zeroconf(addresses: Sequence[str] = ()) -> Zeroconf:
    """A Zeroconf on these addresses (every interface when empty); see the module notes."""
    with _group_bound_receiver(addresses):
        return Zeroconf(interfaces=interface_choice(addresses))


def open_async_zeroconf(addresses: Sequence[str] = ()) -> AsyncZeroconf:
    """An AsyncZeroconf on these addresses (every interface when empty)."""
    with _group_bound_receiver(addresses):
        return AsyncZeroconf(interfaces=interface_choice(addresses))


def _listen_address(config: AgentConfig) -> str | None:
    """The API's listening address when it is one specific IP address."""
    host, _ = split_host_port(config.api.listen)
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return None  # a host name: advertise on the configured interfaces instead
    return None if address.is_unspecified else str(address)


def advertising_interfaces(config: AgentConfig) -> list[str]:
    """Where to advertise the agent: where its API listens ([] means every interface)."""
    address = _listen_address(config)
    return [address] if address else list(config.discovery.interfaces)


def advertised_addresses(config: AgentConfig) -> list[str]:
    """The addresses the agent's API is reachable on, as its advertisement names them."""
    address = _listen_address(config)
    if address:
        return [address]
    return list(config.discovery.interfaces) or _lan_addresses()


def _lan_addresses() -> list[str]:
    """This machine's IPv4 addresses other than loopback."""
    return sorted(
        {
            a.address
            for addrs in psutil.net_if_addrs().values()
            for a in addrs
            if a.family == socket.AF_INET and not ipaddress.ip_address(a.address).is_loopback
        }
    )


def _service_info(config: AgentConfig, addresses: Sequence[str]) -> ServiceInfo:
    _, port = split_host_port(config.api.listen)
    store = config.store.id
    return ServiceInfo(
        AGENT_SERVICE,
        f"storelink {store}.{AGENT_SERVICE}",
        port=port,
        properties={"store": store, "api": API_VERSION},
        server=f"storelink-{store.lower()}-{socket.gethostname().split('.')[0]}.local.",
        parsed_addresses=list(addresses),
    )


def _pick_address(info: ServiceInfo) -> str | None:
    """The first IPv4 address of a resolved service, else the first IPv6 one."""
    for version in (IPVersion.V4Only, IPVersion.V6Only):
        found = info.parsed_scoped_addresses(version)
        if found:
            return found[0]
    return None


def _service_type(name: str) -> str:
    """``X._pdl-datastream._tcp.local.`` → ``_pdl-datastream._tcp.local.``."""
    labels = name.rstrip(".").split(".")
    return ".".join(labels[-3:]) + "."


class Discovery:
    """The agent's zeroconf instance; ``async with`` opens and closes it."""

    def __init__(self, interfaces: Sequence[str] = ()) -> None:
        self._interfaces = list(interfaces)
        self._zc: AsyncZeroconf | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def zeroconf(self) -> AsyncZeroconf:
        """The open AsyncZeroconf."""
        if self._zc is None:
            raise DiscoveryError("discovery is not open")
        return self._zc

    async def __aenter__(self) -> Discovery:
        try:
            self._zc = open_async_zeroconf(self._interfaces)
        except OSError as err:
            raise DiscoveryError(
                f"cannot start mDNS on {self._interfaces or 'all'}: {err}"
            ) from err
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._zc is not None:
            zc, self._zc = self._zc, None
            # Sends goodbyes for what is advertised, so browsers drop it at once.
            await zc.async_close()

    def advertise(self, info: ServiceInfo) -> None:
        """Advertise a service; probing and announcing go on in the background."""
        task = asyncio.create_task(self._register(info), name=f"mdns-{info.name}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _register(self, info: ServiceInfo) -> None:
        try:
            # Two agents claiming one name (a copied data_dir, a test beside another) get
            # "storelink S001 (2)" rather than a failure: the TXT store id stays exact.
            announced = await self.zeroconf.async_register_service(info, allow_name_change=True)
            await announced
        except Exception as err:  # zeroconf raises several unrelated types here
            log.warning("cannot advertise %s over mDNS: %s", info.name, err)
            return
        log.info("advertising %s on port %d over mDNS", info.name, info.port)

    def advertise_agent(self, config: AgentConfig) -> None:
        """Advertise the agent's POS API as ``_storelink._tcp``."""
        self.advertise(_service_info(config, advertised_addresses(config)))

    async def resolve(self, service_name: str, timeout_s: float) -> tuple[str, int]:
        """Host and port of a DNS-SD service name; NotFound when nothing answers in time."""
        info = AsyncServiceInfo(_service_type(service_name), service_name)
        found = await info.async_request(self.zeroconf.zeroconf, timeout_s * 1000)
        address = _pick_address(info) if found else None
        if address is None or not info.port:
            raise NotFound(f"no answer for {service_name!r} within {timeout_s:g} s")
        return address, info.port


def resolve_blocking(
    service_name: str, interfaces: Sequence[str] = (), timeout_s: float = 3.0
) -> tuple[str, int]:
    """Host and port of a DNS-SD service name, for code without an event loop."""
    try:
        zc = open_zeroconf(interfaces)
    except OSError as err:
        raise DiscoveryError(f"cannot start mDNS: {err}") from err
    try:
        info = ServiceInfo(_service_type(service_name), service_name)
        found = info.request(zc, int(timeout_s * 1000))
        address = _pick_address(info) if found else None
    finally:
        zc.close()
    if address is None or not info.port:
        raise NotFound(f"no answer for {service_name!r} within {timeout_s:g} s")
    return address, info.port


def reachable_uri(uri: PrinterURI, interfaces: Sequence[str] = ()) -> PrinterURI:
    """A ``dnssd://`` printer's current socket address (an mDNS look-up); others as they are.

    Blocking, for the one-shot commands; DiscoveryError when the name does not resolve.
    """
    if uri.scheme != "dnssd":
        return uri
    return uri.at(*resolve_blocking(uri.service_name, interfaces))


def reader_address(
    reader: ReaderConfig, interfaces: Sequence[str] = (), timeout_s: float = 3.0
) -> tuple[str, int]:
    """An RFID reader's LLRP host and port; a ``dnssd://`` reader's looked up over mDNS.

    Blocking, for the one-shot commands; DiscoveryError when the name does not resolve.
    """
    name = reader.service_name
    if name is None:
        return reader.address
    return resolve_blocking(name, interfaces, timeout_s)


@dataclass(frozen=True, slots=True)
class Found:
    """A service that answered a browse."""

    service_type: str  # e.g. "_pdl-datastream._tcp.local."
    instance: str  # e.g. "TM-T88VI front"
    host: str | None
    port: int | None
    properties: dict[str, str] = field(default_factory=dict)


async def browse(
    interfaces: Sequence[str] = (),
    seconds: float = 5.0,
    types: Sequence[str] = BROWSED,
) -> list[Found]:
    """Everything of ``types`` that answers within ``seconds``, resolved, sorted by type/name."""
    names: set[tuple[str, str]] = set()

    def on_change(
        zeroconf: Zeroconf, service_type: str, name: str, state_change: ServiceStateChange
    ) -> None:
        if state_change is not ServiceStateChange.Removed:
            names.add((service_type, name))

    async with open_async_zeroconf(interfaces) as aiozc:
        browser = AsyncServiceBrowser(aiozc.zeroconf, list(types), handlers=[on_change])
        try:
            await asyncio.sleep(seconds)
        finally:
            await browser.async_cancel()
        infos = [AsyncServiceInfo(t, n) for t, n in sorted(names)]
        # What a browse found usually came with its address records: answered from cache.
        await asyncio.gather(*(i.async_request(aiozc.zeroconf, RESOLVE_MS) for i in infos))
    found = []
    for info in infos:
        suffix = "." + info.type
        instance = info.name[: -len(suffix)] if info.name.endswith(suffix) else info.name
        properties = {k: v or "" for k, v in info.decoded_properties.items()}
        found.append(Found(info.type, instance, _pick_address(info), info.port, properties))
    return found


def _toml_str(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'


def _config_name(instance: str) -> str:
    """A config name (letters, digits, - and _) made from an advertised instance name."""
    cleaned = "".join(c if c.isalnum() and c.isascii() else "-" for c in instance.lower())
    return "-".join(part for part in cleaned.split("-") if part)[:32] or "device"


def _host_port(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def config_lines(found: Sequence[Found]) -> list[str]:
    """Ready-to-paste agent config for what a browse found (comments for the rest)."""
    lines: list[str] = []
    raw = {f.instance for f in found if f.service_type == PRINTER_RAW}
    for f in found:
        name = _toml_str(_config_name(f.instance))
        where = _host_port(f.host, f.port) if f.host and f.port else None
        if f.service_type == PRINTER_RAW:
            lines += [f"# receipt printer {f.instance!r} (raw ESC/POS)", "[[printers]]"]
            lines.append(f"name = {name}")
            # By name: the agent resolves it on every connection and follows a new address.
            dnssd = f"dnssd://{quote(f.instance, safe='')}.{f.service_type.rstrip('.')}"
            lines.append(f"uri = {_toml_str(dnssd)}")
            if where:
                lines.append(f"# or by address: uri = {_toml_str('socket://' + where)}")
            lines.append("")
        elif f.service_type in (PRINTER_LPD, PRINTER_IPP) and f.instance not in raw:
            kind = "LPD" if f.service_type == PRINTER_LPD else "IPP"
            lines.append(f"# printer {f.instance!r} advertises {kind} only; if it speaks ESC/POS")
            if f.host:
                raw_at = _toml_str(f"socket://{_host_port(f.host, RAW_PRINTER_PORT)}")
                lines.append(
                    f"# on port {RAW_PRINTER_PORT}: [[printers]] name = {name} uri = {raw_at}"
                )
            lines.append("")
        elif f.service_type == LLRP_READER:
            lines += [f"# RFID reader {f.instance!r} (LLRP)", "[[rfid.readers]]"]
            lines.append(f"name = {name}")
            # By name, the agent looks the reader up before every connection and follows it.
            dnssd = _toml_str(f"dnssd://{quote(f.instance, safe='')}.{LLRP_READER.rstrip('.')}")
            if where:
                lines.append(f"host = {_toml_str(where)}")
                lines.append(f"# or by advertised name, followed to a new address: host = {dnssd}")
            else:
                lines.append(f"host = {dnssd}")
            lines.append('rooms = { "1" = "fitting-room-1" }   # antenna = room: edit')
            lines.append("")
        elif f.service_type == AGENT_SERVICE:
            store = f.properties.get("store", "?")
            api = f.properties.get("api", "?")
            at = f"http://{where}" if where else "(no address)"
            lines.append(f"# storelink agent of store {store} at {at} (API v{api})")
    if not found:
        lines.append("# nothing answered: check that devices are on this LAN and powered on")
    return lines
