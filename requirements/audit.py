"""Audit the service's pinned dependencies (requirements/service.lock) for known vulnerabilities
with pip-audit, as CI does (.ci/run).

Exit 1 if any pinned package has a known vulnerability. pip-audit asks a vulnerability service
(PyPI's JSON API by default) about each package; where that service cannot be reached (a closed
build network), pip-audit reports every package as "could not be audited" and finds nothing. That
is not a pass: this script says so loudly, in a banner, and exits 0 only so that an offline build
can still run its tests, unless DISCNODE_AUDIT_REQUIRED=1 (set it where the network is open).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

LOCK = Path(__file__).with_name("service.lock")


def main() -> int:
    run = subprocess.run(
        [sys.executable, "-m", "pip_audit", "-r", str(LOCK), "--require-hashes", "--disable-pip",
         "--format", "json", "--progress-spinner", "off"],
        capture_output=True, text=True)
    try:
        report = json.loads(run.stdout)["dependencies"]
    except (ValueError, KeyError):
        print(f"pip-audit failed: {run.stderr.strip()[-500:]}", file=sys.stderr)
        return 1
    vulnerable = [d for d in report if d.get("vulns")]
    skipped = [d for d in report if "skip_reason" in d]
    audited = len(report) - len(skipped)
    for d in vulnerable:
        for v in d["vulns"]:
            fixed = ", ".join(v.get("fix_versions") or []) or "no fixed release"
            print(f"VULNERABLE {d['name']} {d['version']}: {v['id']} (fixed in {fixed})")
    print(f"dependency audit: {len(report)} pinned packages, {audited} audited, "
          f"{len(vulnerable)} vulnerable, {len(skipped)} not audited")
    if vulnerable:
        return 1
    if skipped:
        print("=" * 78)
        print(f"NOT AUDITED: {len(skipped)} packages could not be checked; no vulnerability service "
              "is reachable from here.\nRun `python requirements/audit.py` where PyPI's API is reachable "
              "before installing or upgrading a node.")
        print("=" * 78)
        return 1 if os.environ.get("DISCNODE_AUDIT_REQUIRED") == "1" else 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
