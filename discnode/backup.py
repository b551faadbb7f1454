"""`discnode backup` and `discnode restore`: a whole node in one sealed file (protocol/backup-v1.md).

The archive is a POSIX (pax) tar, sealed with a passphrase (sealed.py): the node's files as they
are in its home (configuration, identity key as kept -- sealed or not --, TLS key and certificate,
images), the database as SQLite's online backup copied it (a consistent snapshot taken while
`serve` writes), and last MANIFEST.json: the format, when, whose node, the audit log's head in the
snapshot, and the SHA-256 of every file. Nothing else is needed to open it: `age`-like tools are
not, a tar and the sealed-v1 spec are.

A restore goes to a new folder only, is checked whole (every hash) in a scratch folder beside it,
and appears at once or not at all. The restored log gets a `restored` entry naming the backup's
head and a new signed checkpoint, so that `audit --verify` can tell a restore from tampering, and
the replay floor (replay.py) refuses every request signed before the restore.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import shutil
import sqlite3
import tarfile
import tempfile
from pathlib import Path
from typing import Any, BinaryIO, Iterator

from . import audit, sealed, store
from .errors import Conflict, InvalidInput, NotFound

KIND = "backup"
FORMAT = "discnode-backup/1"
MANIFEST = "MANIFEST.json"
DB_NAME = "discnode.db"
#: Never in a backup: the live database's files (the snapshot stands for them), the daemon's
#: socket, files being written, and this module's own scratch folders.
SKIP_NAMES = {"discnode.db", "discnode.db-wal", "discnode.db-shm", "discnode.db-journal", "daemon.sock"}
SCRATCH = ".backup-"
MAX_MEMBERS = 10_000_000


def _skipped(rel: Path) -> bool:
    first = rel.parts[0]
    return (str(rel) in SKIP_NAMES or first.startswith(SCRATCH) or first.startswith(".restore-")
            or rel.name.endswith(".tmp"))


def _files(home: Path) -> Iterator[Path]:
    for root, dirs, files in os.walk(home):
        dirs.sort()
        for name in sorted(files):
            path = Path(root) / name
            rel = path.relative_to(home)
            if not _skipped(rel) and path.is_file() and not path.is_symlink():
                yield rel


def node_id_of(home: Path) -> str:
    """From the TLS certificate, whose subject is the node ID: the key may be sealed."""
    from cryptography import x509
    from cryptography.x509.oid import NameOID
    cert = x509.load_pem_x509_certificate((home / "tls.crt").read_bytes())
    return str(cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value)


class _Hashing(io.RawIOBase):
    def __init__(self, src: BinaryIO) -> None:
        self.src, self.digest = src, hashlib.sha256()

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:
        data = self.src.read(n)
        self.digest.update(data)
        return data


def _add(tar: tarfile.TarFile, path: Path, name: str, mtime: float | None = None) -> str:
    st = path.stat()
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = st.st_size, 0o600, int(mtime if mtime is not None else st.st_mtime)
    with path.open("rb") as fh:
        hashing = _Hashing(fh)
        tar.addfile(info, hashing)  # type: ignore[arg-type]
    return hashing.digest.hexdigest()


def snapshot(db_path: Path, dest: Path) -> None:
    """SQLite's online backup: a consistent copy while the daemon writes (it waits for no one)."""
    src = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=30)
    dst = sqlite3.connect(str(dest))
    try:
        with dst:
            src.backup(dst)
        dst.execute("PRAGMA journal_mode=DELETE")  # one self-contained file
    finally:
        src.close()
        dst.close()


