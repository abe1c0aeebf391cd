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
not-a-file         a local path that is not a regular file (a folder, FIFO, device)
file-too-large     a local file larger than ``ingest.max_bytes``
================== ===========================================================

Whatever a decoder raises (Pillow plugins raise ``NotImplementedError``, ``struct.error``,
``IndexError`` and more on odd files) rejects that one image as ``corrupt``; only a failure
to *write* the PNG (a full disk) stops the ingest, as an ``OSError`` naming the file.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import stat
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
    max_bytes: int = 100_000_000
    """Local files larger than this are rejected before they are read."""


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
        except Exception as exc:  # any decoder error is this image's problem, not the run's
            raise Rejected("corrupt", _describe(exc)) from None
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
        except Exception as exc:  # as above: one odd file never stops the ingest
            message = _describe(exc)
            lowered = message.lower()
            reason = "truncated" if "truncated" in lowered or "broken data stream" in lowered else "corrupt"
            raise Rejected(reason, message) from None
        rotated: Image.Image = image
        # A damaged EXIF block is no reason to lose the pixels.
        with contextlib.suppress(Exception):
            rotated = ImageOps.exif_transpose(image)
        try:
            return _to_rgb(rotated)
        except Exception as exc:
            raise Rejected("corrupt", _describe(exc)) from None


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


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
    try:
        image.save(out, "PNG", compress_level=1)
    except OSError as exc:
        # Name the file (a write on an open file carries none) and leave no partial PNG.
        with contextlib.suppress(OSError):
            out.unlink()
        raise OSError(exc.errno, exc.strerror or str(exc), str(out)) from exc


def process_bytes(data: bytes, out: str, limits: Limits, content_type: str | None = None) -> Outcome:
    """Decode, validate and save downloaded bytes as ``out`` (an RGB PNG)."""
    try:
        image = decode(data, limits=limits, content_type=content_type)
    except Rejected as rejected:
        return Outcome(ok=False, reason=rejected.reason, detail=rejected.detail)
    save_png(image, Path(out))
    return Outcome(ok=True, width=image.width, height=image.height, sha256=pixel_hash(image))


def read_local(path: str, *, max_bytes: int) -> bytes:
    """The bytes of a local image file: a regular file of at most ``max_bytes``.

    The file is opened without blocking and checked before anything is read, so a FIFO,
    a device such as ``/dev/zero`` or a huge file is refused instead of hanging the ingest
    or filling memory; at most ``max_bytes + 1`` bytes are read (a file growing meanwhile).

    Raises:
        Rejected: ``missing-file``, ``not-a-file``, ``file-too-large`` or ``unreadable``.
    """
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise Rejected("missing-file", f"{path} does not exist") from None
    except OSError as exc:
        raise Rejected("unreadable", f"{path}: {exc.strerror or exc}") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            kind = "folder" if stat.S_ISDIR(info.st_mode) else "FIFO, socket or device"
            raise Rejected("not-a-file", f"{path} is a {kind}, expected a regular image file")
        if info.st_size > max_bytes:
            raise Rejected("file-too-large", f"{path}: {info.st_size} bytes > ingest.max_bytes = {max_bytes}")
        chunks: list[bytes] = []
        size = 0
        while size <= max_bytes:
            chunk = os.read(fd, min(1 << 20, max_bytes + 1 - size))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
    except OSError as exc:
        raise Rejected("unreadable", f"{path}: {exc.strerror or exc}") from None
    finally:
        os.close(fd)
    data = b"".join(chunks)
    if len(data) > max_bytes:
        raise Rejected("file-too-large", f"{path}: more than ingest.max_bytes = {max_bytes} bytes")
    return data


def process_file(path: str, out: str, limits: Limits) -> Outcome:
    """Like :func:`process_bytes` for a local file (read with :func:`read_local`)."""
    try:
        data = read_local(path, max_bytes=limits.max_bytes)
    except Rejected as rejected:
        return Outcome(ok=False, reason=rejected.reason, detail=rejected.detail)
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
