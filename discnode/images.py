"""Image intake: prove the format by decoding, refuse bombs, strip metadata, store by SHA-256.

Every stored image is a fresh JPEG encoded by Pillow from the decoded pixels, so nothing from the
original file (EXIF, GPS, ICC profiles, trailing bytes, polyglot payloads) survives.
"""

from __future__ import annotations

import hashlib
import io
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import InvalidInput, TooLarge

MAX_BYTES = 10 * 1024 * 1024
MAX_PIXELS = 40_000_000
MAX_SIDE = 12_000
STORED_MAX_SIDE = 2048
THUMB_SIZE = (160, 200)
ALLOWED = ("JPEG", "PNG", "WEBP")


@dataclass(frozen=True)
class ProcessedImage:
    sha256: str
    data: bytes
    thumb: bytes
    width: int
    height: int

    @property
    def meta(self) -> dict[str, int | str]:
        return {"mime": "image/jpeg", "width": self.width, "height": self.height,
                "bytes": len(self.data), "thumb_bytes": len(self.thumb)}


def _encode(img: Any, quality: int) -> bytes:
    out = io.BytesIO()
    img.save(out, "JPEG", quality=quality, optimize=True)
    return out.getvalue()


def process(data: bytes, name: str = "image") -> ProcessedImage:
    """Validate and re-encode an uploaded image. InvalidInput/TooLarge with the reason if refused."""
    from PIL import Image, ImageOps, UnidentifiedImageError  # not needed to serve images

    if len(data) > MAX_BYTES:
        raise TooLarge(f"{name}: {len(data):,} bytes is over the {MAX_BYTES:,}-byte limit")
    if not data:
        raise InvalidInput(f"{name}: the file is empty")
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            with Image.open(io.BytesIO(data), formats=ALLOWED) as probe:
                width, height = probe.size
                # Checked from the header, before a single pixel is decoded.
                if width * height > MAX_PIXELS or max(width, height) > MAX_SIDE:
                    raise TooLarge(f"{name}: {width}x{height} pixels is over the limit "
                                   f"({MAX_PIXELS:,} pixels, {MAX_SIDE} a side); refused as a possible "
                                   "decompression bomb")
                probe.load()
                img = ImageOps.exif_transpose(probe).convert("RGB")
        except (TooLarge, InvalidInput):
            raise
        except (Image.DecompressionBombError, Image.DecompressionBombWarning):
            raise TooLarge(f"{name}: too many pixels; refused as a possible decompression bomb") from None
        except UnidentifiedImageError:
            raise InvalidInput(f"{name}: not a JPEG, PNG or WebP image") from None
        except (OSError, SyntaxError, ValueError, EOFError) as exc:
            raise InvalidInput(f"{name}: the image is damaged or truncated ({exc})") from None
    img.thumbnail((STORED_MAX_SIDE, STORED_MAX_SIDE))
    stored = _encode(img, 88)
    thumb_img = img.copy()
    thumb_img.thumbnail(THUMB_SIZE)
    return ProcessedImage(hashlib.sha256(stored).hexdigest(), stored, _encode(thumb_img, 80),
                          img.width, img.height)


def image_path(root: Path, sha256: str, thumb: bool = False) -> Path:
    return root / ("thumbs" if thumb else "full") / sha256[:2] / f"{sha256}.jpg"


def _write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def save(root: Path, image: ProcessedImage) -> list[Path]:
    """Write the image and its thumbnail; return the paths that did not exist before (so that a
    failed transaction can remove exactly those)."""
    created = []
    for thumb, data in ((False, image.data), (True, image.thumb)):
        path = image_path(root, image.sha256, thumb)
        if not path.exists():
            _write_atomic(path, data)
            created.append(path)
    return created


def remove(root: Path, sha256: str) -> None:
    for thumb in (False, True):
        image_path(root, sha256, thumb).unlink(missing_ok=True)


def read(root: Path, sha256: str, thumb: bool) -> bytes:
    return image_path(root, sha256, thumb).read_bytes()
