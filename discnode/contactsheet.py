"""A contact sheet: a grid of result thumbnails, because administrators match faces by eye. Under
each face: the name, the partnership, and the `NODE_ID:PROFILE_ID` reference that
`discnode profile show` takes, so that a face leads to its profile."""

from __future__ import annotations

import io
import math
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw, ImageFont

from .exports import write_private
from .images import THUMB_SIZE
from .output import printable

PAD = 8
COLUMNS = 6
#: Caption lines: (font size, colour) for the name, the partnership and the reference.
LINES = ((13, (0, 0, 0)), (11, (90, 90, 90)), (10, (40, 40, 120)))
LINE_GAP = 3
#: Fonts with Latin coverage (names such as Seán Ó Ríordáin or Łukasz Żółć), best first: one that a
#: dependency installs with the package (so a fresh machine has it), then Debian's DejaVu.
FONTS = ("font_source_sans_pro:files/SourceSansPro-Regular.ttf",
         "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf")

Font = ImageFont.FreeTypeFont | ImageFont.ImageFont


def _font_file() -> str | None:
    for spec in FONTS:
        if spec.startswith("/"):
            if Path(spec).is_file():
                return spec
            continue
        package, _, name = spec.partition(":")
        try:
            path = resources.files(package).joinpath(name)
        except ModuleNotFoundError:
            continue
        if path.is_file():
            return str(path)
    return None


@lru_cache(maxsize=8)
def caption_font(size: int) -> Font:
    """A font for captions; Pillow's own (ASCII only) if no better one is installed."""
    path = _font_file()
    if path is None:
        return ImageFont.load_default(size)
    return ImageFont.truetype(path, size)


def _fit(text: str, font: Font, width: int) -> str:
    if font.getlength(text) <= width:
        return text
    while text and font.getlength(text + "…") > width:
        text = text[:-1]
    return text + "…"


def captions(record: dict[str, Any]) -> tuple[str, str, str]:
    """Name, partnership and reference, as drawn: printable text only (output.printable)."""
    name = f"{record.get('first_name', '')} {record.get('last_name', '')}".strip() or "ID sought"
    return (printable(name), printable(record.get("origin_name", "")),
            printable(f"{record.get('origin', '')}:{record.get('id', '')}"))


def render(results: list[dict[str, Any]], thumbs: dict[str, bytes], path: Path, columns: int = COLUMNS) -> int:
    """Write a PNG grid, readable by its owner only (exports.py); returns how many cells had a picture."""
    if not results:
        raise ValueError("no results to draw")
    fonts = [caption_font(size) for size, _ in LINES]
    texts = [captions(r) for r in results]
    # Wide enough for the longest reference, which must never be cut (it is typed into `profile show`).
    text_w = max(int(fonts[2].getlength(t[2])) + 1 for t in texts)
    cell_w = max(THUMB_SIZE[0], text_w) + PAD
    caption_h = sum(size + LINE_GAP for size, _ in LINES) + LINE_GAP
    cell_h = THUMB_SIZE[1] + caption_h + PAD
    cols = min(columns, len(results))
    rows = math.ceil(len(results) / cols)
    sheet = Image.new("RGB", (cols * cell_w + PAD, rows * cell_h + PAD), (245, 245, 245))
    draw = ImageDraw.Draw(sheet)
    pictured = 0
    for n, (record, lines) in enumerate(zip(results, texts)):
        x = PAD + (n % cols) * cell_w
        y = PAD + (n // cols) * cell_h
        data = thumbs.get(record.get("image") or "")
        left = x + (cell_w - PAD - THUMB_SIZE[0]) // 2
        if data:
            with Image.open(io.BytesIO(data)) as opened:
                thumb = opened.convert("RGB")
            sheet.paste(thumb, (left + (THUMB_SIZE[0] - thumb.width) // 2, y + (THUMB_SIZE[1] - thumb.height) // 2))
            pictured += 1
        else:
            draw.rectangle([left, y, left + THUMB_SIZE[0] - 1, y + THUMB_SIZE[1] - 1], outline=(180, 180, 180))
            draw.text((left + 40, y + THUMB_SIZE[1] // 2), "no image", fill=(150, 150, 150), font=fonts[1])
        top = y + THUMB_SIZE[1] + LINE_GAP
        for text, font, (size, colour) in zip(lines, fonts, LINES):
            draw.text((x, top), _fit(text, font, cell_w - PAD), fill=colour, font=font)
            top += size + LINE_GAP
    out = io.BytesIO()
    sheet.save(out, "PNG")
    write_private(path, out.getvalue())
    return pictured
