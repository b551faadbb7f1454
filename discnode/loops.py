"""Which event loop runs the node: uvloop where it is installed, asyncio's own otherwise.

uvloop (libuv under the asyncio API) spends less CPU per request than asyncio's loop: its transports,
TLS and callbacks are compiled. Measured on a node serving signed queries and on the searching side
(benchmarks/README.md). It is a dependency on Linux and macOS only (pyproject.toml); elsewhere, or with
`DISCNODE_EVENT_LOOP=asyncio` in the environment (a way back if uvloop misbehaves on a machine), the
node runs on asyncio's loop, which the tests also cover (tests/test_limits.py runs the connection
guard on both).
"""

from __future__ import annotations

import asyncio
import os
from typing import Any, Callable, Coroutine, TypeVar

T = TypeVar("T")

#: The environment variable that chooses the loop: "uvloop" (the default where installed) or "asyncio".
ENV = "DISCNODE_EVENT_LOOP"
KINDS = ("uvloop", "asyncio")


def kind() -> str:
    """The loop this process uses: "uvloop" unless asked for asyncio's or uvloop is not installed."""
    if os.environ.get(ENV, "").strip().lower() == "asyncio":
        return "asyncio"
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return "asyncio"
    return "uvloop"


def running_kind() -> str:
    """The kind of the loop running this code (for the daemon's start-up line)."""
    return "uvloop" if type(asyncio.get_running_loop()).__module__.startswith("uvloop") else "asyncio"


def factory(which: str | None = None) -> Callable[[], asyncio.AbstractEventLoop]:
    """A function that makes a new loop of `which` kind (default: `kind()`)."""
    if (which or kind()) == "uvloop":
        import uvloop
        return uvloop.new_event_loop
    return asyncio.new_event_loop


def new_event_loop(which: str | None = None) -> asyncio.AbstractEventLoop:
    return factory(which)()


def run(coro: Coroutine[Any, Any, T], which: str | None = None) -> T:
    """asyncio.run on the chosen loop."""
    with asyncio.Runner(loop_factory=factory(which)) as runner:
        return runner.run(coro)
