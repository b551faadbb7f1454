"""Listens for discnode announcements on one interface only (given by its address) and prints
{node ID: [announced addresses]} as JSON: what a machine on that network segment would hear."""

import asyncio
import json
import sys

from zeroconf import IPVersion, ServiceStateChange, Zeroconf
from zeroconf.asyncio import AsyncServiceBrowser, AsyncServiceInfo, AsyncZeroconf

from discnode.discovery import SERVICE_TYPE


async def main(interface: str, seconds: float) -> dict[str, list[str]]:
    azc = AsyncZeroconf(interfaces=[interface], ip_version=IPVersion.V4Only)
    names: set[str] = set()

    def on_change(zeroconf: Zeroconf, service_type: str, name: str, state_change: ServiceStateChange) -> None:
        if state_change in (ServiceStateChange.Added, ServiceStateChange.Updated):
            names.add(name)

    browser = AsyncServiceBrowser(azc.zeroconf, [SERVICE_TYPE], handlers=[on_change])
    try:
        await asyncio.sleep(seconds)
        heard: dict[str, list[str]] = {}
        for name in sorted(names):
            info = AsyncServiceInfo(SERVICE_TYPE, name)
            if await info.async_request(azc.zeroconf, 1500):
                node_id = (info.properties or {}).get(b"node_id", b"").decode()
                heard[node_id] = sorted(info.parsed_addresses(IPVersion.V4Only))
        return heard
    finally:
        await browser.async_cancel()
        await azc.async_close()


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main(sys.argv[1], float(sys.argv[2])))))
