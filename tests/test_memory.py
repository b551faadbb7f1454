"""memory.release gives freed heap back to the system (glibc's malloc_trim), as a serving node does
after start-up and after each round of its delivery thread."""

from pathlib import Path

from discnode import memory


def _rss_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def test_freed_heap_in_the_middle_of_the_heap_goes_back_to_the_system():
    # 64 MB in 4 kB blocks (malloc's, not Python's small-object arenas), every 32nd kept: the
    # free space is in holes below live blocks, which free() alone never returns.
    blocks = [bytes(4096) + bytes([i % 256]) for i in range(16_000)]
    kept = blocks[::32]
    del blocks
    before = _rss_kib()
    assert memory.release() is True
    after = _rss_kib()
    assert before - after > 20_000, f"released only {before - after} KiB of ~62 MB freed"
    assert len(kept) == 500
