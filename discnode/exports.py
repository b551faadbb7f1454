"""Files the node writes for an administrator outside its home (saved photos, contact sheets, CSV
and JSON exports). They hold personal data, so they are readable by their owner alone whatever the
umask: files 0600, and the folders made for them 0700. A folder that already existed is the
administrator's own and is left as it is.

Every file written that holds partners' profiles is registered (`register`, the one writer of the
exported_files table), so that when a partner erases or corrects a profile the node can tell its
administrator which files hold it and should be deleted by hand (notices.py)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Iterable, Mapping

from . import store

from .errors import InvalidInput

FILE_MODE = 0o600
DIR_MODE = 0o700


def private_dir(path: Path) -> Path:
    """Make `path` (and any missing parents) as owner-only folders; return it."""
    path = Path(path)
    missing = []
    for folder in (path, *path.parents):
        if folder.exists():
            break
        missing.append(folder)
    try:
        for folder in reversed(missing):
            try:
                folder.mkdir(mode=DIR_MODE)
            except FileExistsError:
                continue
            os.chmod(folder, DIR_MODE)  # mkdir's mode is cut by the umask; chmod is not
    except OSError as exc:
        raise InvalidInput(f"cannot make the folder {path}: {exc.strerror}") from None
    if not path.is_dir():
        raise InvalidInput(f"{path} is not a folder")
    return path


def write_private(path: Path, data: bytes) -> Path:
    """Write `data` to `path` as an owner-only file, atomically (a reader never sees half a file,
    and a file that was there keeps its old contents if this fails)."""
    path = Path(path)
    private_dir(path.parent)
    if path.is_dir():
        raise InvalidInput(f"{path} is a folder; give a file name")
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = -1
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), FILE_MODE)
        os.fchmod(fd, FILE_MODE)
        with os.fdopen(fd, "wb") as out:
            fd = -1
            out.write(data)
        os.replace(tmp, path)
    except BaseException as exc:
        if fd >= 0:
            os.close(fd)
        tmp.unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise InvalidInput(f"cannot write {path}: {exc.strerror or exc}") from None
        raise
    return path


def register(db: store.DB, path: Path, records: Iterable[Mapping[str, Any]], me: str) -> int:
    """Note that the file at `path` holds these records (partners' ones: this node's own are its
    own to manage). Returns how many were noted."""
    rows = {(str(Path(path).resolve()), r["origin"], r["id"], int(r.get("revision", 0) or 0))
            for r in records if r.get("origin") and r.get("origin") != me and r.get("id")}
    if not rows:
        return 0
    with store.write(db) as conn:
        conn.executemany("INSERT OR REPLACE INTO exported_files (path, origin, profile_id, revision, written) "
                         "VALUES (?, ?, ?, ?, ?)", [(*row, store.now_ts()) for row in rows])
    return len(rows)


def holding(db: store.DB, origin: str, profile_id: str, below: int | None = None) -> list[str]:
    """The files written here that hold the origin's profile (only at a revision below `below`, if
    given), that still exist."""
    sql = "SELECT path FROM exported_files WHERE origin = ? AND profile_id = ?"
    params: list[Any] = [origin, profile_id]
    if below is not None:
        sql += " AND revision < ?"
        params.append(below)
    return [p for (p,) in db.execute(sql + " ORDER BY path", params) if Path(p).exists()]
