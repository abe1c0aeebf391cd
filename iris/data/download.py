"""Where an image comes from, and fetching it over HTTP.

A source cell is an ``http(s)://`` URL, a ``file://`` URL, an absolute path, or a path
relative to the manifest's folder. Downloads run concurrently on one
:class:`httpx.AsyncClient`, with a timeout per request and retries with exponential
backoff on timeouts, connection errors, 429 and 5xx responses, never on other 4xx.

Rejection reasons from this module: ``bad-source`` (a scheme iris cannot fetch),
``http-<status>``, ``timeout``, ``connection``, ``download-too-large``.
"""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal
from urllib.parse import unquote, urlparse
from urllib.request import url2pathname

import httpx

USER_AGENT = "iris-labeling/0.1 (+https://github.com/)"
_RETRY_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})


@dataclass(frozen=True)
class Location:
    """Where to get one image: a URL to download or a local file to read."""

    kind: Literal["url", "file", "bad"]
    target: str
    """The URL, the absolute local path, or (for ``bad``) why the source is unusable."""


def resolve(source: str, base: Path) -> Location:
    """Resolve a cleaned source cell against the folder of the manifest that named it.

    Paths are joined and normalised as strings (no file-system calls: a manifest may
    name hundreds of thousands of files).
    """
    parsed = urlparse(source)
    scheme = parsed.scheme.lower()
    if scheme in {"http", "https"}:
        if not parsed.netloc:
            return Location("bad", f"URL without a host: {source!r}")
        return Location("url", source)
    if scheme == "file":
        return Location("file", str(Path(url2pathname(unquote(parsed.path)))))
    # A one-letter "scheme" is a Windows drive (C:\...), not a URL.
    if scheme and len(scheme) > 1:
        return Location("bad", f"unsupported URL scheme {scheme!r}; expected http, https, file or a path")
    path = os.path.expanduser(source) if source.startswith("~") else source
    return Location("file", os.path.normpath(os.path.join(base, path)))


@dataclass(frozen=True)
class Fetched:
    """A finished download: the body, or a rejection reason and detail."""

    data: bytes | None
    content_type: str | None = None
    reason: str = ""
    detail: str = ""
    attempts: int = 1


def make_client(*, timeout_s: float, concurrency: int) -> httpx.AsyncClient:
    """One HTTP client for a whole ingest (connection pooling, redirects followed)."""
    return httpx.AsyncClient(
        timeout=httpx.Timeout(timeout_s),
        follow_redirects=True,
        headers={"User-Agent": USER_AGENT},
        limits=httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency),
    )


async def _get(client: httpx.AsyncClient, url: str, max_bytes: int) -> Fetched:
    async with client.stream("GET", url) as response:
        if response.status_code >= 400:
            return Fetched(None, reason=f"http-{response.status_code}", detail=f"HTTP {response.status_code}")
        declared = response.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > max_bytes:
            return Fetched(None, reason="download-too-large", detail=f"{declared} bytes > {max_bytes}")
        chunks = []
        size = 0
        async for chunk in response.aiter_bytes():
            size += len(chunk)
            if size > max_bytes:
                return Fetched(None, reason="download-too-large", detail=f"more than {max_bytes} bytes")
            chunks.append(chunk)
        return Fetched(b"".join(chunks), content_type=response.headers.get("content-type"))


async def fetch(
    client: httpx.AsyncClient,
    url: str,
    *,
    retries: int,
    backoff_s: float,
    max_bytes: int = 100_000_000,
) -> Fetched:
    """Download ``url``; retry ``retries`` times after a transient failure.

    The wait before retry ``n`` (1-based) is ``backoff_s * 2 ** (n - 1)`` seconds.
    """
    attempt = 0
    while True:
        attempt += 1
        try:
            result = await _get(client, url, max_bytes)
        except httpx.TimeoutException as exc:
            result = Fetched(
                None, reason="timeout", detail=f"{type(exc).__name__} after {attempt} attempt(s)"
            )
        except httpx.TransportError as exc:
            result = Fetched(None, reason="connection", detail=f"{type(exc).__name__}: {exc}")
        except httpx.HTTPError as exc:
            return Fetched(None, reason="connection", detail=f"{type(exc).__name__}: {exc}", attempts=attempt)
        transient = result.reason in {"timeout", "connection"} or (
            result.reason.startswith("http-") and int(result.reason[5:]) in _RETRY_STATUSES
        )
        if result.data is not None or not transient or attempt > retries:
            return Fetched(result.data, result.content_type, result.reason, result.detail, attempt)
        await asyncio.sleep(backoff_s * 2 ** (attempt - 1))
