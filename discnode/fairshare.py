"""Fair shares of the node's work between partners.

A partner within its rate limit can still send more than the node can serve (200 requests/s is more
than two cores answer); served first come, first served, its requests queue in front of everyone
else's. Instead, at most `slots` requests are served at once, and a request that finds them taken
waits in its own partner's queue; each freed slot goes to the next partner in turn (round robin).
A partner with many requests waiting gets one turn per round like a partner with one, and past
`depth` waiting requests its next one is refused with 429 and Retry-After. Pure asyncio, no I/O.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict, deque
from types import TracebackType

from .errors import RateLimited

#: Seconds a refused partner is asked to wait before trying again.
RETRY_AFTER = 1


class FairShare:
    def __init__(self, slots: int, depth: int) -> None:
        if slots < 1 or depth < 0:
            raise ValueError("slots must be at least 1 and depth at least 0")
        self.slots, self.depth = slots, depth
        self.running = 0
        self.waiting: OrderedDict[str, deque[asyncio.Future[None]]] = OrderedDict()

    def claim(self, peer: str) -> "Turn":
        """A turn for `peer` to be awaited with `async with`, or RateLimited at once when its queue
        is full (raised here, before any waiting, so that the caller can refuse and audit it)."""
        if self.running < self.slots and not self.waiting:
            self.running += 1
            return Turn(self, None)
        queue = self.waiting.get(peer)
        if queue is not None and len(queue) >= self.depth or queue is None and self.depth == 0:
            raise RateLimited("over this partner's share of the node; try again shortly", retry_after=RETRY_AFTER)
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.waiting.setdefault(peer, deque()).append(future)
        return Turn(self, future)

    def release(self) -> None:
        """Hand the freed slot to the next partner in turn, or give it back."""
        while self.waiting:
            peer, queue = next(iter(self.waiting.items()))
            future = queue.popleft()
            if queue:
                self.waiting.move_to_end(peer)
            else:
                del self.waiting[peer]
            if not future.done():  # a waiter that gave up (its client went away) is skipped
                future.set_result(None)
                return
        self.running -= 1

    def _abandon(self, future: asyncio.Future[None]) -> None:
        for peer, queue in list(self.waiting.items()):
            if future in queue:
                queue.remove(future)
                if not queue:
                    del self.waiting[peer]


class Turn:
    def __init__(self, share: FairShare, future: asyncio.Future[None] | None) -> None:
        self.share, self.future = share, future

    async def __aenter__(self) -> None:
        if self.future is None:
            return
        try:
            await self.future
        except asyncio.CancelledError:
            if self.future.done() and not self.future.cancelled():
                self.share.release()  # the slot was handed over just as the waiter left
            else:
                self.share._abandon(self.future)
            raise

    async def __aexit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        self.share.release()
