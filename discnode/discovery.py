"""Finding nodes on the local network with mDNS / DNS-SD (zeroconf). Addresses only, never trust:
a discovered node is still checked against the node ID its administrator gave out of band, and
against its signed descriptor."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from dataclasses import dataclass
from typing import Any

from zeroconf import IPVersion, ServiceStateChange, Zeroconf
from zeroconf.asyncio import AsyncServiceBrowser, AsyncServiceInfo, AsyncZeroconf

from .home import DESCRIPTOR_PATH, Home
from .identity import parse_node_id
from .errors import InvalidInput
from .untrusted import peer_url

SERVICE_TYPE = "_discnode._tcp.local."
BROWSE_SECONDS = 3.0


@dataclass(frozen=True)
class Seen:
    node_id: str
    name: str
    address: str
    port: int
    path: str

    @property
    def url(self) -> str:
        host = f"[{self.address}]" if ":" in self.address else self.address
        return f"https://{host}:{self.port}"


@dataclass(frozen=True)
class Plan:
    """Where to announce: the interfaces (by address, or all) and the addresses to announce."""

    interfaces: list[str] | None  # None: every interface
    addresses: list[str]


def announce_plan(host: str, local_ipv4: list[str]) -> Plan | None:
    """Announce only where the node listens: a node on 0.0.0.0 on every interface with each of its
    addresses; a node on one address only on that address's interface, with that address; a node
    on loopback (or on IPv6 alone: this advertisement is IPv4) not at all (None). Pure: the
    caller resolves names and lists the machine's addresses."""
    ip = ipaddress.ip_address(host)
    if ip.is_unspecified:
        return Plan(None, list(local_ipv4)) if local_ipv4 else None
    if ip.is_loopback or ip.version != 4:
        return None
    return Plan([str(ip)], [str(ip)])


def plan_for(home: Home) -> Plan | None:
    host = home.config.host
    try:
        ipaddress.ip_address(host)
    except ValueError:
        try:
            host = socket.gethostbyname(host)
        except OSError:
            return None
    return announce_plan(host, _local_ipv4())


def _local_ipv4() -> list[str]:
    import ifaddr  # zeroconf depends on it
    out = []
    for adapter in ifaddr.get_adapters():
        for ip in adapter.ips:
            if isinstance(ip.ip, str) and not ip.ip.startswith("127."):
                out.append(ip.ip)
    return out


def _interfaces() -> Any:
    from zeroconf import InterfaceChoice
    return InterfaceChoice.All


class Advertiser:
    """Announces this node as <node id>._discnode._tcp.local. with its node ID in TXT, on the
    interfaces of `plan` only."""

    def __init__(self, home: Home, port: int, plan: Plan) -> None:
        self.home = home
        self.port = port
        self.plan = plan
        self.azc: AsyncZeroconf | None = None
        label = home.node_id.replace("-", "").lower()
        self.info = AsyncServiceInfo(
            SERVICE_TYPE, f"{label}.{SERVICE_TYPE}",
            addresses=[socket.inet_aton(a) for a in plan.addresses], port=port,
            properties={"node_id": home.node_id, "path": DESCRIPTOR_PATH, "name": home.config.name[:60], "v": "1"},
            server=f"{label}.local.",
        )

    async def start(self) -> None:
        interfaces = _interfaces() if self.plan.interfaces is None else self.plan.interfaces
        self.azc = AsyncZeroconf(interfaces=interfaces, ip_version=IPVersion.V4Only)
        await self.azc.async_register_service(self.info, allow_name_change=False)

    async def stop(self) -> None:
        if self.azc is not None:
            await self.azc.async_unregister_service(self.info)
            await self.azc.async_close()
            self.azc = None


def _decode(info: AsyncServiceInfo) -> Seen | None:
    props = {k.decode(): (v or b"").decode("utf-8", "replace") for k, v in (info.properties or {}).items()}
    try:
        node_id = parse_node_id(props.get("node_id", ""))
    except InvalidInput:
        return None
    addresses = info.parsed_addresses(IPVersion.V4Only)
    if not addresses or not info.port:
        return None
    seen = Seen(node_id, props.get("name", "")[:100], addresses[0], info.port, props.get("path", DESCRIPTOR_PATH))
    try:
        peer_url(seen.url, "discovered address")
    except InvalidInput:
        return None
    return seen


async def browse(seconds: float = BROWSE_SECONDS) -> list[Seen]:
    """Listen for nodes for `seconds`; return each one seen (by node ID), with its address."""
    azc = AsyncZeroconf(interfaces=_interfaces(), ip_version=IPVersion.V4Only)
    names: set[str] = set()

    def on_change(zeroconf: Zeroconf, service_type: str, name: str, state_change: ServiceStateChange) -> None:
        if state_change in (ServiceStateChange.Added, ServiceStateChange.Updated):
            names.add(name)

    browser = AsyncServiceBrowser(azc.zeroconf, [SERVICE_TYPE], handlers=[on_change])
    try:
        await asyncio.sleep(seconds)
        found: dict[str, Seen] = {}
        for name in sorted(names):
            info = AsyncServiceInfo(SERVICE_TYPE, name)
            if await info.async_request(azc.zeroconf, 1500):
                seen = _decode(info)
                if seen:
                    found[seen.node_id] = seen
        return sorted(found.values(), key=lambda s: (s.name, s.node_id))
    finally:
        await browser.async_cancel()
        await azc.async_close()
