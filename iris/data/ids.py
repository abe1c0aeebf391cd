"""Stable image ids and the cleaning of source cells.

An image id is a non-negative 63-bit integer (Qdrant point ids and the ``id`` column of
``iris.tables.IMAGES``) derived only from the cleaned source string, so the same row
gets the same id on every run and on every machine.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata

# Excel stores control characters as _xHHHH_ escapes; openpyxl hands them back verbatim,
# which is how the contest's test XLSX came to carry "service characters" after URLs.
_EXCEL_ESCAPE = re.compile(r"_x([0-9A-Fa-f]{4})_")


def _unescape_excel(match: re.Match[str]) -> str:
    char = chr(int(match.group(1), 16))
    category = unicodedata.category(char)
    # Only escapes of invisible characters are undone; anything else stays as written.
    return char if category[0] in {"C", "Z"} else match.group(0)


def clean_source(text: str) -> str:
    """Clean a manifest cell naming an image.

    Undoes Excel ``_xHHHH_`` escapes of invisible characters, removes control and format
    characters (anywhere) and strips surrounding whitespace.

    Example:
        ``clean_source("http://a/b.jpg_x000D_\\t ") == "http://a/b.jpg"``
    """
    if text.isprintable() and "_x" not in text:
        return text.strip()  # the common case, without a pass per character
    text = _EXCEL_ESCAPE.sub(_unescape_excel, text)
    text = "".join(ch for ch in text if unicodedata.category(ch) not in {"Cc", "Cf"})
    return text.strip()


def image_id(source: str) -> int:
    """Stable non-negative 63-bit id of a cleaned source string.

    The first 8 bytes of SHA-256 of the UTF-8 string, shifted right by one bit. The
    string is passed through :func:`clean_source` first (a no-op on clean strings), so a
    raw manifest cell and its cleaned form get the same id.
    """
    digest = hashlib.sha256(clean_source(source).encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") >> 1
