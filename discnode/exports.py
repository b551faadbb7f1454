"""Files the node writes for an administrator outside its home (saved photos, contact sheets, CSV
and JSON exports). They hold personal data, so they are readable by their owner alone whatever the
umask: files 0600, and the folders made for them 0700. A folder that already existed is the
administrator's own and is left as it is."""

from __future__ import annotations

import os
from pathlib import Path

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
