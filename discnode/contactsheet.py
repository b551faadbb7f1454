"""A contact sheet: a grid of result thumbnails captioned with name and partnership, because
administrators match faces by eye."""

from __future__ import annotations

import io
import math
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw, ImageFont

from .images import THUMB_SIZE

CAPTION_H = 34
PAD = 8
COLUMNS = 6


def _caption(record: dict[str, Any]) -> tuple[str, str]:
    name = f"{record.get('first_name', '')} {record.get('last_name', '')}".strip() or "ID sought"
    return name[:24], str(record.get("origin_name", ""))[:24]


def render(results: list[dict[str, Any]], thumbs: dict[str, bytes], path: Path, columns: int = COLUMNS) -> int:
    """Write a PNG grid; returns how many cells had a picture."""
    if not results:
        raise ValueError("no results to draw")
    cols = min(columns, len(results))
    rows = math.ceil(len(results) / cols)
    cell_w, cell_h = THUMB_SIZE[0] + PAD, THUMB_SIZE[1] + CAPTION_H + PAD
    sheet = Image.new("RGB", (cols * cell_w + PAD, rows * cell_h + PAD), (245, 245, 245))
    draw = ImageDraw.Draw(sheet)
    font = ImageFont.load_default()
    pictured = 0
    for n, record in enumerate(results):
        x = PAD + (n % cols) * cell_w
        y = PAD + (n // cols) * cell_h
        data = thumbs.get(record.get("image") or "")
        if data:
            with Image.open(io.BytesIO(data)) as opened:
                thumb = opened.convert("RGB")
            sheet.paste(thumb, (x + (THUMB_SIZE[0] - thumb.width) // 2, y + (THUMB_SIZE[1] - thumb.height) // 2))
            pictured += 1
        else:
            draw.rectangle([x, y, x + THUMB_SIZE[0] - 1, y + THUMB_SIZE[1] - 1], outline=(180, 180, 180))
            draw.text((x + 40, y + THUMB_SIZE[1] // 2), "no image", fill=(150, 150, 150), font=font)
        name, partnership = _caption(record)
        draw.text((x, y + THUMB_SIZE[1] + 3), name, fill=(0, 0, 0), font=font)
        draw.text((x, y + THUMB_SIZE[1] + 17), partnership, fill=(90, 90, 90), font=font)
    path.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(path, "PNG")
    return pictured
