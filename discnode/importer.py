"""`discnode profile import`: profiles from a CSV or JSON file, every row or none.

Two phases, both reporting progress row by row:
1. check: read the file, build, validate and sign every row, read and re-encode its images (saved
   under their hashes, so far referred to by nothing). The first bad row stops the import, named.
2. write: the checked rows go to the database in steps of store.STEP_ROWS, each a short transaction,
   invisible until one short final step publishes them all (store.py, "staged imports"). Between
   steps the daemon and other commands get the write lock, so serving never stalls on an import.

An import stopped by an error, Ctrl-C, or a kill leaves nothing visible: a stopped import removes
its staged rows and new image files itself, and a killed one's are removed by the next import.

Re-importing is safe. A row with a `ref` (the partnership's own reference) updates the profile
imported with that ref; a row without one that says exactly what an existing profile says is not
added again. Image paths are relative to the import file's folder and must stay inside it: an
import file from elsewhere (a member's spreadsheet, an email) must not be able to pull other files
on the machine, such as keys, into the node and share them with partners.
"""

from __future__ import annotations

import csv
import io
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from . import audit, disclosures, store
from . import images as img
from .errors import DiscnodeError, InvalidInput
from .home import Home, today
from .profiles import CSV_COLUMNS, MAX_REF, build_record, check_minor, notify_recipients
from .signing import sign_document

#: progress(phase, done, total): phase is "reading", "checking" or "writing".
Progress = Callable[[str, int, int], None]


@dataclass
class Result:
    added: int = 0
    updated: int = 0
    unchanged: int = 0
    duplicates: int = 0  # rows without a ref that repeat an existing profile (or an earlier row)
    images: int = 0

    def to_json(self) -> dict[str, int]:
        return {"imported": self.added + self.updated, "added": self.added, "updated": self.updated,
                "unchanged": self.unchanged, "duplicates": self.duplicates, "images": self.images}


def read_rows(path: Path) -> list[dict[str, Any]]:
    """Rows of a CSV (header row of column names) or JSON (a list of objects) file."""
    try:
        text = Path(path).read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidInput(f"cannot read {path}: {exc}") from None
    if Path(path).suffix.lower() == ".json":
        try:
            rows = json.loads(text)
        except json.JSONDecodeError as exc:
            raise InvalidInput(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno})") from None
        if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
            raise InvalidInput(f"{path}: expected a JSON list of profile objects")
        unknown = set().union(*(r.keys() for r in rows)) - set(CSV_COLUMNS) if rows else set()
    elif Path(path).suffix.lower() == ".csv":
        reader = csv.DictReader(io.StringIO(text))
        unknown = set(reader.fieldnames or []) - set(CSV_COLUMNS)
        rows = []
        if not unknown:
            for row in reader:
                if None in row:
                    raise InvalidInput(f"{path}: row {len(rows) + 1} has more cells than the header")
                rows.append({k: v for k, v in row.items() if v is not None})
    else:
        raise InvalidInput(f"{path}: import takes a .csv or .json file")
    if unknown:
        raise InvalidInput(f"{path}: unknown column(s) {', '.join(sorted(map(str, unknown)))}; "
                           f"known: {', '.join(CSV_COLUMNS)} (see the README)")
    return rows


def _ref(row: dict[str, Any]) -> str:
    ref = row.pop("ref", "") or ""
    if not isinstance(ref, str):
        raise InvalidInput("ref: must be text")
    ref = ref.strip()
    if len(ref) > MAX_REF or any(not c.isprintable() for c in ref):
        raise InvalidInput(f"ref: at most {MAX_REF} printable characters")
    return ref


def _image_paths(row: dict[str, Any], base: Path) -> list[Path]:
    value = row.pop("images", None) or []
    names = [v.strip() for v in value.split(";") if v.strip()] if isinstance(value, str) else value
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise InvalidInput("images: a list of file names")
    paths = []
    for name in names:
        path = (base / name).resolve()
        if Path(name).is_absolute() or not path.is_relative_to(base):
            raise InvalidInput(f"images: {name!r} is not inside the import file's folder {base}")
        paths.append(path)
    return paths


@dataclass
class _Plan:
    rows: list[store.Staged] = field(default_factory=list)
    new_files: list[Path] = field(default_factory=list)
    result: Result = field(default_factory=Result)
    #: Live profiles the import changes: (before, after), for the notices to their recipients.
    changed: list[tuple[dict[str, Any], dict[str, Any]]] = field(default_factory=list)


