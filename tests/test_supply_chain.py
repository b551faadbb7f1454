"""The service's lock file (requirements/service.lock) pins everything the node needs, by hash."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
LOCK = ROOT / "requirements" / "service.lock"


def _locked() -> dict[str, tuple[str, list[str]]]:
    """name -> (version, hashes) from a pip-compile --generate-hashes file."""
    out: dict[str, tuple[str, list[str]]] = {}
    for block in re.split(r"\n(?=[A-Za-z0-9])", LOCK.read_text()):
        first = block.split("\\", 1)[0].strip()
        if not first or first.startswith("#"):
            continue
        name, _, version = first.partition("==")
        assert version, f"not pinned with ==: {first!r}"
        version = version.split(";", 1)[0]  # an environment marker (uvloop: not on Windows)
        out[canonicalize_name(name)] = (version.strip(), re.findall(r"--hash=sha256:([0-9a-f]{64})", block))
    return out


def test_every_locked_package_is_pinned_to_one_version_with_hashes():
    locked = _locked()
    assert len(locked) >= 20
    for name, (version, hashes) in locked.items():
        assert re.fullmatch(r"[0-9][0-9A-Za-z.+!-]*", version), (name, version)
        assert hashes, f"{name} has no hash"


def test_lock_satisfies_every_dependency_of_the_service():
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    locked = _locked()
    for dep in map(Requirement, deps):
        if dep.marker is not None and not dep.marker.evaluate():
            continue
        name = canonicalize_name(dep.name)
        assert name in locked, f"{dep.name} is a dependency but not in requirements/service.lock (run requirements/lock.sh)"
        assert dep.specifier.contains(locked[name][0], prereleases=True), \
            f"{dep.name}: locked {locked[name][0]} does not satisfy {dep.specifier} (run requirements/lock.sh)"
