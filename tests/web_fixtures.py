"""A small network with a running web Dataview, for the web tests (HTTP-level and in Chromium).

Node A is "us": its local API (Unix socket) and web UI run on the nodes' event loop beside its peer
API, as `discnode serve` runs them. B shares with A (one of B's profiles is named `<script>`), C
has offered to share and waits for A's answer, and A holds its own profiles with photos.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from discnode import localapi
from discnode.synthetic import portrait
from tests.nodes import Network, Node

HOSTILE = '<script>alert("owned")</script>'


@dataclass
class WebNet:
    a: Node
    b: Node
    c: Node
    running: localapi.Running
    ui: localapi.UI
    network: Network

    def login_url(self, account: str = "Sam Tester") -> str:
        return self.ui.login_url(account)

    @property
    def origin(self) -> str:
        return self.ui.origin


def add_people(node: Node, tmp: Path, people: list[tuple[str, str, str, str]], seed: int) -> None:
    for i, (first, last, gender, build) in enumerate(people):
        photo = tmp / f"{node.name}-{i}.jpg"
        photo.write_bytes(portrait(seed + i))
        node.cli("profile", "add", "--first-name", first, "--last-name", last, "--gender", gender,
                 "--ethnicity", "IC1" if i % 2 else "IC3", "--build", build,
                 "--tag", "shoplifting" if i % 3 else "violence", "--image", str(photo))

def build(network: Network, tmp: Path, *, a_people: int = 6, b_people: int = 60) -> WebNet:
    a, b, c = network.node("A"), network.node("B"), network.node("C")
    network.agree(b, a)  # B offers, A accepts
    c.cli("peer", "add", a.url, "--expect", a.node_id, "--purpose", f"Tackling shop theft {HOSTILE}")
    add_people(a, tmp, [(f"Alma{i}", "Ourown", ("female", "male")[i % 2], "slim") for i in range(a_people)], 100)
    people = [(f"Bob{i:02d}", "Partner", ("male", "female")[i % 3 == 0], ("medium", "heavy")[i % 4 == 0])
              for i in range(b_people - 1)]
    people.append((HOSTILE, HOSTILE, "male", "slim"))
    add_people(b, tmp, people, 500)
    assert a.home is not None
    running = network.loop.run(localapi.start(a.home))
    ui = network.loop.run(running.local.start_ui())
    return WebNet(a, b, c, running, ui, network)


def stop(net: WebNet) -> None:
    net.network.loop.run(net.running.stop())


def get(net: WebNet, path: str, **kw: Any) -> Any:
    """An HTTP request to the UI from the test thread (aiohttp on the nodes' loop)."""
    import aiohttp

    jar = kw.pop("jar", None)

    async def go() -> tuple[int, dict[str, str], bytes]:
        async with aiohttp.ClientSession(cookie_jar=jar if jar is not None else aiohttp.DummyCookieJar()) as s:
            async with s.request(kw.pop("method", "GET"), net.origin + path, allow_redirects=False, **kw) as r:
                return r.status, dict(r.headers), await r.read()
    return net.network.loop.run(go())
