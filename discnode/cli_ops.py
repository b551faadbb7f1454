"""Running a node for years: `backup`, `restore`, `recover`, `status`, and `key encrypt|decrypt`
(a thin layer over backup.py, recovery.py, status.py and keyfile.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import typer

from . import output
from .cli import JsonOpt, _home_path, _run, app, open_home
from .errors import InvalidInput

from .cli_keys import key_app  # noqa: E402 - `key encrypt` and `key decrypt` join `key rotate` and the rest

PassphraseFileOpt = typer.Option(None, "--passphrase-file", help="Read the passphrase from this file's first "
                                 "line (else it is asked for at the terminal).")


def _bytes(n: int | None) -> str:
    if n is None:
        return ""
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n = n / 1024  # type: ignore[assignment]
    return str(n)


@app.command("backup")
def backup_cmd(ctx: typer.Context, file: Path = typer.Argument(..., help="The backup file to write (new)."),
               passphrase_file: Optional[Path] = PassphraseFileOpt, json_out: bool = JsonOpt) -> None:
    """Back up the whole node (database, keys, images, configuration) into one file encrypted with a
    passphrase. Safe while `discnode serve` runs."""
    from . import backup, keyfile
    home = open_home(ctx)
    home.close()
    passphrase = keyfile.new_passphrase(passphrase_file, "the backup")
    manifest = backup.make(home.path, file, passphrase)
    info = {"file": str(file), "bytes": file.stat().st_size, "node_id": manifest["node_id"],
            "created": manifest["created"], "audit_entries": manifest["audit"]["entries"],
            "profiles": manifest["profiles"], "files": len(manifest["files"])}
    if json_out:
        output.emit_json(info)
        return
    output.console.print(f"Backed up {info['profiles']} profile(s), {info['files']} file(s), audit log at entry "
                         f"{info['audit_entries']}, into {output.safe(file)} ({_bytes(info['bytes'])}).",
                         highlight=False)
    output.console.print("Keep the passphrase apart from the file: without it the backup cannot be opened.")


def _print_recovery(rows: list[dict[str, Any]]) -> None:
    if not rows:
        output.console.print("No partners to ask.")
        return
    output.table("Recovered from partners", ("partner", "status", "consent re-applied", "refused", "heads",
                                             "notices", "agreement"),
                 ([r["name"], r["status"], r.get("consent_applied", ""), r.get("consent_refused", ""),
                   r.get("heads_kept", ""), r.get("notices_kept", ""), r.get("agreement", r.get("error", ""))]
                  for r in rows))


@app.command("restore")
def restore_cmd(ctx: typer.Context, file: Path = typer.Argument(..., help="A file made by `discnode backup`."),
                home: Optional[Path] = typer.Option(None, "--home", help="The NEW folder to restore into "
                                                    "(default: the global --home); never an existing node."),
                passphrase_file: Optional[Path] = PassphraseFileOpt,
                recover: bool = typer.Option(True, "--recover/--no-recover", help="Then ask partners for what "
                                             "they hold of the time since the backup, and re-apply it."),
                timeout: float = typer.Option(5.0, help="Seconds to wait for each partner."),
                json_out: bool = JsonOpt) -> None:
    """Restore a backup into a new folder. From an older backup, the audit log records the restore,
    and partners' revocations and other documents since are fetched and re-applied."""
    from . import backup, keyfile
    from .home import Home
    target = home or _home_path(ctx)
    if not 0.1 <= timeout <= 60:
        raise InvalidInput("timeout must be 0.1 to 60 seconds")
    backup.refuse_existing(target)  # before asking for a passphrase
    passphrase = keyfile.given_passphrase(passphrase_file, "the backup")
    result = backup.restore(file, target, passphrase)
    if recover:
        from .recovery import recover as recover_
        restored = Home.open(target)
        try:
            result["partners"] = _run(recover_(restored, timeout=timeout))
        finally:
            restored.close()
    if json_out:
        output.emit_json(result)
        return
    output.console.print(f"Restored node {result['node_id']} into {output.safe(target)}: {result['profiles']} "
                         f"profile(s); the audit log records the restore at entry {result['audit_entries']} "
                         f"(entry {result['restored_entry']}).", highlight=False)
    if recover:
        _print_recovery(result["partners"])
    output.console.print("Requests signed before the restore are refused; start the node with `discnode serve`.")


