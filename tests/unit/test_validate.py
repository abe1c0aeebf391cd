"""Image validation: every bad input gets its reason code; good ones become RGB."""

from __future__ import annotations

import errno
import io
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFile

from iris.data.validate import Limits, decode, pixel_hash, process_bytes, process_file, read_local

LIMITS = Limits(max_pixels=1_000_000, min_side=8, max_side=2_000)


def _encode(image: Image.Image, fmt: str, **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def _noise(size: tuple[int, int] = (64, 48), seed: int = 0) -> Image.Image:
    pixels = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    return Image.fromarray(pixels)


def _jpeg() -> bytes:
    return _encode(_noise(), "JPEG", quality=90)


def _png_16bit() -> bytes:
    return _encode(Image.fromarray(np.full((16, 16), 40000, dtype=np.uint16)), "PNG")


BAD = [
    ("empty", b"", "empty"),
    ("html", b"  <!DOCTYPE html><html><body>Not found</body></html>", "html"),
    ("html-no-doctype", b"<html><head><title>login</title></head></html>", "html"),
    ("random-bytes", b"\x01\x02 this is not an image at all " * 10, "not-an-image"),
    ("truncated-jpeg", _jpeg()[: len(_jpeg()) // 2], "truncated"),
    ("truncated-png", _encode(_noise(), "PNG")[:300], "truncated"),
    ("unsupported-mode", _png_16bit(), "unsupported-mode"),
    ("bomb", _encode(Image.new("1", (1500, 1000)), "PNG"), "decompression-bomb"),
    ("too-small", _encode(_noise((40, 4)), "PNG"), "too-small"),
    ("too-large", _encode(Image.new("L", (2500, 100)), "PNG"), "too-large"),
]


@pytest.mark.parametrize(("data", "reason"), [(d, r) for _, d, r in BAD], ids=[n for n, _, _ in BAD])
def test_bad_images_are_rejected_with_reason(tmp_path: Path, data: bytes, reason: str) -> None:
    out = tmp_path / "out.png"
    outcome = process_bytes(data, str(out), LIMITS)
    assert (outcome.ok, outcome.reason) == (False, reason), outcome.detail
    assert outcome.detail
    assert not out.exists()


def test_html_content_type_with_unidentifiable_body() -> None:
    outcome = process_bytes(b"Access denied", "/nonexistent/x.png", LIMITS, "text/html; charset=utf-8")
    assert (outcome.ok, outcome.reason) == (False, "html")


def test_default_decompression_bomb_limit_from_settings(tmp_path: Path) -> None:
    # 10,000 x 5,001 one-bit pixels: a tiny file that would decode to 50 M pixels.
    data = _encode(Image.new("1", (10_000, 5_001)), "PNG")
    assert len(data) < 100_000
    outcome = process_bytes(data, str(tmp_path / "x.png"), Limits())
    assert (outcome.ok, outcome.reason) == (False, "decompression-bomb")
    assert "50010000 pixels > 50000000" in outcome.detail


@pytest.mark.parametrize(
    "image",
    [
        Image.new("L", (20, 10), 128),
        Image.new("P", (20, 10)),
        Image.new("CMYK", (20, 10), (0, 255, 0, 0)),
        Image.new("1", (20, 10), 1),
        Image.new("RGBA", (20, 10), (255, 0, 0, 255)),
    ],
    ids=lambda image: image.mode,
)
def test_good_modes_become_rgb_png(tmp_path: Path, image: Image.Image) -> None:
    out = tmp_path / "out.png"
    outcome = process_bytes(_encode(image, "PNG" if image.mode != "CMYK" else "JPEG"), str(out), LIMITS)
    assert outcome.ok, outcome.detail
    assert (outcome.width, outcome.height) == (20, 10)
    with Image.open(out) as saved:
        assert saved.format == "PNG"
        assert saved.mode == "RGB"
        assert saved.size == (20, 10)


def test_transparent_pixels_go_on_white() -> None:
    image = Image.new("RGBA", (10, 10), (0, 0, 0, 0))
    image.putpixel((0, 0), (255, 0, 0, 255))
    rgb = decode(_encode(image, "PNG"), limits=LIMITS)
    assert rgb.getpixel((5, 5)) == (255, 255, 255)
    assert rgb.getpixel((0, 0)) == (255, 0, 0)


def test_hash_is_of_pixels_not_file_format() -> None:
    image = _noise((16, 16), seed=3)
    png = decode(_encode(image, "PNG"), limits=LIMITS)
    bmp = decode(_encode(image, "BMP"), limits=LIMITS)
    assert pixel_hash(png) == pixel_hash(bmp)
    assert pixel_hash(png) != pixel_hash(decode(_encode(_noise((16, 16), seed=4), "PNG"), limits=LIMITS))


def test_local_file_outcomes(tmp_path: Path) -> None:
    assert (
        process_file(str(tmp_path / "missing.png"), str(tmp_path / "o.png"), LIMITS).reason == "missing-file"
    )
    assert process_file(str(tmp_path), str(tmp_path / "o.png"), LIMITS).reason == "not-a-file"
    good = tmp_path / "good.jpg"
    good.write_bytes(_jpeg())
    outcome = process_file(str(good), str(tmp_path / "o.png"), LIMITS)
    assert outcome.ok and (outcome.width, outcome.height) == (64, 48) and len(outcome.sha256) == 64


# A DDS header with no pixel format: Pillow's plugin raises NotImplementedError, not OSError.
DDS = b"DDS " + (124).to_bytes(4, "little") + bytes(120)


def test_dds_file_is_a_corrupt_row_not_a_crash(tmp_path: Path) -> None:
    outcome = process_bytes(DDS, str(tmp_path / "o.png"), LIMITS)
    assert (outcome.ok, outcome.reason) == (False, "corrupt")
    assert outcome.detail == "NotImplementedError: Unknown pixel format flags 0"
    assert not (tmp_path / "o.png").exists()


@pytest.mark.parametrize("error", [IndexError("tile out of range"), RuntimeError(), MemoryError("big")])
@pytest.mark.parametrize("when", ["open", "load"])
def test_any_decoder_error_rejects_the_image(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, error: Exception, when: str
) -> None:
    def broken(*_args: object, **_kwargs: object) -> None:
        raise error

    data = _jpeg()
    if when == "open":
        monkeypatch.setattr(Image, "open", broken)
    else:
        monkeypatch.setattr(ImageFile.ImageFile, "load", broken)
    outcome = process_bytes(data, str(tmp_path / "o.png"), LIMITS)
    expected = f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
    assert (outcome.ok, outcome.reason, outcome.detail) == (False, "corrupt", expected)


def test_only_regular_files_are_read(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe.png"
    os.mkfifo(fifo)  # opened without O_NONBLOCK, reading it would wait for a writer forever
    outcome = process_file(str(fifo), str(tmp_path / "o.png"), LIMITS)
    assert (outcome.reason, outcome.detail) == (
        "not-a-file",
        f"{fifo} is a FIFO, socket or device, expected a regular image file",
    )
    # /dev/zero never ends: it must be refused before a byte is read.
    assert process_file("/dev/zero", str(tmp_path / "o.png"), LIMITS).reason == "not-a-file"
    assert process_file(str(tmp_path), str(tmp_path / "o.png"), LIMITS).detail == (
        f"{tmp_path} is a folder, expected a regular image file"
    )


def test_max_bytes_applies_to_local_files(tmp_path: Path) -> None:
    big = tmp_path / "big.jpg"
    big.write_bytes(_jpeg())
    size = big.stat().st_size
    limits = Limits(max_pixels=1_000_000, min_side=8, max_side=2_000, max_bytes=size - 1)
    outcome = process_file(str(big), str(tmp_path / "o.png"), limits)
    assert (outcome.reason, outcome.detail) == (
        "file-too-large",
        f"{big}: {size} bytes > ingest.max_bytes = {size - 1}",
    )
    assert read_local(str(big), max_bytes=size) == big.read_bytes()


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EFBIG])
def test_a_failed_png_write_raises_naming_the_file(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, code: int
) -> None:
    def full_disk(self: Image.Image, fp: object, *_args: object, **_kwargs: object) -> None:
        assert isinstance(fp, Path), "only save_png's own write is faked"
        fp.write_bytes(b"\x89PNG half")
        raise OSError(code, os.strerror(code))

    data = _jpeg()
    monkeypatch.setattr(Image.Image, "save", full_disk)
    out = tmp_path / "o.png"
    with pytest.raises(OSError) as caught:
        process_bytes(data, str(out), LIMITS)
    assert (caught.value.errno, caught.value.filename) == (code, str(out))
    assert not out.exists(), "no half-written PNG is left behind"