def make(home_path: Path, out: Path, passphrase: str, created: str | None = None) -> dict[str, Any]:
    """Write the sealed backup of the node at home_path to `out` (a new file); its manifest."""
    home_path = Path(home_path)
    if not (home_path / "config.toml").exists():
        raise NotFound(f"no node at {home_path}")
    out = Path(out)
    if out.exists():
        raise Conflict(f"{out} already exists; refusing to overwrite it")
    if out.resolve().is_relative_to(home_path.resolve()):
        raise InvalidInput("write the backup outside the node's home (it would back itself up)")
    sealed.check_passphrase(passphrase)
    scratch = Path(tempfile.mkdtemp(prefix=SCRATCH, dir=home_path))  # 0700, on the node's own disk
    part = out.with_name(out.name + ".part")
    try:
        snap = scratch / DB_NAME
        snapshot(home_path / DB_NAME, snap)
        db = store.connect(snap)
        try:
            entries, head = audit.head(db)
            profiles = db.execute("SELECT count(*) FROM profiles WHERE batch IS NULL").fetchone()[0]
        finally:
            db.conn.close()
        files: dict[str, str] = {}
        fd = os.open(part, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as fh:
            writer = sealed.Writer(fh, passphrase, KIND)
            with tarfile.open(fileobj=writer, mode="w|", format=tarfile.PAX_FORMAT) as tar:  # type: ignore[call-overload]
                for rel in _files(home_path):
                    with contextlib.suppress(FileNotFoundError):  # an image removed meanwhile
                        files[rel.as_posix()] = _add(tar, home_path / rel, rel.as_posix())
                files[DB_NAME] = _add(tar, snap, DB_NAME)
                manifest = {"format": FORMAT, "created": created or store.now_ts(), "node_id": node_id_of(home_path),
                            "audit": {"entries": entries, "head": head}, "profiles": profiles, "files": files}
                body = json.dumps(manifest, indent=1, sort_keys=True).encode()
                info = tarfile.TarInfo(MANIFEST)
                info.size, info.mode = len(body), 0o600
                tar.addfile(info, io.BytesIO(body))
            writer.close()
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(part, out)
        return manifest
    finally:
        part.unlink(missing_ok=True)
        shutil.rmtree(scratch, ignore_errors=True)


class _ChunkReader(io.RawIOBase):
    """A readable file over sealed.open_chunks, for tarfile's stream mode."""

    def __init__(self, chunks: Iterator[bytes], first: bytes) -> None:
        self.chunks, self.buf = chunks, bytearray(first)

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        while not self.buf:
            nxt = next(self.chunks, None)
            if nxt is None:
                return 0
            self.buf += nxt
        n = min(len(b), len(self.buf))
        b[:n] = self.buf[:n]
        del self.buf[:n]
        return n


def _check_member(member: tarfile.TarInfo) -> None:
    parts = Path(member.name).parts
    if (not member.name or member.name.startswith("/") or ".." in parts
            or not (member.isfile() or member.isdir())):
        raise InvalidInput(f"the backup holds an entry this version never writes ({member.name[:80]!r})")


def _digest(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def refuse_existing(target: Path) -> None:
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        what = "a node" if (target / "config.toml").exists() or (target / "identity.key").exists() else "files"
        raise Conflict(f"{target} already holds {what}; restore only into a new or empty folder "
                       "(nothing was changed)")


def unpack(file: Path, target: Path, passphrase: str) -> tuple[Path, dict[str, Any]]:
    """Open and check the whole backup into a scratch folder beside `target`: (scratch, manifest).
    BadPassphrase before anything is written; InvalidInput if damaged (the scratch is removed)."""
    target = Path(target)
    refuse_existing(target)
    try:
        src = Path(file).open("rb")
    except OSError as exc:
        raise NotFound(f"cannot read {file}: {exc.strerror}") from None
    with src:
        chunks = sealed.open_chunks(src, passphrase, KIND)
        first = next(chunks)  # a wrong passphrase stops here, before anything is written
        target.parent.mkdir(parents=True, exist_ok=True)
        scratch = Path(tempfile.mkdtemp(prefix=".restore-", dir=target.parent))
        try:
            manifest = _extract(_ChunkReader(chunks, first), scratch)
            return scratch, manifest
        except BaseException:
            shutil.rmtree(scratch, ignore_errors=True)
            raise


def _extract(reader: _ChunkReader, scratch: Path) -> dict[str, Any]:
    manifest: dict[str, Any] | None = None
    names: set[str] = set()
    try:
        with tarfile.open(fileobj=reader, mode="r|") as tar:  # type: ignore[call-overload]
            for n, member in enumerate(tar):
                if n > MAX_MEMBERS:
                    raise InvalidInput("the backup holds too many entries")
                _check_member(member)
                if member.name == MANIFEST:
                    data = tar.extractfile(member)
                    manifest = json.loads(data.read(10 * 1024 * 1024)) if data else None
                    continue
                tar.extract(member, scratch, filter="data")
                if member.isfile():
                    names.add(member.name)
        # tarfile stops at the end-of-archive blocks; the file goes on to its padding and its last
        # chunk, which must open too: a file cut short or altered anywhere is refused whole.
        while reader.read(1 << 20):
            pass
    except (tarfile.TarError, ValueError, UnicodeDecodeError) as exc:
        raise InvalidInput(f"the backup's archive is not readable: {exc}") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT or not isinstance(manifest.get("files"), dict):
        raise InvalidInput(f"the backup has no {FORMAT} manifest")
    if set(manifest["files"]) != names or DB_NAME not in names or "config.toml" not in names:
        raise InvalidInput("the backup's files differ from its manifest")
    for name, digest in manifest["files"].items():
        if _digest(scratch / name) != digest:
            raise InvalidInput(f"{name} in the backup differs from its manifest")
    os.chmod(scratch, 0o700)
    for path in scratch.rglob("*"):
        os.chmod(path, 0o700 if path.is_dir() else 0o600)
    return manifest


def place(scratch: Path, target: Path) -> None:
    """Move the checked scratch folder to `target` in one rename (refusing, still, to overwrite)."""
    refuse_existing(target)
    if target.exists():
        target.rmdir()  # empty, checked just now
    os.rename(scratch, target)


def restore(file: Path, target: Path, passphrase: str) -> dict[str, Any]:
    """Restore a backup into the new folder `target`: checked whole, marked in the audit log as a
    restore of the backup's head, with a new signed checkpoint, then moved into place at once."""
    import time

    from . import replay, witness
    from .home import Home

    scratch, manifest = unpack(file, target, passphrase)
    try:
        home = Home.open(scratch)
        try:
            if home.db.execute("PRAGMA quick_check").fetchone()[0] != "ok":
                raise InvalidInput("the backup's database is damaged")
            state = manifest.get("audit") or {}
            if audit.head(home.db) != (state.get("entries"), state.get("head")):
                raise InvalidInput("the backup's audit log does not end where its manifest says")
            if home.node_id != manifest.get("node_id"):  # also: the key opens (its passphrase)
                raise InvalidInput("the backup's identity key is not the node its manifest names")
            seq = audit.append(home.db, "restored", backup_entries=state["entries"], backup_head=state["head"],
                               backup_created=manifest.get("created"))
            replay.refuse_before(home.db, time.time())
            witness.checkpoint(home)
        finally:
            home.close()
        place(scratch, target)
    except BaseException:
        shutil.rmtree(scratch, ignore_errors=True)
        raise
    return {"home": str(target), "node_id": manifest["node_id"], "backup_created": manifest.get("created"),
            "audit_entries": state["entries"], "restored_entry": seq, "profiles": manifest.get("profiles")}