@app.command("recover")
def recover_cmd(ctx: typer.Context, timeout: float = typer.Option(5.0, help="Seconds to wait for each partner."),
                json_out: bool = JsonOpt) -> None:
    """Ask every partner what it holds of this node's recent past (consent documents, witnessed audit
    heads) and re-apply what verifies: after a restore, for partners that were unreachable then."""
    from .recovery import recover
    if not 0.1 <= timeout <= 60:
        raise InvalidInput("timeout must be 0.1 to 60 seconds")
    rows = _run(recover(open_home(ctx), timeout=timeout))
    if json_out:
        output.emit_json({"partners": rows})
    else:
        _print_recovery(rows)


@app.command("status")
def status_cmd(ctx: typer.Context, timeout: float = typer.Option(3.0, help="Seconds to wait for each partner."),
               json_out: bool = JsonOpt) -> None:
    """Is the node healthy: daemon, partners (reachable, last exchange, clock), undelivered documents,
    review queue, audit checkpoint, disk. Exits 10 when something needs attention."""
    from . import backup, status
    if not 0.1 <= timeout <= 60:
        raise InvalidInput("timeout must be 0.1 to 60 seconds")
    home = open_home(ctx)
    me = backup.node_id_of(home.path)
    # The node ID from the certificate: status needs no passphrase for an encrypted key.
    home.__dict__["node_id"] = me
    report = _run(status.gather(home, me, timeout=timeout))
    if json_out:
        output.emit_json(report)
    else:
        _print_status(report)
    if report["attention"]:
        raise typer.Exit(status.ATTENTION_EXIT)


def _print_status(r: dict[str, Any]) -> None:
    d = r["daemon"]
    output.fields(f"Node {r['node']['name']}", [
        ("node ID", r["node"]["node_id"]),
        ("daemon", f"running (pid {d['pid']}, since {d['since']})" if d["running"] else "NOT running"),
        ("undelivered", f"{r['outbox']['count']} document(s)"),
        ("review queue", f"{r['review']['count']} item(s), {r['review']['overdue']} overdue"),
        ("audit", f"{r['audit']['entries']} entries; last checkpoint "
                  + (f"{r['audit']['checkpoint_at']} at entry {r['audit']['checkpoint_entries']}"
                     if r["audit"]["checkpoint_at"] else "none")),
        ("disk", f"home {_bytes(r['disk']['home'])} (database {_bytes(r['disk']['db'])}, images "
                 f"{_bytes(r['disk']['images'])}); {_bytes(r['disk']['free'])} free"),
    ])
    if r["partners"]:
        output.table("Partners", ("partner", "agreement", "reachable", "last exchange", "clock", "undelivered"),
                     ([p["name"], p["state"],
                       "" if p["reachable"] is None else ("yes" if p["reachable"] else f"NO: {p['error']}"),
                       p["last_exchange"] or "never",
                       "" if p["clock_offset"] is None else f"{p['clock_offset']:+.0f} s"
                       + ("" if p["clock_ok"] else " OFF"), p["undelivered"]] for p in r["partners"]))
    if r["attention"]:
        for item in r["attention"]:
            output.err_console.print(f"attention: {output.printable(item)}", highlight=False, markup=False)
    else:
        output.console.print("Nothing needs attention.")


@key_app.command("encrypt")
def key_encrypt(ctx: typer.Context, passphrase_file: Optional[Path] = typer.Option(
        None, "--passphrase-file", help="The NEW passphrase, first line of this file (else asked twice).")) -> None:
    """Keep the identity key encrypted with a passphrase (or change its passphrase): it is then
    needed at every start (--passphrase-file, systemd credential discnode-passphrase, or a prompt)."""
    from . import keyfile
    home = open_home(ctx)
    identity = home.identity  # opens the key first (with its current passphrase, if it has one)
    new = keyfile.new_passphrase(passphrase_file, "the identity key")
    keyfile.encrypt(home.path / "identity.key", identity, new)
    output.console.print("The identity key is now encrypted. Keep the passphrase where the node's "
                         "administrators can find it (a sealed envelope in the safe).")


@key_app.command("decrypt")
def key_decrypt(ctx: typer.Context) -> None:
    """Keep the identity key unencrypted again (mode 0600): the node starts without a passphrase."""
    from . import keyfile
    home = open_home(ctx)
    keyfile.decrypt(home.path / "identity.key", home.identity)
    output.console.print("The identity key is no longer encrypted.")