def _check(home: Home, rows: list[dict[str, Any]], base: Path, plan: _Plan, progress: Progress) -> None:
    me = home.node_id
    by_ref = store.own_by_ref(home.db, me)
    hashes = store.own_content_hashes(home.db, me)
    refs_seen: dict[str, int] = {}
    now, on = store.now_ts(), today()
    for n, raw in enumerate(rows, 1):
        try:
            row = dict(raw)
            ref = _ref(row)
            paths = _image_paths(row, base)
            if ref and ref in refs_seen:
                raise InvalidInput(f"ref {ref!r} is also on row {refs_seen[ref]}")
            refs_seen[ref] = n
            existing, old_hash = by_ref.get(ref, (None, "")) if ref else (None, "")
            record = build_record(row, me, existing=existing, now=now, on=on)
            check_minor(record, on)
            shas = []
            for path in paths:
                (image,) = _load_image(path)
                plan.new_files += img.save(home.images_root, image)
                shas.append((image.sha256, image.meta))
            if existing is not None:
                held = {i["sha256"] for i in store.images_of(home.db, existing["id"])}
                shas = [(sha, meta) for sha, meta in shas if sha not in held]
            if shas and record["image"] is None:
                record["image"] = shas[0][0]
            digest = store.content_hash(record)
            if existing is not None and digest == old_hash and not shas:
                plan.result.unchanged += 1
            elif existing is None and not ref and digest in hashes and not shas:
                plan.result.duplicates += 1
            else:
                hashes.add(digest)
                signed = sign_document(record, home.identity)
                (_, withheld), = store.withheld_views([signed], home.identity)
                plan.rows.append(store.Staged(signed, ref, shas, update=existing is not None, withheld=withheld))
                if existing is not None:
                    plan.changed.append((existing, signed))
                plan.result.images += len(shas)
                if existing is None:
                    plan.result.added += 1
                else:
                    plan.result.updated += 1
        except DiscnodeError as exc:
            raise InvalidInput(f"row {n}: {exc}; nothing was imported") from None
        progress("checking", n, len(rows))


def _load_image(path: Path) -> list[img.ProcessedImage]:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise InvalidInput(f"images: cannot read {path.name}: {exc.strerror}") from None
    return [img.process(data, path.name)]


def discard_abandoned(home: Home) -> int:
    """Remove what killed imports left staged (and their image files); returns how many."""
    batches = store.abandoned_imports(home.db)
    for batch in batches:
        for sha in store.discard(home.db, batch):
            img.remove(home.images_root, sha)
    return len(batches)


def import_file(home: Home, path: Path, progress: Progress | None = None) -> Result:
    """Import every row of the file, or none (see the module's docstring)."""
    report = progress or (lambda phase, done, total: None)
    discard_abandoned(home)
    report("reading", 0, 0)
    rows = read_rows(path)
    plan = _Plan()
    batch: int | None = None
    try:
        _check(home, rows, Path(path).resolve().parent, plan, report)
        batch = store.begin_import(home.db)
        for start in range(0, len(plan.rows), store.STEP_ROWS):
            store.stage(home.db, batch, plan.rows[start:start + store.STEP_ROWS])
            report("writing", min(start + store.STEP_ROWS, len(plan.rows)), len(plan.rows))
            time.sleep(store.STEP_PAUSE)  # let a waiting writer (the daemon's audit) in
        with store.write(home.db):  # the one short final step, and its audit entry with it
            store.publish(home.db, batch)
            # The count, not every ID: an import can be 150,000 rows; their `created` time names them.
            audit.append(home.db, "profiles-imported", "", file=Path(path).name, count=len(plan.rows),
                         added=plan.result.added, updated=plan.result.updated)
            if plan.changed:  # corrections reach the partners that received the old versions
                disclosures.catch_up(home.db)
                for before, after in plan.changed:
                    notify_recipients(home.db, home.identity, before, after)
        return plan.result
    except BaseException:
        # Ctrl-C included: take back everything this import wrote, then let the caller say so.
        orphans = store.discard(home.db, batch) if batch is not None else []
        held = {r[0] for r in home.db.execute("SELECT DISTINCT sha256 FROM images")}
        for file in plan.new_files:
            if file.name.split(".")[0] not in held:
                file.unlink(missing_ok=True)
        for sha in orphans:
            img.remove(home.images_root, sha)
        raise
