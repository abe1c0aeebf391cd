"""Contact sheets: a grid of images, each with a coloured frame and a short caption.

Used by ``iris similar --grid``: the query first (blue frame), then its neighbours framed by
their label (green positive, orange negative, grey unknown). Pillow only, so drawing a
sheet costs milliseconds and no plotting library is imported.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont, ImageOps, UnidentifiedImageError

QUERY_COLOUR = "#1f6feb"
POSITIVE_COLOUR = "#2da44e"
NEGATIVE_COLOUR = "#e16f24"
UNKNOWN_COLOUR = "#8c959f"
BACKGROUND = "#ffffff"
_FRAME = 4
_PAD = 8
_LINE = 15


@dataclass(frozen=True)
class Tile:
    """One cell of a sheet."""

    image: Path | Image.Image | None
    """The picture (a file or an image); None or an unreadable file draws a placeholder."""
    title: str
    """First caption line (bold colour of the frame)."""
    lines: Sequence[str] = field(default_factory=tuple)
    """Further caption lines."""
    colour: str = UNKNOWN_COLOUR
    """Frame colour."""


def label_colour(label: int | None) -> str:
    """Frame colour for a label: positive, negative or unknown."""
    if label is None:
        return UNKNOWN_COLOUR
    return POSITIVE_COLOUR if int(label) == 1 else NEGATIVE_COLOUR


def _picture(source: Path | Image.Image | None, size: int) -> Image.Image:
    image: Image.Image | None = None
    if isinstance(source, Image.Image):
        image = source
    elif source is not None:
        try:
            with Image.open(source) as opened:
                image = opened.convert("RGB")
        except (OSError, UnidentifiedImageError):
            image = None
    if image is None:
        placeholder = Image.new("RGB", (size, size), "#eaeef2")
        draw = ImageDraw.Draw(placeholder)
        draw.line((0, 0, size, size), fill="#afb8c1", width=2)
        draw.line((0, size, size, 0), fill="#afb8c1", width=2)
        return placeholder
    image = image.convert("RGB")
    # Tiny images (28 px Fashion-MNIST) stay crisp when blown up with nearest-neighbour.
    resample = Image.Resampling.NEAREST if max(image.size) * 2 <= size else Image.Resampling.LANCZOS
    return ImageOps.pad(image, (size, size), method=resample, color=BACKGROUND)


def draw_contact_sheet(
    tiles: Sequence[Tile],
    out: Path,
    *,
    columns: int = 6,
    size: int = 160,
    title: str = "",
) -> Path:
    """Draw ``tiles`` in a grid and write a PNG to ``out``; returns ``out``.

    Args:
        tiles: cells in reading order.
        out: PNG file to write (folders are created).
        columns: cells per row.
        size: side of each picture in pixels.
        title: a heading above the grid.
    """
    if not tiles:
        raise ValueError("a contact sheet needs at least one tile")
    columns = max(1, min(columns, len(tiles)))
    rows = -(-len(tiles) // columns)
    n_lines = 1 + max(len(t.lines) for t in tiles)
    font = ImageFont.load_default(size=12)
    bold = ImageFont.load_default(size=13)
    cell_w = size + 2 * _FRAME + _PAD
    cell_h = size + 2 * _FRAME + n_lines * _LINE + _PAD + 4
    head = 28 if title else 0
    sheet = Image.new("RGB", (_PAD + columns * cell_w, _PAD + head + rows * cell_h), BACKGROUND)
    draw = ImageDraw.Draw(sheet)
    if title:
        draw.text((_PAD, _PAD), title, fill="#24292f", font=ImageFont.load_default(size=16))
    for index, tile in enumerate(tiles):
        row, col = divmod(index, columns)
        x = _PAD + col * cell_w
        y = _PAD + head + row * cell_h
        draw.rectangle((x, y, x + size + 2 * _FRAME - 1, y + size + 2 * _FRAME - 1), fill=tile.colour)
        sheet.paste(_picture(tile.image, size), (x + _FRAME, y + _FRAME))
        text_y = y + size + 2 * _FRAME + 3
        draw.text((x, text_y), _fit(draw, tile.title, bold, size + 2 * _FRAME), fill=tile.colour, font=bold)
        for line in tile.lines:
            text_y += _LINE
            draw.text((x, text_y), _fit(draw, line, font, size + 2 * _FRAME), fill="#24292f", font=font)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(out, format="PNG")
    return out


def _fit(
    draw: ImageDraw.ImageDraw, text: str, font: ImageFont.ImageFont | ImageFont.FreeTypeFont, width: int
) -> str:
    """Shorten ``text`` with an ellipsis (keeping its end, where file names differ) to fit."""
    if draw.textlength(text, font=font) <= width:
        return text
    while len(text) > 1 and draw.textlength("…" + text, font=font) > width:
        text = text[1:]
    return "…" + text
