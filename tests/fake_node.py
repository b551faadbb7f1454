"""A node impostor for tests: advertises a real node's ID over mDNS, but serves that node's
descriptor with its address changed and the signature left as it was (so it does not verify)."""

import asyncio
import sys
from pathlib import Path

from aiohttp import web

from discnode.discovery import Advertiser, plan_for
from discnode.home import DESCRIPTOR_PATH, Home
from discnode.server import tls_context


async def main(home_path: str, port: int) -> None:
    home = Home.open(Path(home_path))
    descriptor = home.descriptor()
    descriptor["url"] = f"https://{home.config.host}:{port}"  # changed after signing

    async def serve_descriptor(request: web.Request) -> web.Response:
        return web.json_response(descriptor)

    app = web.Application()
    app.router.add_get(DESCRIPTOR_PATH, serve_descriptor)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, home.config.host, port, ssl_context=tls_context(home)).start()
    plan = plan_for(home)
    assert plan is not None, "the impostor needs a non-loopback address"
    advertiser = Advertiser(home, port, plan)
    await advertiser.start()
    print("serving fake descriptor", flush=True)
    try:
        await asyncio.sleep(3600)
    finally:
        await advertiser.stop()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2])))
