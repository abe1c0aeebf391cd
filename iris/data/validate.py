"""Decoding, validating and normalising one image (runs in worker processes).

Every image becomes an RGB PNG at ``images/<id>.png`` or a rejection with a reason code:

================== ===========================================================
reason             meaning
================== ===========================================================
empty              zero bytes
html               an HTML page where an image was expected (login walls, 404 pages)
not-an-image       bytes Pillow cannot identify as any image format
truncated          the file ends before the image data does
corrupt            the image data is damaged in another way
unsupported-mode   a pixel mode with no faithful RGB rendering (16-bit, float, ...)
decompression-bomb more pixels than ``ingest.max_pixels``
too-small          a side shorter than ``ingest.min_side``
too-large          a side longer than ``ingest.max_side``
missing-file       a local path that does not exist
unreadable         a local path that cannot be read
================== ===========================================================
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import warnings
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageOps, UnidentifiedImageError

SUPPORTED_MODES = frozenset({"1", "L", "LA", "La", "P", "PA", "RGB", "RGBA", "RGBa", "RGBX", "CMYK", "YCbCr"})
"""Pixel modes converted to RGB; others (I, I;16, F, LAB, HSV, ...) are rejected."""
_ALPHA_MODES = frozenset({"LA", "La", "PA", "RGBA", "RGBa"})


@dataclass(frozen=True)
class Limits:
    """Size limits an image must satisfy (from ``[ingest]`` settings)."""

    max_pixels: int = 50_000_000
    min_side: int = 8
    max_side: int = 10_000


@dataclass(frozen=True)
class Outcome:
    """The result of processing one image: accepted with its size and hash, or rejected."""

    ok: bool
    width: int = 0
    height: int = 0
    sha256: str = ""
    reason: str = ""
    detail: str = ""


class Rejected(Exception):
    """One image is unusable; carries the rejects-table reason code and a detail."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


def _looks_like_html(data: bytes) -> bool:
    head = data[:512].lstrip().lower()
    return head.startswith((b"<!doctype html", b"<html", b"<head", b"<body"))


def _is_html_type(content_type: str | None) -> bool:
    return bool(content_type and content_type.split(";")[0].strip().lower() == "text/html")


def _to_rgb(image: Image.Image) -> Image.Image:
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode in _ALPHA_MODES:
        # Transparent pixels go on white, not on whatever colour they happen to store.
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


def decode(data: bytes, *, limits: Limits, content_type: str | None = None) -> Image.Image:
    """Decode and validate image bytes into an RGB image.

    Raises:
        Rejected: with one of the reason codes in the module docstring.
    """
    if not data:
        raise Rejected("empty", "0 bytes")
    if _looks_like_html(data):
        raise Rejected("html", f"an HTML/text page ({content_type or 'no content type'}), not an image")
    Image.MAX_IMAGE_PIXELS = limits.max_pixels
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            image = Image.open(io.BytesIO(data))
        except Image.DecompressionBombError as exc:
            raise Rejected("decompression-bomb", str(exc)) from None
        except UnidentifiedImageError:
            if _is_html_type(content_type):
                raise Rejected("html", f"{len(data)} bytes served as {content_type}, not an image") from None
            raise Rejected("not-an-image", f"{len(data)} bytes Pillow cannot identify") from None
        except (OSError, SyntaxError, ValueError) as exc:
            raise Rejected("corrupt", str(exc) or type(exc).__name__) from None
        width, height = image.size
        if width * height > limits.max_pixels:
            raise Rejected(
                "decompression-bomb", f"{width}x{height} = {width * height} pixels > {limits.max_pixels}"
            )
        if min(width, height) < limits.min_side:
            raise Rejected("too-small", f"{width}x{height}, sides must be >= {limits.min_side}")
        if max(width, height) > limits.max_side:
            raise Rejected("too-large", f"{width}x{height}, sides must be <= {limits.max_side}")
        if image.mode not in SUPPORTED_MODES:
            raise Rejected(
                "unsupported-mode", f"mode {image.mode}, expected one of {', '.join(sorted(SUPPORTED_MODES))}"
            )
        try:
            image.load()
        except Image.DecompressionBombError as exc:
            raise Rejected("decompression-bomb", str(exc)) from None
        except (OSError, SyntaxError, ValueError, EOFError) as exc:
            message = str(exc) or type(exc).__name__
            lowered = message.lower()
            reason = "truncated" if "truncated" in lowered or "broken data stream" in lowered else "corrupt"
            raise Rejected(reason, message) from None
        rotated: Image.Image = image
        # A damaged EXIF block is no reason to lose the pixels.
        with contextlib.suppress(OSError, SyntaxError, ValueError, KeyError, TypeError):
            rotated = ImageOps.exif_transpose(image)
        return _to_rgb(rotated)


def pixel_hash(image: Image.Image) -> str:
    """SHA-256 of the RGB pixels and the size (identical pictures, whatever the file format)."""
    digest = hashlib.sha256(f"{image.width}x{image.height}:".encode())
    digest.update(image.tobytes())
    return digest.hexdigest()


def save_png(image: Image.Image, out: Path) -> None:
    """Write ``image`` as a quickly compressed PNG.

    Not atomic on purpose: ingest's journal, written after this returns, is what marks
    an image done, so a file cut short by a crash is simply made again.
    """
    image.save(out, "PNG", compress_level=1)


def process_bytes(data: bytes, out: str, limits: Limits, content_type: str | None = None) -> Outcome:
    """Decode, validate and save downloaded bytes as ``out`` (an RGB PNG)."""
    try:
        image = decode(data, limits=limits, content_type=content_type)
    except Rejected as rejected:
        return Outcome(ok=False, reason=rejected.reason, detail=rejected.detail)
    save_png(image, Path(out))
    return Outcome(ok=True, width=image.width, height=image.height, sha256=pixel_hash(image))


def process_file(path: str, out: str, limits: Limits) -> Outcome:
    """Like :func:`process_bytes` for a local file."""
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        return Outcome(ok=False, reason="missing-file", detail=f"{path} does not exist")
    except OSError as exc:
        return Outcome(ok=False, reason="unreadable", detail=f"{path}: {exc.strerror or exc}")
    return process_bytes(data, out, limits)


def inspect_saved(path: str, limits: Limits) -> Outcome:
    """Size and hash of an image an earlier, interrupted run saved (nothing is written)."""
    try:
        data = Path(path).read_bytes()
        image = decode(data, limits=limits)
    except (OSError, Rejected) as exc:
        return Outcome(ok=False, reason="unreadable", detail=str(exc))
    return Outcome(ok=True, width=image.width, height=image.height, sha256=pixel_hash(image))


def process_files(batch: list[tuple[str, str]], limits: Limits) -> list[Outcome]:
    """:func:`process_file` over ``(path, out)`` pairs: one worker call per batch saves IPC."""
    return [process_file(path, out, limits) for path, out in batch]
