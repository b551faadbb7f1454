"""A partner's image hashes become file names (profile show --save-images) and URLs (the web
Dataview): a reply naming anything but 64 lowercase hex digits is refused whole. A hostile peer here is a real aiohttp
server with the partner's own TLS identity, serving a genuine signed record with a hostile list."""

from __future__ import annotations

from aiohttp import web

from discnode import store
from discnode.server import tls_context


def test_image_names_that_are_not_sha256_are_refused(network, tmp_path):
    a, b = network.node("A"), network.node("B")
    network.agree(a, b)
    profile_id = b.cli("profile", "add", "--first-name", "Real", "--last-name", "Record", "--json").json["id"]
    record = store.get_profile(b.home.db, profile_id)
    port, home = b.running.port, b.home
    b.stop()
    escape = ("../" * 21 + "x")[:64]  # 64 characters, like a hash, but a path out of the folder
    assert len(escape) == 64

    async def hostile() -> web.AppRunner:
        async def profile(request: web.Request) -> web.Response:
            return web.json_response({"record": record, "images": [escape, "AB" * 32]})
        app = web.Application()
        app.router.add_get("/v1/profiles/{id}", profile)
        runner = web.AppRunner(app)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port, ssl_context=tls_context(home)).start()
        return runner
    runner = network.loop.run(hostile())
    try:
        saved = tmp_path / "saved"
        r = a.cli("profile", "show", f"{b.node_id}:{profile_id}", "--save-images", str(saved), ok=False)
        # The whole reply is refused (protocol section 8.2), in one line, and nothing is written.
        assert "breaks the protocol" in r.err and len(r.err.strip().splitlines()) == 1
        assert not saved.exists()
    finally:
        network.loop.run(runner.cleanup())
        home.close()
