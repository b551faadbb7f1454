"""The web Dataview's first page, as the browser gets it, at 30 and at 100 partnerships.

    python benchmarks/web.py                 # 30 and 100 partnerships x 600 profiles
    python benchmarks/web.py --fast          # a small network (the test suite runs this)

Each hub runs `discnode serve`; the benchmark logs in through `discnode ui` like an administrator
and times GET /dataview: the HTML of the first 50 faces, with the facet counts computed afresh at
every partnership (one count query each, pushed down like the filters) and the page's query, not
counting the thumbnails the browser fetches afterwards. Beside it, in the same run: the same page's
`.json` twin, and one thumbnail of a partner's face through the UI. The baseline is `discnode
profile list` (a whole command) on one central database holding the same profiles.
"""

from __future__ import annotations

import argparse
import datetime as dt
import http.cookiejar
import json
import platform
import re
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import localnet  # noqa: E402
from localnet import DISCNODE, command_ms, pct  # noqa: E402


def opener_for(hub: Path) -> tuple[urllib.request.OpenerDirector, str]:
    url = json.loads(subprocess.run([DISCNODE, "--home", str(hub), "ui", "--json"], check=True,
                                    capture_output=True).stdout)["url"]
    jar = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    opener.open(url).read()
    return opener, url.split("/login")[0]


def page_ms(opener: urllib.request.OpenerDirector, url: str, runs: int) -> tuple[list[float], bytes]:
    out, body = [], b""
    for _ in range(runs):
        started = time.perf_counter()
        with opener.open(url) as reply:
            body = reply.read()
        out.append((time.perf_counter() - started) * 1000)
    return out, body


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=30)
    parser.add_argument("--more", type=int, default=100, help="the larger network's partnerships")
    parser.add_argument("--profiles", type=int, default=600)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--fast", action="store_true")
    parser.add_argument("--out", type=Path, default=localnet.ROOT / "benchmarks" / "results" / "web.json")
    args = parser.parse_args(argv)
    if args.fast:
        args.nodes, args.more, args.profiles, args.runs = 2, 3, 20, 3
    # At least 3 runs behind a measured p50; fast mode's figures are never read, so 1 will do there.
    least = 1 if args.fast else 3
    rows: list[dict[str, object]] = []

    def record(name: str, times: list[float], note: str = "") -> float:
        p50 = pct(times, 50)
        rows.append({"name": name, "runs": len(times), "p50_ms": round(p50, 1), "p95_ms": round(pct(times, 95), 1),
                     "note": note})
        print(f"  {name}: p50 {p50:.0f} ms over {len(times)} (load {localnet.load()})", flush=True)
        return p50

    with tempfile.TemporaryDirectory(prefix="discnode-web-bench-") as tmp:
        with localnet.running(Path(tmp), args.nodes, args.more, args.profiles, quiet=not args.fast) as net:
            figures = {}
            for label, hub, n in (("small", net.hub_small, args.nodes), ("all", net.hub_all, args.more)):
                opener, origin = opener_for(hub)
                page_ms(opener, origin + "/dataview", 2)  # the first use loads the pages and warms connections
                times, html = page_ms(opener, origin + "/dataview", args.runs)
                faces = html.count(b'class="card"')
                figures[n] = record(f"web Dataview first page, {n} partnerships (HTML)", times,
                                    f"{faces} faces; facet counts from every partnership")
                record(f"its .json twin, {n} partnerships", page_ms(opener, origin + "/dataview.json", args.runs)[0])
                thumb = re.search(rb'src="(/thumb/[^"]+)"', html[html.index(b"Partnership 0"):] if b"Partnership 0"
                                  in html else html)
                if thumb:
                    record(f"one partner's thumbnail via the UI, {n} partnerships (first fetch)",
                           page_ms(opener, origin + thumb.group(1).decode(), 1)[0])
            central = record("profile list, one central database (whole command)", command_ms(
                ["--home", str(net.central), "profile", "list"], max(least, args.runs // 2)),
                f"{args.nodes * args.profiles:,} profiles in one SQLite file")
    report = {
        "when": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": {"python": platform.python_version(), "load_at_end": localnet.load()},
        "network": {"partnerships": [args.nodes, args.more], "profiles_per_partnership": args.profiles},
        "rows": rows,
        "ratios": {f"web_{n}_vs_central_profile_list": round(v / central, 3) for n, v in figures.items()},
        "command": "python benchmarks/web.py " + " ".join(argv if argv is not None else sys.argv[1:]),
    }
    print(f"\nweb Dataview first page (ms), {args.profiles} profiles per partnership")
    print(f"{'what':<72} {'runs':>4} {'p50':>8} {'p95':>8}")
    for r in rows:
        print(f"{r['name']:<72} {r['runs']:>4} {r['p50_ms']:>8} {r['p95_ms']:>8}")
    print(f"ratios: {report['ratios']}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"JSON: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
