"""The examples keep working: the hand-made A-B-C script and the network generator."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

from discnode import peers
from discnode.home import Home, today
from discnode.store import count_profiles
from tests.nodes import free_port

ROOT = Path(__file__).resolve().parent.parent


def test_abc_network_script_runs_end_to_end():
    # Free ports, not the script's defaults: another run of this test may be using those.
    env = {**os.environ, "COLUMNS": "120", "ABC_PORTS": " ".join(str(free_port()) for _ in range(3)),
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    assert shutil.which("discnode", path=env["PATH"]), "discnode must be installed beside this Python"
    r = subprocess.run(["bash", str(ROOT / "examples" / "abc-network.sh")], capture_output=True, text=True,
                       timeout=120, env=env)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    views = r.stdout.split("Dataview of ")
    a_view = next(v for v in views if v.startswith("Northtown"))
    assert "Cara" not in a_view and "Ben Baker" in a_view and "Al Amber" in a_view  # own local-only shown
    b_view = next(v for v in views if v.startswith("Midcity"))
    assert "Cara" in b_view and "Ann Archer" in b_view and "Al Amber" not in b_view
    assert "consent-revoke-sent" in r.stdout


def test_network_generator_builds_agreed_nodes(tmp_path):
    sys.path.insert(0, str(ROOT / "examples"))
    try:
        import network
    finally:
        sys.path.remove(str(ROOT / "examples"))
    hub_path, paths = network.generate(tmp_path, 3, 20, base_port=23500, workers=2)
    hub = Home.open(hub_path)
    states = {row["node_id"]: row["state"] for row in peers.listing(hub.db, hub.node_id, today())}
    assert len(states) == 3 and set(states.values()) == {"active"}
    node = Home.open(paths[0])
    assert count_profiles(node.db) == 20
    assert node.db.execute("select count(*) from images").fetchone()[0] == 20
    assert peers.agreement(node.db, node.node_id, hub.node_id, today()).active


def test_the_service_unit_runs_what_the_readme_installs():
    import shlex
    unit = (ROOT / "examples" / "discnode.service").read_text()
    readme = (ROOT / "README.md").read_text()
    exec_start = shlex.split(next(line for line in unit.splitlines() if line.startswith("ExecStart="))[10:])
    program, home = Path(exec_start[0]), exec_start[exec_start.index("--home") + 1]
    venv = program.parent.parent
    assert exec_start[-1] == "serve" and program.name == "discnode"
    assert f"sudo python3 -m venv {venv} && sudo {venv}/bin/pip install -q --require-hashes -r requirements/service.lock" in readme
    assert f"sudo {venv}/bin/pip install -q --no-deps ." in readme  # the lock pins every dependency
    assert f"sudo -u discnode {program} --home {home} init" in readme
    assert f"useradd --system --home {home}" in readme
    assert f"ReadWritePaths={home}" in unit and "User=discnode" in unit
