"""`discnode peer terms`: the signed terms of an agreement as a readable data sharing agreement
(a thin layer over agreementdoc.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from . import agreementdoc, output, peers
from .cli import JsonOpt, open_home, peer_app
from .exports import write_private
from .home import today


@peer_app.command("terms")
def peer_terms(ctx: typer.Context, node_id: str = typer.Argument(..., help="The partner's node ID (or its name)."),
               html: Optional[Path] = typer.Option(None, "--html", help="Also write it as a self-contained HTML "
                                                   "page to this file (readable by you only)."),
               json_out: bool = JsonOpt) -> None:
    """The current agreement with a partner as a data sharing agreement: parties, purpose, data
    shared, lawful basis, retention, review, termination."""
    home = open_home(ctx)
    doc = agreementdoc.describe(home, peers.resolve(home.db, home.node_id, home.config.name, node_id), today())
    if html is not None:
        write_private(html, agreementdoc.render_html(doc).encode())
    if json_out:
        output.emit_json({**doc, "html": str(html) if html else None})
        return
    for line in agreementdoc.text_lines(doc):
        if line.startswith("   "):
            output.block(line.strip(), indent=3)  # paragraphs fold to the terminal
        else:
            output.line(line)
    if html is not None:
        output.line(f"\nWritten to {html}")
