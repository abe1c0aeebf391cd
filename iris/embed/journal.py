"""The embed journal: finished vectors on disk as soon as each batch is done.

The embedded store (Qdrant Edge, run without its write-ahead log) holds recent upserts in
memory until it flushes, every few seconds; a process killed in between loses them (a
kill at 22% of embedding kept 64 of 384 finished vectors). ``iris embed`` appends each
batch's ids and vectors here right after upserting it. The operating system has them once
``write`` returns, so a SIGKILL cannot take them (a power cut could: there is no fsync,
which would cost as much as flushing the store after every batch). Whenever the stage
flushes the store the journal is emptied; a run that finds vectors in it upserts those the
store lacks before embedding anything, so a kill loses at most the batch in hand.

File ``models/embed-journal.bin``: one header line ``iris-embed-journal 1 <fingerprint>
<dim>``, then records of a little-endian int64 id and ``dim`` float32 values. A record cut
short by a kill is dropped; a journal of another model is ignored.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import IO

import numpy as np
import numpy.typing as npt

JOURNAL_FILE = "embed-journal.bin"


class Journal:
    """Append-only ids and vectors of one embedder (``fingerprint``, ``dim``-d vectors) at ``path``."""

    def __init__(self, path: Path, *, fingerprint: str, dim: int) -> None:
        self.path = path
        self.header = f"iris-embed-journal 1 {fingerprint} {dim}\n".encode()
        self.record = np.dtype([("id", "<i8"), ("vector", "<f4", (dim,))])
        self._file: IO[bytes] | None = None

    def recovered(self) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]:
        """The whole records a previous run of the same embedder left: ids (n,), vectors (n, dim)."""
        dim = self.record["vector"].shape[0]
        nothing = (np.zeros(0, np.int64), np.zeros((0, dim), np.float32))
        if not self.path.is_file():
            return nothing
        data = self.path.read_bytes()
        if not data.startswith(self.header):
            return nothing  # another model's vectors, or a header cut short
        body = data[len(self.header) :]
        whole = len(body) // self.record.itemsize * self.record.itemsize
        records = np.frombuffer(body[:whole], dtype=self.record)
        return records["id"].astype(np.int64), records["vector"].astype(np.float32)

    def start(self) -> None:
        """Begin an empty journal (what an earlier run left must have been replayed first)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.close()
        self._file = self.path.open("wb")
        self._file.write(self.header)
        self._file.flush()

    def append(self, ids: npt.NDArray[np.int64], vectors: npt.NDArray[np.float32]) -> None:
        """Add a batch: ids (n,), vectors (n, dim); written through to the OS before returning."""
        if self._file is None:
            raise RuntimeError("Journal.append before Journal.start")
        records = np.empty(len(ids), dtype=self.record)
        records["id"], records["vector"] = ids, vectors
        self._file.write(records.tobytes())
        self._file.flush()

    def clear(self) -> None:
        """Forget the records: the store has made them durable."""
        if self._file is not None:
            self._file.flush()
            os.truncate(self.path, len(self.header))
            self._file.seek(len(self.header))

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def remove(self) -> None:
        """Close and delete the journal (the run finished and the store is durable)."""
        self.close()
        self.path.unlink(missing_ok=True)
