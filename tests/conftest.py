from __future__ import annotations

import io
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from discnode.cli import main
from discnode.home import Config, Home


@dataclass
class Result:
    code: int
    out: str
    err: str

    @property
    def json(self) -> Any:
        return json.loads(self.out)


class Cli:
    """Runs the real `discnode` entry point in-process against one node home."""

    def __init__(self, home: Path, capsys: pytest.CaptureFixture[str]) -> None:
        self.home = home
        self.capsys = capsys

    def __call__(self, *args: str, ok: bool | None = True) -> Result:
        self.capsys.readouterr()
        code = 0
        try:
            main(["--home", str(self.home), *map(str, args)])
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        captured = self.capsys.readouterr()
        result = Result(code, captured.out, captured.err)
        if ok is True:
            assert code == 0, f"discnode {' '.join(args)} failed ({code}): {captured.err}"
        elif ok is False:
            assert code != 0, f"discnode {' '.join(args)} should have failed: {captured.out}"
        return result


@pytest.fixture(autouse=True)
def _wide_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "200")
    monkeypatch.delenv("DISCNODE_HOME", raising=False)


@pytest.fixture
def cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Cli:
    c = Cli(tmp_path / "node", capsys)
    c("init", "--name", "Test BCRP")
    return c


@pytest.fixture
def home(tmp_path: Path) -> Home:
    return Home.create(tmp_path / "home", Config(name="Home BCRP"))


def jpeg_with_gps(path: Path, size: tuple[int, int] = (64, 80)) -> Path:
    img = Image.new("RGB", size, (200, 120, 90))
    exif = Image.Exif()
    exif[0x010F] = "SpyCam"  # Make
    exif[0x8825] = {1: "N", 2: (52.0, 37.0, 48.0), 3: "E", 4: (1.0, 17.0, 36.0)}  # GPS IFD
    img.save(path, "JPEG", exif=exif)
    assert Image.open(path).getexif().get_ifd(0x8825), "test image must carry GPS to prove its removal"
    return path


def png_bytes(size: tuple[int, int] = (32, 32), mode: str = "RGB") -> bytes:
    out = io.BytesIO()
    Image.new(mode, size).save(out, "PNG")
    return out.getvalue()


def tree_files(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}


def db_counts(home_path: Path) -> tuple[int, int]:
    h = Home.open(home_path)
    try:
        return (h.db.execute("select count(*) from profiles").fetchone()[0],
                h.db.execute("select count(*) from images").fetchone()[0])
    finally:
        h.close()


@pytest.fixture(scope="session", autouse=True)
def _no_proxy() -> None:
    # Peer traffic is loopback only; never let an environment proxy see it.
    for var in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY", "all_proxy"):
        os.environ.pop(var, None)


@pytest.fixture
def network(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    from tests.nodes import Network
    net = Network(tmp_path, capsys)
    yield net
    net.stop()
