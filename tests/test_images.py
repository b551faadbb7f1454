import io
import os

import pytest
from PIL import Image

from discnode import images
from discnode.errors import InvalidInput, TooLarge
from tests.conftest import jpeg_with_gps, png_bytes


def test_reencoding_strips_gps_exif(tmp_path):
    processed = images.process(jpeg_with_gps(tmp_path / "a.jpg").read_bytes())
    stored = Image.open(io.BytesIO(processed.data))
    assert stored.format == "JPEG"
    assert not stored.getexif()
    assert b"SpyCam" not in processed.data and b"Exif" not in processed.data


def test_png_and_webp_are_accepted_and_thumbnailed():
    out = io.BytesIO()
    Image.new("RGB", (800, 1000), (1, 2, 3)).save(out, "WEBP")
    for data in (png_bytes((300, 300), "RGBA"), out.getvalue()):
        p = images.process(data)
        thumb = Image.open(io.BytesIO(p.thumb))
        assert thumb.width <= images.THUMB_SIZE[0] and thumb.height <= images.THUMB_SIZE[1]


@pytest.mark.parametrize("data, error, words", [
    (png_bytes((200, 200))[:120], InvalidInput, "damaged or truncated"),
    (b"this is plainly text, not an image\n" * 10, InvalidInput, "not a JPEG, PNG or WebP"),
    (b"", InvalidInput, "empty"),
    (b"GIF89a" + b"\0" * 100, InvalidInput, "not a JPEG, PNG or WebP"),
], ids=["truncated-png", "text", "empty", "gif"])
def test_bad_images_are_refused(data, error, words):
    with pytest.raises(error, match=words):
        images.process(data)


def test_decompression_bomb_refused_from_header():
    bomb = png_bytes((10_000, 10_000), "1")
    assert len(bomb) < 200_000
    with pytest.raises(TooLarge, match="decompression bomb"):
        images.process(bomb)


def test_oversized_file_refused():
    with pytest.raises(TooLarge, match="limit"):
        images.process(os.urandom(images.MAX_BYTES + 1))
