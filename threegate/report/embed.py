"""PNG figures as `data:` URIs, so the page carries its images inside itself.

Only files inside the report's root folder are read (a path that escapes it is refused), only real PNGs
(signature and an IHDR chunk with a non-zero size) are embedded, and each is capped at `MAX_BYTES`.
"""

import base64
import struct
from pathlib import Path
from typing import NamedTuple

__all__ = ["MAX_BYTES", "PNG_SIGNATURE", "Embedded", "png_size", "read_png"]

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
#: Larger figures are listed, not embedded (a report should stay openable on a phone).
MAX_BYTES = 8 * 1024 * 1024


class Embedded(NamedTuple):
    uri: str
    width: int
    height: int


def png_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) from the IHDR chunk of PNG bytes, or None when `data` is not a PNG."""
    if len(data) < 24 or not data.startswith(PNG_SIGNATURE) or data[12:16] != b"IHDR":
        return None
    width, height = struct.unpack(">II", data[16:24])
    return (width, height) if width > 0 and height > 0 else None


def read_png(root: Path, path: Path) -> Embedded | str:
    """The PNG at `path` as a data URI, or a one-line reason why it is not embedded."""
    try:
        resolved = path.resolve(strict=True)
    except (OSError, RuntimeError):
        return "not found"
    if not resolved.is_relative_to(root.resolve()):
        return "outside the report folder"
    if not resolved.is_file():
        return "not a file"
    try:
        size = resolved.stat().st_size
        if size > MAX_BYTES:
            return f"too large to embed ({size / 2**20:.1f} MiB)"
        data = resolved.read_bytes()
    except OSError as err:
        return f"unreadable ({type(err).__name__})"
    dims = png_size(data)
    if dims is None:
        return "not a PNG"
    uri = "data:image/png;base64," + base64.b64encode(data).decode("ascii")
    return Embedded(uri, *dims)
