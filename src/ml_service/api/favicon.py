"""The favicon: a 16/32/48 px ICO of PNG images drawn in code (run `python -m ml_service.api.favicon` to rewrite it)."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

FAVICON_PATH = Path(__file__).with_name("static") / "favicon.ico"
SIZES = (16, 32, 48)
_BACKGROUND = (0x1F, 0x6F, 0xB2, 0xFF)  # blue rounded square
_FOREGROUND = (0xFF, 0xFF, 0xFF, 0xFF)  # white "T"


def _pixel(x: float, y: float, size: int) -> tuple[int, int, int, int]:
    """Colour at the centre of pixel (x, y): a rounded square holding a white T."""
    radius = size * 0.2
    cx = min(max(x, radius), size - radius)
    cy = min(max(y, radius), size - radius)
    if (x - cx) ** 2 + (y - cy) ** 2 > radius**2:
        return (0, 0, 0, 0)
    bar = 0.22 * size <= y < 0.38 * size and 0.2 * size <= x < 0.8 * size
    stem = 0.38 * size <= y < 0.8 * size and 0.41 * size <= x < 0.59 * size
    return _FOREGROUND if bar or stem else _BACKGROUND


def png(size: int) -> bytes:
    """A square RGBA PNG of the icon at `size` pixels."""
    rows = b"".join(
        b"\x00" + b"".join(bytes(_pixel(x + 0.5, y + 0.5, size)) for x in range(size)) for y in range(size)
    )

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", size, size, 8, 6, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows, 9)) + chunk(b"IEND", b"")


def build_favicon(sizes: tuple[int, ...] = SIZES) -> bytes:
    """An ICO file with one PNG entry per size (PNG-in-ICO, readable by every current browser)."""
    images = [png(size) for size in sizes]
    offset = 6 + 16 * len(images)
    directory = b""
    for size, image in zip(sizes, images):
        directory += struct.pack("<BBBBHHII", size % 256, size % 256, 0, 0, 1, 32, len(image), offset)
        offset += len(image)
    return struct.pack("<HHH", 0, 1, len(images)) + directory + b"".join(images)


if __name__ == "__main__":
    FAVICON_PATH.write_bytes(build_favicon())
    print(f"wrote {FAVICON_PATH}")
