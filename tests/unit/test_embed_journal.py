"""The embed journal: whole records back, a record cut short dropped, another model ignored."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from iris.embed.journal import Journal


def batch(start: int, n: int = 3, dim: int = 4) -> tuple[np.ndarray, np.ndarray]:
    ids = np.arange(start, start + n, dtype=np.int64)
    return ids, (ids[:, None] + np.arange(dim, dtype=np.float32) / 10).astype(np.float32)


def test_appended_batches_come_back_whole(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "j.bin", fingerprint="abc", dim=4)
    journal.start()
    journal.append(*batch(10))
    journal.append(*batch(20))
    # no close: a killed process never closes it
    ids, vectors = Journal(tmp_path / "j.bin", fingerprint="abc", dim=4).recovered()
    assert ids.tolist() == [10, 11, 12, 20, 21, 22]
    assert np.array_equal(vectors[3], np.array([20.0, 20.1, 20.2, 20.3], np.float32))
    journal.close()


def test_a_record_cut_short_is_dropped(tmp_path: Path) -> None:
    path = tmp_path / "j.bin"
    journal = Journal(path, fingerprint="abc", dim=4)
    journal.start()
    journal.append(*batch(10))
    journal.close()
    path.write_bytes(path.read_bytes()[:-5])
    assert journal.recovered()[0].tolist() == [10, 11]


def test_another_model_or_no_file_gives_nothing(tmp_path: Path) -> None:
    path = tmp_path / "j.bin"
    assert Journal(path, fingerprint="abc", dim=4).recovered()[1].shape == (0, 4)
    journal = Journal(path, fingerprint="abc", dim=4)
    journal.start()
    journal.append(*batch(10))
    journal.close()
    assert len(Journal(path, fingerprint="xyz", dim=4).recovered()[0]) == 0
    assert len(Journal(path, fingerprint="abc", dim=8).recovered()[0]) == 0


def test_clear_keeps_appending_after_the_header_and_remove_deletes(tmp_path: Path) -> None:
    path = tmp_path / "j.bin"
    journal = Journal(path, fingerprint="abc", dim=4)
    journal.start()
    journal.append(*batch(10))
    journal.clear()
    journal.append(*batch(30, n=1))
    assert journal.recovered()[0].tolist() == [30]
    journal.remove()
    assert not path.exists()
